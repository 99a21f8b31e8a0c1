"""``mlupdate predict MODEL [IMAGE...] [--input NAME=VALUE ...]``: every output of the model for each example."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from mlupdate.cli.values import feature_value, printable, split_pair


def add_parser(sub: Any) -> None:
    """Register the subcommand."""
    p = sub.add_parser(
        "predict", help="predict with a model (images, arrays, numbers, text)",
        description="Predict with a model. Positional IMAGEs go to the model's image input, one example each; "
                    "--input NAME=VALUE gives any input: an image path, @file.npy, @file.json, a JSON literal "
                    "([[1, 2]], {\"a\": 1.5}, 3) or text. Classifiers print the label and the top probabilities; "
                    "other outputs are printed as they are (arrays by shape, in full with --json).")
    p.add_argument("model", help="path of the .mlmodel file")
    p.add_argument("images", nargs="*", metavar="IMAGE", help="image files (one example each)")
    p.add_argument("--input", action="append", default=[], metavar="NAME=VALUE",
                   help="an input's value (repeatable); a bare NAME picks the image input the IMAGEs go to")
    p.add_argument("--top", type=int, default=3, help="how many probabilities to show (default 3)")
    p.add_argument("--crop-and-scale", default="center_crop", choices=("center_crop", "scale_fit", "scale_fill"),
                   help="how images of another size are fitted (default center_crop, as Vision)")
    p.add_argument("--compute-units", default="all", choices=("cpu_only", "cpu_and_gpu", "all"))
    p.add_argument("--threads", type=int, default=None, help="CPU threads for inference (default: one per core)")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON (arrays in full)")
    p.set_defaults(func=run)


def examples(args: argparse.Namespace, inputs: dict[str, Any]) -> list[dict[str, Any]]:
    """The feature dictionaries the arguments stand for: one per IMAGE (or one), with the --input values."""
    from mlupdate.errors import FeatureError

    fixed: dict[str, Any] = {}
    image_name = None
    for item in args.input:
        if "=" not in item and item in inputs:
            image_name = item
            continue
        name, text = split_pair(item, list(inputs))
        fixed[name] = feature_value(inputs[name], text)
    if not args.images:
        if not fixed:
            raise FeatureError("Give IMAGE files or --input NAME=VALUE; the model's inputs are "
                               f"{', '.join(str(f) for f in inputs.values())}.")
        return [fixed]
    images = [f.name for f in inputs.values() if f.type == "image" and f.name not in fixed]
    if not images and image_name is None:
        raise FeatureError(f"The model has no image input, so IMAGE files cannot go anywhere; its inputs are "
                           f"{', '.join(str(f) for f in inputs.values())}. Give them with --input NAME=VALUE "
                           "(e.g. @array.npy or a JSON list).")
    name = image_name or (images[0] if len(images) == 1 else None)
    if name is None or inputs[name].type != "image":
        raise FeatureError("Name the image input the IMAGEs go to with --input NAME, or give every input as "
                           f"--input NAME=VALUE; the model's inputs are {', '.join(str(f) for f in inputs.values())}.")
    return [{**fixed, name: path} for path in args.images]


def run(args: argparse.Namespace) -> int:
    """Predict and print."""
    import mlupdate
    from mlupdate.cli.progress import loading

    if args.top < 1:
        raise mlupdate.ParameterError(f"--top must be at least 1 (got {args.top}): how many probabilities to show.")

    with loading(args.model):
        model = mlupdate.load(args.model, compute_units=args.compute_units, crop_and_scale=args.crop_and_scale,
                              threads=args.threads)
    d = model.description
    batch = examples(args, d.inputs)
    results = model.predict_batch(batch)
    rows = []
    for i, res in enumerate(results):
        row: dict[str, Any] = {"image": args.images[i]} if args.images else {}
        for k, v in res.items():  # in JSON a classifier's two outputs keep stable keys: label, probabilities
            if k == d.predicted_probabilities_name and isinstance(v, dict):
                row["probabilities"] = printable(dict(sorted(v.items(), key=lambda kv: -kv[1])[: args.top]), True)
            else:
                row["label" if k == d.predicted_feature_name and args.json else k] = printable(v, args.json)
        rows.append(row)
    if _empty_knn(model.spec):
        print("mlupdate predict: note: the model's k-NN holds no samples yet, so it answers its default label for "
              "everything; add labelled examples with mlupdate update MODEL DATA --out OUT.", file=sys.stderr)
    if args.json:
        print(json.dumps(rows if len(rows) > 1 else rows[0], indent=2))
        return 0
    for row in rows:
        if "image" in row:
            print(f"{row.pop('image')}: {row.pop(d.predicted_feature_name, '')}")
        for k, v in row.items():
            if k == "probabilities":
                for lab, p in v.items():
                    print(f"  {p:7.2%}  {lab}")
            else:
                print(f"  {k}: {v}")
    return 0


def _empty_knn(spec: Any) -> bool:
    """Whether the model is, or is a pipeline ending in, a k-NN classifier without samples."""
    kind = spec.WhichOneof("Type")
    if kind == "kNearestNeighborsClassifier":
        index = spec.kNearestNeighborsClassifier.nearestNeighborsIndex
        return not len(index.floatSamples)
    if kind and kind.startswith("pipeline"):
        pipe = spec.pipeline if kind == "pipeline" else getattr(spec, kind).pipeline
        return bool(pipe.models) and _empty_knn(pipe.models[-1])
    return False
