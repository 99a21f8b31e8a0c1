"""The ``mlupdate`` command. Each subcommand lives in its own module and uses the public API only.

Exit codes: 0 success, 1 the command ran and found a problem (e.g. lint errors, a failed
update), 2 bad usage or an input the library refused (an ``mlupdate.Error``).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

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
    try:
        return int(args.func(args) or 0)
    except Error as exc:
        print(f"mlupdate {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (| head): stop quietly, as the docs of signal advise
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
