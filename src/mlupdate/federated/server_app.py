"""The Flower ``ServerApp``: federated averaging of a model's updatable layers, a Core ML model every round.

It starts from the model's own weights, runs a Flower strategy (FedAvg by default; FedAdam, FedProx),
evaluates the global model on the held-out photos before the first round and after every round (the
strategy's ``evaluate_fn``), and after every round writes the global model as an updatable ``.mlmodel``
(atomically; frozen layers byte-identical to the original) and the run's history as JSON (atomically):
one entry per round with the held-out ``loss`` and ``accuracy``, the nodes' averaged ``train-loss`` and
``accuracy-before``/``-after``, ``clients``, ``failures`` and ``time`` (seconds since the start).

``flwr run`` loads :data:`app`; ``mlupdate federate`` builds one with :func:`make_server_app`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAdam, FedAvg, FedProx, Strategy

from mlupdate.errors import ParameterError
from mlupdate.federated.config import history_path, settings, update_parameters
from mlupdate.federated.data import examples, federation_split, io_names
from mlupdate.federated.local import evaluate_local, load_spec
from mlupdate.federated.weights import digest, updatable_arrays, with_arrays
from mlupdate.spec.io import write_bytes_atomic, write_spec

STRATEGIES = ("fedavg", "fedadam", "fedprox")
RoundHook = Callable[[dict[str, Any]], None]


def strategy_options(cfg: Mapping[str, Any], users: int) -> tuple[str, dict[str, Any]]:
    """The strategy's name and keyword arguments, sampling ``fraction-train`` of ``users`` nodes (at least one).

    Raises:
        ParameterError: An unknown strategy name or a fraction outside (0, 1].
    """
    name = str(cfg["strategy"]).lower()
    fit, ev = float(cfg["fraction-train"]), float(cfg["fraction-evaluate"])
    if name not in STRATEGIES:
        raise ParameterError(f"Unknown strategy '{cfg['strategy']}': use one of {', '.join(STRATEGIES)}.")
    if not 0 < fit <= 1 or not 0 <= ev <= 1:
        raise ParameterError(f"fraction-train must be in (0, 1] and fraction-evaluate in [0, 1]; got {fit}, {ev}.")
    kwargs: dict[str, Any] = {"fraction_train": fit, "fraction_evaluate": ev, "min_train_nodes": 1,
                              "min_evaluate_nodes": 1 if ev else 0, "min_available_nodes": max(1, users)}
    if name == "fedadam":
        kwargs["eta"] = float(cfg["server-learning-rate"])
    if name == "fedprox":
        kwargs["proximal_mu"] = float(cfg["proximal-mu"])
    return name, kwargs


def make_strategy(cfg: Mapping[str, Any], users: int) -> Strategy:
    """The configured Flower strategy (:func:`strategy_options`)."""
    name, kwargs = strategy_options(cfg, users)
    return {"fedavg": FedAvg, "fedadam": FedAdam, "fedprox": FedProx}[name](**kwargs)


def _observe(strategy: Strategy, rounds: dict[int, dict[str, Any]]) -> None:
    """Record each round's clients, failures and averaged train metrics (wraps the instance's aggregate_train)."""
    aggregate = strategy.aggregate_train

    def aggregate_train(server_round: int, replies: Iterable[Message]) -> tuple[Any, Any]:
        replies = list(replies)
        failed = [m for m in replies if m.has_error()]
        arrays, metrics = aggregate(server_round, replies)
        rounds[server_round] = {"clients": len(replies) - len(failed), "failures": len(failed),
                                "errors": [m.error.reason for m in failed], **dict(metrics or {})}
        return arrays, metrics

    strategy.aggregate_train = aggregate_train  # type: ignore[method-assign]


def run_server(grid: Grid, cfg: Mapping[str, Any], strategy: Strategy | None = None,
               on_round: RoundHook | None = None) -> list[dict[str, Any]]:
    """Run the federation; returns the history (also written to ``history_path(cfg)`` after every round).

    Args:
        grid: Flower's grid of nodes.
        cfg: Settings (:mod:`mlupdate.federated.config`).
        strategy: A Flower strategy to use instead of the configured one.
        on_round: Called with each history entry as it is written (round 0: the original model).

    Raises:
        mlupdate.Error: A bad model, DATA folder or setting.
    """
    spec = load_spec(str(cfg["model"]))
    image, label, labels = io_names(spec)
    _, held_out = federation_split(cfg["data"], labels, int(cfg["partition-seed"]))
    test = examples(held_out, image, label)
    users = int(cfg.get("num-users") or 0) or len(list(grid.get_node_ids()))
    strategy = strategy or make_strategy(cfg, users)
    rounds: dict[int, dict[str, Any]] = {}
    _observe(strategy, rounds)
    out, hist_path = str(cfg["out"]), history_path(cfg)
    history: list[dict[str, Any]] = []
    start = time.perf_counter()

    def evaluate(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        model = with_arrays(spec, {k: v.numpy() for k, v in arrays.items()})
        if server_round:
            write_spec(model, out)
        scores = evaluate_local(model, test, "server/held-out", base=str(cfg["model"])) if test else {}
        entry = {"round": server_round, "loss": scores.get("loss"), "accuracy": scores.get("accuracy"),
                 "held-out": len(test), **rounds.get(server_round, {"clients": 0, "failures": 0}),
                 "time": round(time.perf_counter() - start, 3), "model": digest(model)}
        history.append(entry)
        meta = {"model": str(cfg["model"]), "out": out, "users": users, "strategy": type(strategy).__name__,
                "partition": cfg["partition"], "rounds": history}
        write_bytes_atomic(json.dumps(meta, indent=1).encode(), hist_path)
        if on_round is not None:
            on_round(entry)
        return MetricRecord({k: v for k, v in scores.items() if k != "num-examples"})

    initial = ArrayRecord({k: Array(v) for k, v in updatable_arrays(spec).items()})
    train_config = ConfigRecord(update_parameters(cfg))
    strategy.start(grid=grid, initial_arrays=initial, num_rounds=int(cfg["num-server-rounds"]),
                   train_config=train_config, evaluate_config=ConfigRecord(), evaluate_fn=evaluate)
    return history


def make_server_app(defaults: Mapping[str, Any] | None = None, strategy: Strategy | None = None,
                    on_round: RoundHook | None = None) -> ServerApp:
    """A ``ServerApp`` running :func:`run_server` with ``defaults`` overridden by the run config."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        run_server(grid, settings(defaults, context.run_config), strategy, on_round)

    return app


app = make_server_app()
