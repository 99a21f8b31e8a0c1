"""``mlupdate inspect MODEL``: description, layers, and the update configuration."""

from __future__ import annotations

import argparse
import json
from typing import Any


def add_parser(sub: Any) -> None:
    """Register the subcommand."""
    p = sub.add_parser("inspect", help="describe a model: inputs, outputs, layers, update configuration",
                       description="Describe a .mlmodel: interface, metadata, layers in order (type, inputs, "
                                   "outputs, updatable flag) and the update configuration (loss, optimizer, epochs).")
    p.add_argument("model", help="path of the .mlmodel file or .mlpackage folder")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the model summary."""
    from mlupdate.spec.io import read_spec
    from mlupdate.spec.summary import summarize

    info = summarize(read_spec(args.model))
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    print(render(info))
    return 0


def render(info: dict[str, Any]) -> str:
    """Human-readable text of a summary."""
    lines = [f"Model: {info['type']} (specification version {info['specification_version']})",
             f"Runs in mlupdate: {'yes' if info['runs'] is True else 'no: ' + info['runs']}",
             f"Updatable: {'yes' if info['is_updatable'] else 'no'}"]
    for key, title in (("inputs", "Inputs"), ("outputs", "Outputs"), ("training_inputs", "Training inputs")):
        if info[key]:
            lines.append(f"{title}:")
            lines += [f"  {x}" for x in info[key]]
    if info.get("class_labels"):
        labels = info["class_labels"]
        shown = ", ".join(map(str, labels[:10])) + (f", ... ({len(labels)} labels)" if len(labels) > 10 else "")
        lines.append(f"Class labels: {shown}")
    meta = {k: v for k, v in info["metadata"].items() if v and k != "user_defined"}
    if meta:
        lines.append("Metadata: " + "; ".join(f"{k}: {v}" for k, v in meta.items()))
    if info["layers"]:
        lines.append(f"Layers ({len(info['layers'])}):")
        for i, layer in enumerate(info["layers"]):
            flag = "  [updatable]" if layer["updatable"] else ""
            lines.append(f"  {i:3d} {layer['name']} ({layer['type']}): {', '.join(layer['inputs'])} -> "
                         f"{', '.join(layer['outputs'])}{flag}")
    for fn in info.get("program", {}).get("functions", []):  # ML Programs
        ops = ", ".join(f"{k} x{v}" for k, v in fn["ops"].items())
        lines.append(f"Function {fn['name']} ({fn['opset']}): {', '.join(fn['inputs'])} -> "
                     f"{', '.join(fn['outputs'])}; ops: {ops}")
    knn = info.get("knn")
    if knn:
        lines.append(f"k-NN: {knn['samples']} samples of {knn['dimensions']} dimensions, {knn['index']}, "
                     f"{knn['weighting']}, k: {knn['k']}")
    upd = info.get("update")
    if upd:
        lines.append("Update configuration:")
        for loss in upd["losses"]:
            lines.append(f"  loss: {loss['type']} '{loss['name']}' (input: {loss['input']}, target: {loss['target']})")
        opt = upd.get("optimizer")
        if opt:
            lines.append(f"  optimizer: {opt['type']}")
            for k, v in opt["parameters"].items():
                lines.append(f"    {k}: {v}")
        for k in ("epochs", "shuffle", "seed"):
            if upd.get(k) is not None:
                lines.append(f"  {k}: {upd[k]}")
    for i, sub in enumerate(info.get("models", [])):
        lines.append(f"--- pipeline stage {i} ---")
        lines.append("  " + render(sub).replace("\n", "\n  "))
    return "\n".join(lines)
