"""Settings of a federated run, shared by the server and the nodes (Flower's run config, kebab-case keys).

``model``           the updatable ``.mlmodel`` every node and the server start from
``data``            DATA folder (``<label>/`` folders, or ``train/`` and ``test/`` of them)
``partition``       ``iid``, ``by-label`` or ``dirichlet:ALPHA``; ``partition-seed`` seeds it
``num-server-rounds``, ``strategy`` (``fedavg``, ``fedadam``, ``fedprox``), ``fraction-train``, ``fraction-evaluate``
``proximal-mu``     FedProx's mu; ``server-learning-rate`` FedAdam's eta
``epochs``, ``learning-rate``, ``mini-batch-size``, ``shuffle``, ``seed``: the nodes' update parameters (default:
                    the model's own)
``num-users``       nodes to wait for before the first round (0: any that are connected)
``out``             where the global model goes after every round; ``history`` its JSON history
                    (default ``<out stem>.history.json``)

A node started with ``--node-config 'data-dir="..."'`` trains on that folder, whole, instead of a partition.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

DEFAULTS: dict[str, Any] = {
    "model": "", "data": "", "partition": "iid", "partition-seed": 0, "num-server-rounds": 3,
    "strategy": "fedavg", "fraction-train": 1.0, "fraction-evaluate": 0.0, "proximal-mu": 0.01,
    "server-learning-rate": 0.01, "num-users": 0, "out": "Global.mlmodel", "history": "",
}
UPDATE_PARAMETERS = ("epochs", "learning-rate", "mini-batch-size", "shuffle", "seed")


def settings(*layers: Mapping[str, Any] | None) -> dict[str, Any]:
    """The defaults overridden by each mapping in turn (later wins); None is skipped."""
    out = dict(DEFAULTS)
    for layer in layers:
        out.update(layer or {})
    return out


def update_parameters(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The ``UpdateTask`` parameter overrides in ``cfg`` (``learning-rate`` becomes ``learning_rate``)."""
    return {k.replace("-", "_"): cfg[k] for k in UPDATE_PARAMETERS if k in cfg}


def history_path(cfg: Mapping[str, Any]) -> Path:
    """Where the history goes: ``history``, else beside ``out`` as ``<stem>.history.json``."""
    out = Path(str(cfg["out"]))
    return Path(str(cfg["history"])) if cfg.get("history") else out.with_name(f"{out.stem}.history.json")


#: The object store of a local Ray (what mlupdate starts): only weights, metrics and results travel through
#: it (kilobytes to a few MB), so 256 MiB rather than Ray's default of 30% of the machine's memory.
RAY_OBJECT_STORE_BYTES = 256 * 2**20
