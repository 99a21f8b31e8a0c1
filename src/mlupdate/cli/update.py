"""``mlupdate update MODEL DATA --out OUT``: retrain a model on a folder of labelled images or a CSV."""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path
from typing import Any

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".heic"}


def add_parser(sub: Any) -> None:
    """Register the subcommand."""
    p = sub.add_parser("update", help="retrain an updatable model on labelled images or arrays",
                       description="Update (retrain) an updatable model as Core ML's MLUpdateTask does. DATA is a "
                                   "folder of class-named subfolders of images (or of .npy arrays, for a model with "
                                   "an array input), or a CSV: rows of path,label (paths relative to the CSV's "
                                   "folder; images or .npy files), or, for an array input, rows of the array's "
                                   "values followed by the label. MODEL is never modified.")
    p.add_argument("model", help="the updatable .mlmodel (or .mlpackage)")
    p.add_argument("data", help="folder of <label>/<file> files, or a CSV (path,label or values...,label)")
    p.add_argument("--out", required=True, help="where to write the updated model (atomically; an .mlpackage for a "
                                                "model holding an ML Program)")
    p.add_argument("--epochs", type=int, help="override the model's epochs")
    p.add_argument("--learning-rate", type=float, help="override the model's learning rate")
    p.add_argument("--batch-size", type=int, help="override the model's mini-batch size")
    p.add_argument("--seed", type=int, help="shuffle seed")
    p.add_argument("--plot", metavar="PNG", help="save the per-epoch loss curve")
    p.add_argument("--dry-run", action="store_true", help="validate the data against the model, do not train")
    p.set_defaults(func=run)


def read_data(data: str, suffixes: set[str] = IMAGE_SUFFIXES) -> list[tuple[Any, str]]:
    """``(value, label)`` pairs from a class-folder tree or a CSV.

    A value is a file path (a folder tree's files with one of ``suffixes``; a CSV row's ``path``) or,
    for CSV rows of more than two cells, the row's numbers but the last (an array example).
    """
    from mlupdate.errors import TrainingDataError

    root = Path(data)
    pairs: list[tuple[Any, str]] = []
    if root.is_dir():
        for folder in sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")):
            pairs += [(str(f), folder.name) for f in sorted(folder.iterdir()) if f.suffix.lower() in suffixes]
    elif root.is_file():
        with root.open(newline="") as fh:
            for n, row in enumerate(csv.reader(fh), 1):
                if not row or row[0].startswith("#") or (n == 1 and row[-1].strip().lower() == "label"):
                    continue
                if len(row) < 2:
                    raise TrainingDataError(f"{root}:{n}: expected 'path,label' or 'values...,label', got "
                                            f"{','.join(row)!r}.")
                if len(row) > 2 or _number(row[0]):
                    pairs.append((_numbers(row[:-1], root, n), row[-1].strip()))
                    continue
                path = Path(row[0].strip())
                pairs.append((str(path if path.is_absolute() else root.parent / path), row[1].strip()))
    else:
        raise TrainingDataError(f"No folder or CSV at {root}: pass a folder of <label>/ subfolders or a CSV.")
    if not pairs:
        raise TrainingDataError(f"No labelled examples found in {root}: expected <label>/<file> "
                                f"({', '.join(sorted(suffixes))}) or CSV rows.")
    return pairs


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _numbers(cells: list[str], root: Path, line: int) -> list[float]:
    from mlupdate.errors import TrainingDataError

    try:
        return [float(c) for c in cells]
    except ValueError:
        raise TrainingDataError(f"{root}:{line}: an array row holds numbers then the label; got "
                                f"{','.join(cells)!r}.") from None


