"""``mlupdate make-updatable IN OUT --layers ...``: the coremltools tutorial's update setup in one command."""

from __future__ import annotations

import argparse
import os
import warnings
from pathlib import Path
from typing import Any

SGD_KEYS = {"lr": "learning_rate", "learning_rate": "learning_rate", "batch": "mini_batch_size",
            "mini_batch_size": "mini_batch_size", "momentum": "momentum"}
ADAM_KEYS = {"lr": "learning_rate", "learning_rate": "learning_rate", "batch": "mini_batch_size",
             "mini_batch_size": "mini_batch_size", "beta1": "beta1", "beta2": "beta2", "eps": "eps"}


def add_parser(sub: Any) -> None:
    """Register the subcommand."""
    p = sub.add_parser(
        "make-updatable", help="make a neural network updatable (loss, optimizer, epochs), repairing it if needed",
        description="Mark layers updatable and add the loss, optimizer, epochs and training inputs that Core ML "
                    "expects (what coremltools' builder calls do), after exactly-equivalent repairs of converted "
                    "networks (final softmaxND, batchedMatmul, reshapes). IN is never modified.",
        epilog="Optimizer settings: --sgd lr=0.01,batch=5,momentum=0.9 or --adam lr=0.001,batch=8,beta1=0.9,"
               "beta2=0.999,eps=1e-8. Ranges and sets: lr_min=0,lr_max=1 (likewise momentum_/beta1_/beta2_/eps_) "
               "and batches=4:8:16 (allowed mini-batch sizes).")
    p.add_argument("input", metavar="IN", help="the .mlmodel to read (not modified)")
    p.add_argument("output", metavar="OUT", help="where to write the updatable .mlmodel")
    p.add_argument("--layers", nargs="+", required=True, metavar="LAYER",
                   help="innerProduct/convolution layers to train (see mlupdate inspect IN)")
    add_training_arguments(p)
    p.add_argument("--epochs-allowed", type=int, nargs="+", metavar="N", help="allowed epochs (default: --epochs)")
    p.add_argument("--shuffle", action=argparse.BooleanOptionalAction, default=True,
                   help="shuffle the training data between epochs (default yes)")
    p.add_argument("--loss-input", metavar="BLOB", help="blob the loss reads (default: the class probabilities)")
    p.add_argument("--loss-name", default="lossLayer", help="name of the loss layer (default lossLayer)")
    p.add_argument("--no-repair", dest="repair", action="store_false",
                   help="do not rewrite softmaxND/batchedMatmul/reshapes (fail instead)")
    p.set_defaults(func=run)


def add_training_arguments(p: argparse.ArgumentParser, when: str = "") -> None:
    """The loss, optimizer, epochs and seed options shared by make-updatable and convert."""
    p.add_argument("--loss", default="cce", choices=("cce", "mse", "categorical_cross_entropy", "mean_squared_error"),
                   help=f"loss function{when} (default cce)")
    opt = p.add_mutually_exclusive_group()
    opt.add_argument("--sgd", metavar="K=V,...", help="SGD settings, e.g. lr=0.01,batch=5 (default "
                                                      "lr=0.01,batch=10,momentum=0)")
    opt.add_argument("--adam", metavar="K=V,...", help="Adam settings, e.g. lr=0.001,batch=8")
    p.add_argument("--epochs", type=int, default=1, help=f"default number of epochs{when} (default 1)")
    p.add_argument("--seed", type=int, help=f"seed of the shuffle{when}")


def optimizer_from(args: argparse.Namespace) -> Any:
    """The optimizer that ``--sgd`` / ``--adam`` describe (SGD with defaults when neither is given)."""
    return parse_optimizer(args.adam, True) if args.adam is not None else parse_optimizer(args.sgd, False)


