"""``mlupdate predict MODEL IMAGE...``: top label and probabilities for each image."""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np


def add_parser(sub: Any) -> None:
    """Register the subcommand."""
    p = sub.add_parser("predict", help="predict images with a model",
                       description="Predict one or more images with an image-input model. Classifiers print the "
                                   "label and the top probabilities; other models print their outputs' shapes.")
    p.add_argument("model", help="path of the .mlmodel file")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    p.add_argument("--top", type=int, default=3, help="how many probabilities to show (default 3)")
    p.add_argument("--input", help="name of the image input (default: the model's only image input)")
    p.add_argument("--crop-and-scale", default="center_crop", choices=("center_crop", "scale_fit", "scale_fill"),
                   help="how images of another size are fitted (default center_crop, as Vision)")
    p.add_argument("--compute-units", default="all", choices=("cpu_only", "cpu_and_gpu", "all"))
    p.add_argument("--threads", type=int, default=None, help="CPU threads for inference (default: one per core)")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Predict and print."""
    import mlupdate
    from mlupdate.cli.progress import loading

    with loading(args.model):
        model = mlupdate.load(args.model, compute_units=args.compute_units, crop_and_scale=args.crop_and_scale,
                              threads=args.threads)
    d = model.description
    images = [f.name for f in d.inputs.values() if f.type == "image"]
    name = args.input or (images[0] if len(images) == 1 else None)
    if name is None or name not in d.inputs:
        raise mlupdate.FeatureError(
            f"Choose the image input with --input; the model's inputs are {', '.join(d.inputs)}.")
    results = model.predict_batch([{name: path} for path in args.images])
    rows = []
    for path, res in zip(args.images, results, strict=True):
        row: dict[str, Any] = {"image": path}
        if d.predicted_feature_name:
            row["label"] = res[d.predicted_feature_name]
        probs = res.get(d.predicted_probabilities_name or "", None)
        if isinstance(probs, dict):
            top = sorted(probs.items(), key=lambda kv: -kv[1])[: args.top]
            row["probabilities"] = dict(top)
        for k, v in res.items():
            if isinstance(v, np.ndarray):
                row[k] = v.tolist() if args.json else f"array{list(v.shape)}"
        rows.append(row)
    if args.json:
        print(json.dumps(rows if len(rows) > 1 else rows[0], indent=2))
        return 0
    for row in rows:
        head = f"{row['image']}: {row.get('label', '')}"
        print(head)
        for lab, p in row.get("probabilities", {}).items():
            print(f"  {p:7.2%}  {lab}")
        for k, v in row.items():
            if k not in ("image", "label", "probabilities"):
                print(f"  {k}: {v}")
    return 0