def _example_value(value: Any, fd: Any) -> Any:
    """A read value as the input takes it: an image path, or an array (from .npy or a CSV row)."""
    import numpy as np

    from mlupdate.errors import TrainingDataError

    if fd.type == "image":
        if not isinstance(value, str):
            raise TrainingDataError(f"Input '{fd.name}' is an image; give image files, not rows of numbers.")
        return value
    if isinstance(value, str):
        if not value.endswith(".npy"):
            raise TrainingDataError(f"Input '{fd.name}' is {fd}; give .npy files (or CSV rows of numbers), not "
                                    f"{value}.")
        try:
            return np.load(value, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise TrainingDataError(f"Cannot read {value} as a .npy array ({exc}).") from None
    arr = np.asarray(value, np.float32)
    if fd.shape and arr.size == int(np.prod(fd.shape)):
        arr = arr.reshape(fd.shape)
    return arr


def _label(raw: str, labels: list[Any], target: Any) -> Any:
    """A label as the model's training input takes it.

    A class label for a classifier; otherwise a number (a class index or a target value), as an
    array of the declared shape when the training input is a multiarray.
    """
    import numpy as np

    if labels:
        return int(raw) if isinstance(labels[0], int) else raw
    try:
        value: Any = int(raw)
    except ValueError:
        value = float(raw) if _number(raw) else raw
    if target.type == "multiArray" and not isinstance(value, str):
        return np.full(target.shape or (1,), value, dtype=np.dtype(target.dtype or "float32"))
    return value


def run(args: argparse.Namespace) -> int:
    """Validate, update, write and summarise."""
    import mlupdate
    from mlupdate.authoring.lint_device import update_warnings
    from mlupdate.spec.io import read_spec

    if args.plot:  # before the update, not after it
        from mlupdate.extras import require

        require("matplotlib", "plot", "mlupdate update --plot")
    if Path(args.out).resolve() == Path(args.model).resolve():
        raise mlupdate.UpdateError("--out must differ from MODEL: mlupdate never overwrites the source model.")
    spec = read_spec(args.model)
    desc = mlupdate.Description.from_spec(spec)
    label = next((n for n in desc.training_inputs if n not in desc.inputs), None)
    features = [f for f in desc.inputs.values() if f.type in ("image", "multiArray")]
    if len(desc.inputs) != 1 or len(features) != 1 or label is None:
        raise mlupdate.TrainingDataError("mlupdate update needs a model with one image or array input and a label "
                                         f"training input; this one has inputs {list(desc.inputs)}, training inputs "
                                         f"{list(desc.training_inputs)}. Use mlupdate.UpdateTask from Python.")
    fd = features[0]
    labels = desc.class_labels or []
    pairs = read_data(args.data, IMAGE_SUFFIXES if fd.type == "image" else {".npy"})
    target = desc.training_inputs[label]
    data = [{fd.name: _example_value(value, fd), label: _label(lab, labels, target)} for value, lab in pairs]
    overrides = {k: v for k, v in (("epochs", args.epochs), ("learning_rate", args.learning_rate),
                                   ("mini_batch_size", args.batch_size), ("seed", args.seed)) if v is not None}
    for warning in update_warnings(spec):  # what would fail or do nothing on a device, before training here
        print(warning, file=sys.stderr)
    losses: list[float] = []
    bar = _Bar()
    # by path, so a package's ML Program weights (and linked models) are found beside the spec
    task = mlupdate.UpdateTask(args.model, data, parameters=overrides, progress_handlers=mlupdate.ProgressHandlers(
        {"training_begin", "mini_batch_end", "epoch_end"}, lambda ctx: bar.update(ctx, losses)))
    if args.dry_run:
        n = task.validate()
        print(f"OK: {n} examples match the model ({', '.join(sorted({lab for _, lab in pairs}))}); "
              f"parameters {task.parameters}.")
        return 0
    start = time.perf_counter()
    task.resume()
    task.wait()
    bar.close()
    if task.error is not None:
        raise task.error
    assert task.context is not None
    task.context.write(args.out)
    final = task.context.metrics.get("loss")
    how = f" x {task.parameters.get('epochs')} epochs" if task.parameters.get("epochs") else ""
    loss = f"; final loss {final:.4f}" if final is not None else ""  # a k-NN update has no loss
    print(f"Updated {args.model} on {len(data)} examples{how} in {time.perf_counter() - start:.1f} s{loss}. "
          f"Wrote {args.out}.")
    if args.plot:
        _plot(losses, args.plot)
        print(f"Loss curve: {args.plot}")
    return 0


class _Bar:
    """A tqdm bar over all mini-batches of all epochs."""

    def __init__(self) -> None:
        self.bar: Any = None

    def update(self, ctx: Any, losses: list[float]) -> None:
        from tqdm import tqdm

        p = ctx.parameters
        if ctx.event == "training_begin":
            n = ctx.task.example_count
            per = -(-n // int(p.get("mini_batch_size") or n))
            self.bar = tqdm(total=per * int(p.get("epochs") or 1), unit="batch", desc="update")
            return
        loss = ctx.metrics.get("loss")
        if ctx.event == "epoch_end":
            if loss is not None:
                losses.append(float(loss))
            return
        if self.bar is not None:
            self.bar.update(1)
            shown = {"loss": f"{loss:.4f}"} if loss is not None else {}
            self.bar.set_postfix(epoch=ctx.metrics.get("epoch_index", 0) + 1,
                                 batch=ctx.metrics.get("mini_batch_index", 0) + 1, **shown)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _plot(losses: list[float], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mlupdate.spec.io import write_bytes_atomic

    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(range(1, len(losses) + 1), losses, marker="o")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss")
    ax.set_title("mlupdate update")
    fig.tight_layout()
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    write_bytes_atomic(buf.getvalue(), path)
