"""The Flower ``ClientApp``: a node that updates the global model's updatable layers on its own photos.

Train: the message carries the global weights (``arrays``: ``<layer>.weights`` / ``<layer>.bias``) and a
config (``server-round``, FedProx's ``proximal-mu``, update parameters); the reply carries the new
weights and a ``metrics`` record with ``num-examples`` (FedAvg's weight), ``train-loss`` and the node's
``accuracy-before`` / ``accuracy-after``. Evaluate: ``num-examples``, ``loss`` and ``accuracy`` of the
global weights on the node's photos, without training.

``flwr run`` loads :data:`app`; ``mlupdate federate`` builds one with :func:`make_client_app`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from mlupdate.federated.config import settings, update_parameters
from mlupdate.federated.data import examples, federation_split, io_names, labelled, partition
from mlupdate.federated.local import evaluate_local, load_spec, train_local
from mlupdate.federated.weights import updatable_arrays, with_arrays


def node_examples(cfg: Mapping[str, Any], context: Context, spec: Any) -> tuple[list[dict[str, Any]], str]:
    """This node's training examples and its name for the feature cache.

    A node with ``data-dir`` in its node config uses that folder whole; a simulated one (``partition-id``,
    ``num-partitions``) takes its share of ``data`` by the configured partition.

    Raises:
        mlupdate.Error: No data configured, or a folder or partition that gives this node no examples.
    """
    image, label, labels = io_names(spec)
    node = context.node_config
    if "data-dir" in node:
        return examples(labelled(str(node["data-dir"]), labels), image, label), f"dir:{node['data-dir']}"
    pairs, _ = federation_split(cfg["data"], labels, int(cfg["partition-seed"]))
    pid, users = int(node.get("partition-id", 0)), int(node.get("num-partitions", 1))
    share = partition([lab for _, lab in pairs], users, str(cfg["partition"]), int(cfg["partition-seed"]))[pid]
    return examples([pairs[i] for i in share], image, label), f"part:{cfg['partition']}:{pid}/{users}"


def _global(msg: Message, cfg: Mapping[str, Any]) -> Any:
    arrays = {k: v.numpy() for k, v in msg.content["arrays"].items()}
    return with_arrays(load_spec(str(cfg["model"])), arrays)


def _reply(msg: Message, metrics: Mapping[str, float], arrays: Mapping[str, np.ndarray] | None = None) -> Message:
    content = RecordDict({"metrics": MetricRecord(dict(metrics))})
    if arrays is not None:
        content["arrays"] = ArrayRecord({k: Array(np.ascontiguousarray(v, np.float32)) for k, v in arrays.items()})
    return Message(content=content, reply_to=msg)


def make_client_app(defaults: Mapping[str, Any] | None = None) -> ClientApp:
    """A ``ClientApp`` whose settings are ``defaults``, then the run config, then each message's config."""
    app = ClientApp()

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        cfg = settings(defaults, context.run_config, dict(msg.content["config"]))
        spec = _global(msg, cfg)
        exs, node = node_examples(cfg, context, spec)
        mu = float(cfg["proximal-mu"]) if "proximal-mu" in msg.content["config"] else 0.0
        updated, metrics = train_local(spec, exs, node, update_parameters(cfg), mu, base=str(cfg["model"]))
        return _reply(msg, metrics, updatable_arrays(updated))

    @app.evaluate()
    def evaluate(msg: Message, context: Context) -> Message:
        cfg = settings(defaults, context.run_config, dict(msg.content["config"]))
        spec = _global(msg, cfg)
        exs, node = node_examples(cfg, context, spec)
        return _reply(msg, evaluate_local(spec, exs, node, base=str(cfg["model"])))

    return app


app = make_client_app()
