"""Federated training of simulated users on one machine: Flower's Simulation Engine on a local Ray."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from mlupdate.federated import require_flower
from mlupdate.federated.config import RAY_OBJECT_STORE_BYTES, settings
from mlupdate.federated.data import federation_split, io_names, partition
from mlupdate.federated.local import load_spec


def check(cfg: Mapping[str, Any], users: int) -> None:
    """Fail before Ray starts when the model, DATA, partition or strategy would fail every node.

    Raises:
        mlupdate.Error: Naming the model, folder or setting and the fix.
    """
    from mlupdate.federated.server_app import strategy_options
    from mlupdate.update.task import refuse_invalid

    spec = load_spec(str(cfg["model"]))
    refuse_invalid(spec)
    _, _, labels = io_names(spec)
    pairs, _ = federation_split(cfg["data"], labels, int(cfg["partition-seed"]))
    partition([lab for _, lab in pairs], users, str(cfg["partition"]), int(cfg["partition-seed"]))
    strategy_options(cfg, users)


def run_federated(model: str | os.PathLike[str], data: str | os.PathLike[str], *, users: int, rounds: int,
                  out: str | os.PathLike[str], options: Mapping[str, Any] | None = None, cpus: int = 2,
                  strategy: Any = None, on_round: Any = None, quiet: bool = False) -> list[dict[str, Any]]:
    """Federate ``model`` over ``users`` simulated users holding shares of ``data``, for ``rounds`` rounds.

    Args:
        model: The updatable ``.mlmodel`` (never modified).
        data: DATA folder (:mod:`mlupdate.federated.data`).
        users: Number of simulated users (Flower SuperNodes).
        rounds: Number of server rounds.
        out: Where the global model goes after every round (atomically).
        options: More settings (:mod:`mlupdate.federated.config`): ``strategy``, ``fraction-train``,
            ``partition``, ``epochs``, ...
        cpus: CPUs Ray may use (one per node at a time).
        strategy: A Flower strategy object to use instead of ``options['strategy']``.
        on_round: Called with each history entry (round 0: the original model on the held-out photos).
        quiet: Hide Flower's own log lines (warnings too; failures are counted in the history).

    Returns:
        The history: one dict per round (see :mod:`mlupdate.federated.server_app`).

    Raises:
        UpdateError: Flower or Ray is not installed.
        mlupdate.Error: A bad model, DATA folder or setting, found before anything starts.
    """
    require_flower("Federated learning")
    from flwr.simulation import run_simulation

    from mlupdate.federated.client_app import make_client_app
    from mlupdate.federated.server_app import make_server_app

    cfg = settings(options, {"model": os.fspath(model), "data": os.fspath(data), "out": os.fspath(out),
                             "num-server-rounds": int(rounds), "num-users": int(users)})
    check(cfg, users)
    history: list[dict[str, Any]] = []

    def record(entry: dict[str, Any]) -> None:
        history.append(entry)
        if on_round is not None:
            on_round(entry)

    # keep Ray's own behaviour for CPU-only nodes and skip its warning about changing it
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    logger = logging.getLogger("flwr")
    level = logger.level
    if quiet:
        logger.setLevel(logging.ERROR)
    try:
        run_simulation(server_app=make_server_app(cfg, strategy, record), client_app=make_client_app(cfg),
                       num_supernodes=users,
                       backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0},
                                       "init_args": {"num_cpus": cpus, "include_dashboard": False,
                                                     "object_store_memory": RAY_OBJECT_STORE_BYTES}})
    finally:
        logger.setLevel(level)
    return history
