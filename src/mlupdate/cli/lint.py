"""``mlupdate lint MODEL``: Core ML's updatable-model rules, checked before the model reaches a device."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from typing import Any


def add_parser(sub: Any) -> None:
    """Register the subcommand."""
    p = sub.add_parser("lint", help="check a model against Core ML's rules for updatable models",
                       description="Report everything Core ML's validator would reject in an updatable model "
                                   "(layers, loss, optimizer, epochs, back-propagation path, training inputs, "
                                   "pipelines, k-NN). Exit status 1 when there are errors, 0 otherwise.")
    p.add_argument("model", help="path of the .mlmodel file")
    p.add_argument("--json", action="store_true", help="print the problems as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Lint and print; 1 when there are errors."""
    from mlupdate.authoring.lint import lint

    problems = lint(args.model)
    errors = sum(p.severity == "error" for p in problems)
    if args.json:
        print(json.dumps([asdict(p) for p in problems], indent=2))
        return 1 if errors else 0
    for p in problems:
        where = f" (layer '{p.layer}')" if p.layer else ""
        print(f"{p.severity} [{p.rule}]{where}: {p.message}")
    warnings = len(problems) - errors
    if not problems:
        print(f"{args.model}: no problems found.")
    else:
        print(f"{args.model}: {errors} error(s), {warnings} warning(s).")
    return 1 if errors else 0
