"""``mlupdate personalize-fleet MODEL USERS_DIR --out DIR``: one personal model per user folder, on Ray."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any


def add_parser(sub: Any) -> None:
    """Register the subcommand."""
    p = sub.add_parser("personalize-fleet", help="personalise a model for every user folder (Ray)",
                       description="Run one update per user folder of USERS_DIR as Ray tasks and write "
                                   "DIR/<user>.mlmodel for each. A user folder holds train/ and test/ class "
                                   "folders, or class folders alone (25% of each label is then held out). Each "
                                   "user's accuracy on its held-out photos is shown before and after; a broken "
                                   "folder is reported and the others go on. Needs the federated extra for Ray: "
                                   'pip install "mlupdate[federated]".')
    p.add_argument("model", help="the updatable .mlmodel (never modified)")
    p.add_argument("users_dir", help="folder of user folders")
    p.add_argument("--out", required=True, help="folder for the personal models")
    p.add_argument("--workers", type=int, default=2,
                   help="users updated at once on a local Ray (default 2); 0: one after another, without Ray")
    p.add_argument("--address", help="a running Ray cluster (e.g. ray://head:10001 or auto) instead of a local one")
    p.add_argument("--epochs", type=int, help="override the model's epochs")
    p.add_argument("--learning-rate", type=float, help="override the model's learning rate")
    p.add_argument("--seed", type=int, help="shuffle seed of every user's update (repeatable runs)")
    p.add_argument("--json", metavar="FILE", help="also write every user's result and the summary as JSON")
    p.set_defaults(func=run)


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1%}"


def run(args: argparse.Namespace) -> int:
    """Personalise every user, print a line per user and the summary; exit 1 if any user failed."""
    from mlupdate.cli.outputs import check_file, check_folder
    from mlupdate.errors import ParameterError
    from mlupdate.federated.fleet import personalize_fleet, summary
    from mlupdate.spec.io import write_bytes_atomic

    if args.workers < 0:
        raise ParameterError(f"--workers must be 0 or more (got {args.workers}).")
    check_folder(args.out, "--out")
    if args.json:
        check_file(args.json, "--json", source=args.model)

    def show(r: dict[str, Any]) -> None:
        if "error" in r:
            print(f"{r['user']}: FAILED: {r['error']}", flush=True)
        else:
            print(f"{r['user']}: accuracy {_pct(r['accuracy-before'])} -> {_pct(r['accuracy-after'])} on "
                  f"{r['held-out']} held-out photos ({r['examples']} trained, {r['seconds']:.1f} s)", flush=True)

    overrides = {k: v for k, v in (("epochs", args.epochs), ("learning_rate", args.learning_rate),
                                   ("seed", args.seed)) if v is not None}
    start = time.perf_counter()
    results = personalize_fleet(args.model, args.users_dir, args.out, workers=args.workers, address=args.address,
                                parameters=overrides, on_result=show)
    s = summary(results)
    change = "" if s["mean-change"] is None else (f"; mean accuracy {_pct(s['mean-before'])} -> "
                                                  f"{_pct(s['mean-after'])} ({s['mean-change'] * 100:+.1f} points)")
    print(f"{s['users']} users in {time.perf_counter() - start:.1f} s: {s['better']} better, {s['worse']} worse, "
          f"{s['unchanged']} unchanged, {s['failed']} failed{change}. Models in {Path(args.out)}/.")
    if args.json:
        write_bytes_atomic(json.dumps({"users": results, "summary": s}, indent=1).encode(), args.json)
    return 1 if s["failed"] else 0
