"""``mlupdate compile MODEL``: compile ahead of time (as ``coremlcompiler`` does), so later loads are fast."""

from __future__ import annotations

import argparse
import time
from typing import Any


def add_parser(sub: Any) -> None:
    """Register the subcommand."""
    p = sub.add_parser("compile", help="compile a model into the cache ahead of time",
                       description="Export the model's network once into mlupdate's compiled-model cache "
                                   "($MLUPDATE_CACHE_DIR), so that every later load skips the export.")
    p.add_argument("model", help="path of the .mlmodel file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Load (which compiles into the cache) and report."""
    import mlupdate
    from mlupdate.cli.interrupt import in_worker
    from mlupdate.cli.outputs import check_folder
    from mlupdate.cli.progress import spinner
    from mlupdate.runtime.cache import cache_dir, info
    from mlupdate.spec.io import read_spec

    check_folder(cache_dir(), "The cache folder ($MLUPDATE_CACHE_DIR)")  # or it would say "Compiled" and keep nothing
    start = time.perf_counter()
    spec = read_spec(args.model)

    def compiled() -> bool:  # imports torch: on the worker thread too
        from mlupdate.runtime.network import is_compiled
        from mlupdate.spec.model_types import NN_TYPES

        return spec.WhichOneof("Type") in NN_TYPES and is_compiled(spec)

    done = in_worker(compiled)
    with spinner(f"Compiling {args.model}"):
        model = in_worker(lambda: mlupdate.load(args.model, compute_units="cpu_only"))
    cached = info()
    if done:
        what = f"{args.model} was already compiled (found in the cache; nothing to do)"
    elif model.executor == "numpy":
        what = f"{args.model} runs in numpy, so there is nothing to compile"
    else:
        what = f"Compiled {args.model} for {model.executor} in {time.perf_counter() - start:.1f} s"
    print(f"{what}; the cache ({cached.folder}) holds {cached.files} model(s), {cached.size / 2**20:.1f} MB.")
    return 0
