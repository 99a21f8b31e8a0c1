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
    from mlupdate.cli.progress import spinner
    from mlupdate.runtime.cache import info

    start = time.perf_counter()
    with spinner(f"Compiling {args.model}"):
        model = mlupdate.load(args.model, compute_units="cpu_only")
    cached = info()
    print(f"Compiled {args.model} for {model.executor} in {time.perf_counter() - start:.1f} s; the cache "
          f"({cached.folder}) holds {cached.files} model(s), {cached.size / 2**20:.1f} MB.")
    return 0
