"""``mlupdate federate MODEL DATA --users N --rounds R``: federated learning of simulated users on Flower and Ray."""

from __future__ import annotations

import argparse
import math
import threading
from typing import Any


def add_parser(sub: Any) -> None:
    """Register the subcommand."""
    p = sub.add_parser("federate", help="federated learning of simulated users (Flower + Ray)",
                       description="Split DATA among N simulated users; every round, each sampled user updates the "
                                   "model's updatable layers on its own photos (an UpdateTask) and the server "
                                   "aggregates the weights with a Flower strategy. DATA is a folder of <label>/ "
                                   "folders, or of train/ and test/ ones (the server evaluates on test/, else on "
                                   "20% of DATA it holds out). Needs the federated extra: "
                                   'pip install "mlupdate[federated]".')
    p.add_argument("model", help="the updatable .mlmodel (never modified)")
    p.add_argument("data", help="folder of <label>/<image> files, or of train/ and test/ such folders")
    p.add_argument("--users", type=int, required=True, help="number of simulated users")
    p.add_argument("--rounds", type=int, required=True, help="number of server rounds")
    p.add_argument("--strategy", choices=("fedavg", "fedadam", "fedprox"), default="fedavg")
    p.add_argument("--fraction", type=float, default=1.0, help="fraction of users trained each round (default 1)")
    p.add_argument("--fraction-evaluate", type=float, default=0.0,
                   help="fraction of users reporting the global model's accuracy on their photos (default 0)")
    p.add_argument("--partition", default="iid", help="iid, by-label or dirichlet:ALPHA (default iid)")
    p.add_argument("--seed", type=int, default=0, help="partition seed (default 0)")
    p.add_argument("--epochs", type=int, help="override the model's epochs on every user")
    p.add_argument("--learning-rate", type=float, help="override the model's learning rate on every user")
    p.add_argument("--proximal-mu", type=float, default=0.01, help="FedProx's mu (default 0.01)")
    p.add_argument("--out", default="Global.mlmodel", help="the global model, written after every round")
    p.add_argument("--history", help="JSON history (default <out stem>.history.json)")
    p.add_argument("--cpus", type=int, default=2, help="CPUs for Ray (default 2; one per user at a time)")
    p.add_argument("--verbose", action="store_true", help="show Flower's log")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Check, simulate, print one line per round."""
    from mlupdate.cli.outputs import check_file
    from mlupdate.errors import ParameterError, UpdateError
    from mlupdate.federated import require_flower

    require_flower("mlupdate federate")
    from mlupdate.federated.data import federation_split, io_names
    from mlupdate.federated.local import load_spec
    from mlupdate.federated.simulation import run_federated
    from mlupdate.update.parameters import resolve

    check_file(args.out, "--out", source=args.model)
    if args.history:
        check_file(args.history, "--history", source=args.model)
    if args.users < 1 or args.rounds < 1 or args.cpus < 1:
        raise ParameterError(f"--users, --rounds and --cpus must be at least 1 (got {args.users}, {args.rounds}, "
                             f"{args.cpus}).")
    if not math.isfinite(args.proximal_mu) or args.proximal_mu < 0:
        raise ParameterError(f"--proximal-mu is FedProx's mu, a weight of at least 0 (0 trains as FedAvg); got "
                             f"{args.proximal_mu}. Pass e.g. --proximal-mu 0.01.")
    options = {"strategy": args.strategy, "fraction-train": args.fraction, "fraction-evaluate": args.fraction_evaluate,
               "partition": args.partition, "partition-seed": args.seed, "proximal-mu": args.proximal_mu,
               "history": args.history or ""}
    spec = load_spec(args.model)  # a missing or broken model, and the label rule's note, before Ray starts
    federation_split(args.data, io_names(spec)[2], args.seed, announce=True)
    options.update({k: v for k, v in (("epochs", args.epochs), ("learning-rate", args.learning_rate)) if v is not None})
    # a value the model does not allow fails here, not as a traceback in every user's Ray worker
    resolve(spec, None, {k: v for k, v in (("epochs", args.epochs), ("learning_rate", args.learning_rate))
                         if v is not None})

    stopping = threading.Event()

    def show(e: dict[str, Any]) -> None:
        if stopping.is_set():  # Ctrl-C: end the server's thread at its next round, before it writes again
            raise KeyboardInterrupt
        acc = "n/a" if e["accuracy"] is None else f"{e['accuracy']:.1%}"
        loss = "" if e["loss"] is None else f" (loss {e['loss']:.4f})"
        if e["round"] == 0:
            print(f"round 0/{args.rounds}: original model, held-out accuracy {acc}{loss} on {e['held-out']} photos",
                  flush=True)
            return
        nodes = (f", users' own accuracy {e['accuracy-before']:.1%} -> {e['accuracy-after']:.1%}"
                 if "accuracy-after" in e else "")
        failed = f", {e['failures']} failed: {e['errors'][0]}" if e["failures"] else ""
        print(f"round {e['round']}/{args.rounds}: held-out accuracy {acc}{loss}, {e['clients']} users{nodes}"
              f"{failed} [{e['time']:.1f} s]", flush=True)

    try:
        history = run_federated(args.model, args.data, users=args.users, rounds=args.rounds, out=args.out,
                                options=options, cpus=args.cpus, on_round=show, quiet=not args.verbose)
    except KeyboardInterrupt:
        stopping.set()
        raise
    if len(history) < args.rounds + 1:
        raise UpdateError(f"The federation stopped after round {len(history) - 1} of {args.rounds}; run again with "
                          "--verbose to see Flower's log.")
    if not any(e["clients"] for e in history):
        print(f"No user finished a round; {args.out} was written unchanged.")
        return 1
    from mlupdate.federated.config import history_path, settings

    print(f"Wrote {args.out} and {history_path(settings(options, {'out': args.out}))}.")
    return 0
