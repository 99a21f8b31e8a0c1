"""``mlupdate cache``: show or clear the compiled-model cache."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any) -> None:
    """Register the subcommand."""
    p = sub.add_parser("cache", help="show or clear the compiled-model cache",
                       description="Show where compiled models are cached, how many and how large (limit: "
                                   "$MLUPDATE_CACHE_MAX_MB, default 512; least recently used go first), or clear it.")
    p.add_argument("--clear", action="store_true", help="remove every compiled model")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the cache's state, clearing it first with ``--clear``."""
    from mlupdate.cli.outputs import check_folder
    from mlupdate.runtime.cache import cache_dir, evict, info, max_bytes

    check_folder(cache_dir(), "The cache folder ($MLUPDATE_CACHE_DIR)")
    if args.clear:
        print(f"Removed {evict(0)} compiled model(s).")
    cached = info()
    print(f"{cached.folder}: {cached.files} compiled model(s), {cached.size / 2**20:.1f} MB of "
          f"{max_bytes() / 2**20:.0f} MB.")
    return 0
