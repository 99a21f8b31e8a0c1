"""``mlupdate convert model.h5 OUT.mlmodel ...``: a Keras 2 .h5 to Core ML (optionally updatable), no TensorFlow."""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path
from typing import Any

from mlupdate.cli.make_updatable import add_training_arguments


def add_parser(sub: Any) -> None:
    """Register the subcommand."""
    p = sub.add_parser(
        "convert", help="convert a Keras .h5 model to a Core ML .mlmodel (optionally updatable)",
        description="Convert a Keras 2 model.h5 (read with h5py, no TensorFlow) to the Core ML network the classic "
                    "coremltools Keras converter produced (layer names kept), then optionally make it updatable "
                    "in the same step. PyTorch modules are converted from Python: mlupdate.convert(module, example).",
        epilog="Example (the coremltools tutorial): mlupdate convert model.h5 CatDog.mlmodel --image-input image "
               "--scale 0.00392157 --class-labels Cat Dog --updatable dense_5 dense_6 --loss cce "
               "--sgd lr=0.01,batch=5 --epochs 2")
    p.add_argument("input", metavar="MODEL.h5", help="the Keras model file (written by model.save)")
    p.add_argument("output", metavar="OUT.mlmodel", help="where to write the Core ML model")
    p.add_argument("--input-name", default=None, help="name of the input (default 'image')")
    p.add_argument("--image-input", metavar="NAME", help="make the input an image named NAME (else a multiarray)")
    p.add_argument("--scale", type=float, default=1.0, help="image scale applied to pixels (e.g. 1/255)")
    p.add_argument("--bias", type=float, nargs="+", metavar="B", help="per-channel bias after scaling (R G B, or one)")
    p.add_argument("--bgr", action="store_true", help="the network expects BGR images")
    labels = p.add_mutually_exclusive_group()
    labels.add_argument("--class-labels", nargs="+", metavar="LABEL", help="class labels: makes a classifier")
    labels.add_argument("--class-labels-file", metavar="FILE", help="file with one class label a line")
    p.add_argument("--predicted-feature-name", default="classLabel", help="top-label output (default classLabel)")
    p.add_argument("--output-name", help="name of the output / probabilities (default output1)")
    p.add_argument("--updatable", nargs="+", metavar="LAYER", help="Dense/Conv2D layers to make updatable")
    add_training_arguments(p, " with --updatable")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Convert, optionally make updatable, write, and print what was done."""
    from mlupdate.authoring.keras_h5 import convert_keras
    from mlupdate.cli.outputs import check_file
    from mlupdate.errors import ConversionError

    src, dst = Path(args.input), Path(args.output)
    if src.suffix.lower() not in (".h5", ".hdf5", ".keras2"):
        raise ConversionError(f"{src} is not a Keras .h5 file. mlupdate convert reads Keras 2 .h5 files; convert "
                              "PyTorch modules from Python with mlupdate.convert(module, example_input).")
    if dst.exists() and src.exists() and dst.resolve() == src.resolve():
        raise ConversionError("OUT is the same file as MODEL.h5; choose another output path.")
    check_file(dst, "OUT")
    image: dict[str, Any] | None = None
    if args.image_input:
        image = {"scale": args.scale, "is_bgr": args.bgr}
        if args.bias:
            image["bias"] = args.bias
    elif args.bias or args.bgr or args.scale != 1.0:
        raise ConversionError("--scale, --bias and --bgr describe an image input; add --image-input NAME.")
    labels: Any = args.class_labels or args.class_labels_file
    model = convert_keras(src, input_name=args.image_input or args.input_name or "image", image_input=image,
                          class_labels=labels, predicted_feature_name=args.predicted_feature_name,
                          output_name=args.output_name)
    layers = [layer.name for layer in model.spec.neuralNetworkClassifier.layers] if labels else \
        [layer.name for layer in model.spec.neuralNetwork.layers]
    print(f"Converted {src}: {len(layers)} layers ({', '.join(layers)})")
    if args.updatable:
        from mlupdate.authoring.repairs import RepairWarning
        from mlupdate.authoring.updatable import make_updatable
        from mlupdate.cli.make_updatable import optimizer_from, summary_lines

        optimizer = optimizer_from(args)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RepairWarning)
            model = make_updatable(model, args.updatable, args.loss, optimizer, args.epochs, True, args.seed)
        for note in model.notes:
            print(f"  - {note}")
        print("\n".join(summary_lines(model.spec)))
    model.write(dst)
    print(f"Wrote {dst}")
    return 0