def parse_optimizer(text: str | None, adam: bool) -> Any:
    """``lr=0.01,batch=5`` to :class:`mlupdate.SGD` / :class:`mlupdate.Adam`.

    Raises:
        ParameterError: For an unknown key or a malformed value.
    """
    from mlupdate.authoring.optimizers import SGD, Adam
    from mlupdate.errors import ParameterError

    keys = ADAM_KEYS if adam else SGD_KEYS
    cls = Adam if adam else SGD
    flag = "--adam" if adam else "--sgd"
    kwargs: dict[str, Any] = {}
    ranges: dict[str, list[float]] = {}
    for item in filter(None, (text or "").split(",")):
        key, sep, value = item.partition("=")
        key = key.strip().lower()
        try:
            if not sep:
                raise ValueError
            if key == "batches":
                kwargs["mini_batch_sizes"] = [int(v) for v in value.split(":")]
            elif key.endswith(("_min", "_max")) and key[:-4] in keys and keys[key[:-4]] != "mini_batch_size":
                name = keys[key[:-4]]
                ranges.setdefault(name, [0.0, 1.0])[key.endswith("_max")] = float(value)
            elif key in keys:
                kwargs[keys[key]] = int(value) if keys[key] == "mini_batch_size" else float(value)
            else:
                allowed = sorted({*keys, "batches"} | {f"{k}_min" for k in keys if "batch" not in k})
                raise ParameterError(f"{flag}: unknown setting '{key}'. Known: {', '.join(allowed)}.")
        except ParameterError:  # also a ValueError: not a value that failed to parse
            raise
        except ValueError:
            raise ParameterError(f"{flag}: cannot read '{item}'; write key=value pairs separated by commas, "
                                 "e.g. lr=0.01,batch=5.") from None
    for name, bounds in ranges.items():
        kwargs[f"{name}_range"] = tuple(bounds)
    return cls(**kwargs)


def run(args: argparse.Namespace) -> int:
    """Make the model updatable, write it and print what was done."""
    from mlupdate.authoring.repairs import RepairWarning
    from mlupdate.authoring.updatable import make_updatable
    from mlupdate.cli.outputs import check_file
    from mlupdate.errors import AuthoringError

    src, dst = Path(args.input), Path(args.output)
    if dst.resolve() == src.resolve() or (dst.exists() and src.exists() and os.path.samefile(src, dst)):
        raise AuthoringError(f"OUT is the same file as IN ({src}); mlupdate never modifies the input model. "
                             "Choose another output path.")
    check_file(dst, "OUT")
    optimizer = optimizer_from(args)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RepairWarning)  # printed below instead
        model = make_updatable(src, args.layers, args.loss, optimizer, args.epochs, args.shuffle, args.seed,
                               epochs_allowed=args.epochs_allowed, loss_input=args.loss_input,
                               loss_name=args.loss_name, repair=args.repair)
    if model.notes:
        print("Repairs applied:")
        for note in model.notes:
            print(f"  - {note}")
    print("\n".join(summary_lines(model.spec)))
    model.write(dst)
    print(f"Wrote {dst}")
    return 0


def summary_lines(spec: Any) -> list[str]:
    """What coremltools' inspect_updatable_layers / inspect_loss_layers / inspect_optimizer print."""
    from mlupdate.authoring.netgraph import kind_of
    from mlupdate.authoring.optimizers import summarize_optimizer
    from mlupdate.spec.model_types import network_of

    nn = network_of(spec)
    up = nn.updateParams
    lines = ["Updatable layers:"]
    for layer in nn.layers:
        if layer.isUpdatable:
            lines.append(f"  Name: {layer.name} (Type: {kind_of(layer)})")
            lines.append(f"          Input blobs: {list(layer.input)}")
            lines.append(f"          Output blobs: {list(layer.output)}")
    lines.append("Loss layers:")
    for i, loss in enumerate(up.lossLayers):
        which = loss.WhichOneof("LossLayerType")
        body = getattr(loss, which)
        lines.append(f"  [Id: {i}], Name: {loss.name} (Type: {which})")
        lines.append(f"          Loss Input: {body.input}")
        lines.append(f"          Loss Target: {body.target}")
    lines += summarize_optimizer(up)
    lines.append(f"epochs: {up.epochs.defaultValue}, allowed_set: {list(up.epochs.set.values)}")
    lines.append(f"shuffle: {up.shuffle.defaultValue}" + (f", seed: {up.seed.defaultValue}"
                                                            if up.HasField("seed") else ""))
    lines.append("Training inputs: " + ", ".join(t.name for t in spec.description.trainingInput))
    lines.append(f"Specification version: {spec.specificationVersion}")
    return lines
