"""``mlupdate convert MODEL OUT ...``: a Keras 2 .h5 (no TensorFlow) or a PyTorch module to Core ML.

A PyTorch module is named as ``package.module:factory`` (a callable returning the ``nn.Module``, or the
module object itself) with ``--input-shape``; ``OUT.mlpackage`` (or ``--format mlpackage``) makes Apple's
recommended updatable layout: an ML Program extractor and an updatable neural-network head.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path
from typing import Any

from mlupdate.cli.make_updatable import add_training_arguments


def add_parser(sub: Any) -> None:
    """Register the subcommand."""
    p = sub.add_parser(
        "convert", help="convert a Keras .h5 model or a PyTorch module to Core ML (optionally updatable)",
        description="Convert a Keras 2 model.h5 (read with h5py, no TensorFlow) to the Core ML network the classic "
                    "coremltools Keras converter produced (layer names kept), or a PyTorch module named as "
                    "package.module:factory (with --input-shape) with mlupdate.convert; then optionally make it "
                    "updatable in the same step. OUT.mlpackage splits a PyTorch module at its first updatable "
                    "layer into an ML Program extractor and an updatable neural-network head (Apple's recommended "
                    "updatable layout).",
        epilog="Examples (the coremltools tutorial): mlupdate convert model.h5 CatDog.mlmodel --image-input image "
               "--scale 0.00392157 --class-labels Cat Dog --updatable dense_5 dense_6 --loss cce "
               "--sgd lr=0.01,batch=5 --epochs 2;  mlupdate convert mlupdate.demo.model:build_demo_net "
               "CatDog.mlpackage --input-shape 1 3 224 224 --image-input image --scale 0.01735 --class-labels Cat "
               "Dog --updatable dense_5 dense_6")
    p.add_argument("input", metavar="MODEL", help="the Keras model file (written by model.save), or a PyTorch "
                                                  "module as package.module:factory")
    p.add_argument("output", metavar="OUT", help="where to write the Core ML model (.mlmodel or .mlpackage)")
    p.add_argument("--format", choices=("mlmodel", "mlpackage"), help="the file kind (default: OUT's suffix)")
    p.add_argument("--input-shape", type=int, nargs="+", metavar="N",
                   help="the PyTorch module's example input shape, batch first (e.g. 1 3 224 224)")
    p.add_argument("--precision", choices=("float16", "float32"), default="float16",
                   help="the ML Program extractor's compute precision with .mlpackage (default float16)")
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
    fmt = args.format or ("mlpackage" if dst.suffix == ".mlpackage" else "mlmodel")
    if ":" in args.input and not src.exists():
        return _run_torch(args, dst, fmt)
    if fmt == "mlpackage":
        raise ConversionError("The .mlpackage layout is made from PyTorch modules (package.module:factory); a Keras "
                              ".h5 converts to a .mlmodel neural network.")
    if args.input_shape:
        raise ConversionError("--input-shape is for PyTorch modules; a Keras .h5 declares its own input shape.")
    if src.suffix.lower() not in (".h5", ".hdf5", ".keras2"):
        raise ConversionError(f"{src} is not a Keras .h5 file. mlupdate convert reads Keras 2 .h5 files, or PyTorch "
                              "modules named as package.module:factory (with --input-shape).")
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


def _image_options(args: argparse.Namespace) -> dict[str, Any] | None:
    from mlupdate.errors import ConversionError

    if args.image_input:
        image: dict[str, Any] = {"scale": args.scale, "color_layout": "BGR" if args.bgr else "RGB"}
        if args.bias:
            image["bias"] = args.bias
        return image
    if args.bias or args.bgr or args.scale != 1.0:
        raise ConversionError("--scale, --bias and --bgr describe an image input; add --image-input NAME.")
    return None


def _run_torch(args: argparse.Namespace, dst: Path, fmt: str) -> int:
    """Convert the PyTorch module that ``package.module:factory`` names."""
    import importlib

    from mlupdate.errors import ConversionError

    target, _, attr = args.input.partition(":")
    if not args.input_shape:
        raise ConversionError("A PyTorch module needs --input-shape (the example input, batch first, e.g. 1 3 224 "
                              "224).")
    try:
        found: Any = importlib.import_module(target)
        for part in attr.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError) as exc:
        raise ConversionError(f"Cannot find {args.input}: {exc}. Name a module on the Python path and a callable "
                              "in it that returns the nn.Module, as package.module:factory.") from None
    import torch

    module = found if isinstance(found, torch.nn.Module) else found() if callable(found) else None
    if not isinstance(module, torch.nn.Module):
        raise ConversionError(f"{args.input} gives a {type(module).__name__}, not a torch.nn.Module.")
    import mlupdate
    from mlupdate.authoring.repairs import RepairWarning
    from mlupdate.cli.make_updatable import optimizer_from, summary_lines

    labels: Any = args.class_labels
    if args.class_labels_file:
        labels = [line.strip() for line in Path(args.class_labels_file).read_text().splitlines() if line.strip()]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RepairWarning)
        model = mlupdate.convert(module, torch.zeros(*args.input_shape), image_input=_image_options(args),
                                 class_labels=labels, updatable=args.updatable,
                                 loss={"cce": "categorical_cross_entropy", "mse": "mean_squared_error"}.get(
                                     args.loss, args.loss),
                                 optimizer=optimizer_from(args) if args.updatable else None, epochs=args.epochs,
                                 seed=args.seed, input_name=args.image_input or args.input_name,
                                 output_name=args.output_name, predicted_feature_name=args.predicted_feature_name,
                                 format=fmt, compute_precision=args.precision)
    made = "an ML Program extractor and an updatable network head" if fmt == "mlpackage" else "Core ML"
    print(f"Converted {args.input} ({type(module).__name__}) to {made}")
    for note in model.notes:
        print(f"  - {note}")
    if args.updatable:
        spec = model.spec
        kind = spec.WhichOneof("Type")
        if kind.startswith("pipeline"):  # the layout: the head is the last model
            spec = (spec.pipeline if kind == "pipeline" else getattr(spec, kind).pipeline).models[-1]
        print("\n".join(summary_lines(spec)))
    model.write(dst)
    print(f"Wrote {dst}")
    return 0
