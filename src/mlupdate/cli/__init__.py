"""The ``mlupdate`` command. Each subcommand lives in its own module and uses the public API only.

Exit codes: 0 success, 1 the command ran and found a problem (e.g. lint errors, a failed
update), 2 bad usage or an input the library refused (an ``mlupdate.Error``), 130 stopped by Ctrl-C,
143 stopped by SIGTERM (:mod:`mlupdate.cli.interrupt`).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import threading
import warnings
from collections.abc import Sequence
from typing import Any

from mlupdate.cli.interrupt import settle, sigterm_raises
from mlupdate.errors import Error

COMMANDS = ("inspect", "predict", "lint", "make_updatable", "convert", "update", "serve", "demo", "compile", "cache",
            "federate", "personalize_fleet")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every available subcommand."""
    from mlupdate import __version__

    parser = argparse.ArgumentParser(
        prog="mlupdate",
        description="Run, make updatable, lint and retrain Core ML .mlmodel files, anywhere Python runs.",
    )
    parser.add_argument("--version", action="version", version=f"mlupdate {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        try:
            mod = importlib.import_module(f"mlupdate.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"mlupdate.cli.{name}":
                continue
            raise
        mod.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mlupdate`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)

    shown: set[str] = set()
    before = set(threading.enumerate())

    def show(message: Any, category: type[Warning], *_: Any, **__: Any) -> None:
        if str(message) not in shown:  # once per command, whichever thread or library reset warnings' registry
            shown.add(str(message))
            print(f"mlupdate {args.command}: warning: {message}", file=sys.stderr, flush=True)

    try:
        with sigterm_raises(), warnings.catch_warnings():  # a warning: one line naming the command
            warnings.showwarning = show
            return int(args.func(args) or 0)
    except Error as exc:
        print(f"mlupdate {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (Terminated)
        return settle(exc, args.command, before)
    except BrokenPipeError:  # the reader went away (| head): stop quietly, as the docs of signal advise
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
