"""``mlupdate update MODEL DATA --out OUT``: retrain a model on a folder of labelled images or a CSV."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any


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


def run(args: argparse.Namespace) -> int:
    """Validate, update, write and summarise."""
    import mlupdate
    from mlupdate.authoring.lint_device import update_warnings
    from mlupdate.cli.interrupt import in_worker, run_task
    from mlupdate.cli.outputs import check_file
    from mlupdate.spec.io import read_spec
    from mlupdate.update.files import read_examples

    check_file(args.out, "--out", source=args.model)
    if args.plot:  # before the update, not after it
        from mlupdate.extras import require

        require("matplotlib", "plot", "mlupdate update --plot")
        check_file(args.plot, "--plot", source=args.model)
    spec = read_spec(args.model)
    desc = mlupdate.Description.from_spec(spec)
    data = read_examples(args.data, desc)
    overrides = {k: v for k, v in (("epochs", args.epochs), ("learning_rate", args.learning_rate),
                                   ("mini_batch_size", args.batch_size), ("seed", args.seed)) if v is not None}
    for warning in update_warnings(spec):  # what would fail or do nothing on a device, before training here
        print(warning, file=sys.stderr)
    losses: list[float] = []
    bar = _Bar()
    handlers = mlupdate.ProgressHandlers({"training_begin", "mini_batch_end", "epoch_end"},
                                         lambda ctx: bar.update(ctx, losses))
    # by path, so a package's ML Program weights (and linked models) are found beside the spec; building the task
    # imports torch and compiles the network: off the main thread, which takes Ctrl-C
    task = in_worker(lambda: mlupdate.UpdateTask(args.model, data, parameters=overrides, progress_handlers=handlers))
    if args.dry_run:
        n = in_worker(task.validate)
        label = next(n for n in desc.training_inputs if n not in desc.inputs)
        print(f"OK: {n} examples match the model ({', '.join(sorted({str(ex[label]) for ex in data}))}); "
              f"parameters {task.parameters}.")
        return 0
    start = time.perf_counter()
    try:
        run_task(task)
    finally:
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
