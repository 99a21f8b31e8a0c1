"""One node's work: an ``UpdateTask`` on its own examples, the frozen part's features cached per process.

``UpdateTask`` already runs the frozen part (everything before the first updatable layer) once per task
and trains only the head on its outputs. A federated node runs one task per round on the same examples,
so this module keeps those outputs in memory, keyed by the node, its examples and the frozen part's own
digest (the same key ``UpdateTask`` gives its compiled frozen part): every round after the first costs
only the head's training. Accuracy before and after is measured on the same cached features.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from mlupdate.errors import NotUpdatableError
from mlupdate.spec.io import read_spec
from mlupdate.update.task import ProgressHandlers, UpdateTask

_FEATURES: dict[tuple[str, str], list[torch.Tensor]] = {}
_SPECS: dict[tuple[str, int, int], Any] = {}
_TASKS: dict[tuple[str, ...], tuple[UpdateTask, list[torch.Tensor]]] = {}


def load_spec(path: str | os.PathLike[str]) -> Any:
    """The spec of a ``.mlmodel``, read once per process (re-read when the file changes); do not modify it.

    Raises:
        ModelFileError: A missing, unreadable or broken file (``read_spec``'s message).
    """
    try:
        st = os.stat(path)
    except (OSError, ValueError):  # missing, unreadable, or no path at all: read_spec says which, and the fix
        return read_spec(path)
    key = (os.path.realpath(path), st.st_mtime_ns, st.st_size)
    if key not in _SPECS:
        _SPECS[key] = read_spec(path)
    return _SPECS[key]


def forget(node: str) -> None:
    """Drop the cached features of ``node`` (and of the nodes named ``node/...``)."""
    for key in [k for k in _FEATURES if k[0].startswith(node + "/")]:
        del _FEATURES[key]
    for tkey in [k for k in _TASKS if k[0].startswith(node + "/")]:
        del _TASKS[tkey]


def cached_nodes() -> int:
    """How many (node, examples, frozen part) feature sets this process holds."""
    return len(_FEATURES)


def _seen(examples: Sequence[Mapping[str, Any]]) -> str:
    return hashlib.sha256(repr([sorted(ex.items()) for ex in examples]).encode()).hexdigest()


def _task(spec: Any, examples: Sequence[Mapping[str, Any]], node: str, parameters: Mapping[str, Any] | None = None,
          handlers: ProgressHandlers | None = None) -> UpdateTask:
    """An ``UpdateTask`` with its frozen-part features computed, from (or into) this process's cache."""
    task = UpdateTask(spec, list(examples), parameters=parameters, progress_handlers=handlers)
    seen = _seen(examples)
    try:
        key = (f"{node}/{seen}", task.frozen_key)
    except NotUpdatableError:
        raise NotUpdatableError("Federated updates need a neural network; k-NN models and pipelines update "
                                "locally only (mlupdate update).") from None
    if key in _FEATURES:
        task.frozen_features = _FEATURES[key]
    else:
        task.precompute()
        _FEATURES[key] = task.frozen_features
    return task


def _renewed(spec: Any, examples: Sequence[Mapping[str, Any]], node: str, base: str | None,
             parameters: Mapping[str, Any] | None, proximal_mu: float) -> tuple[UpdateTask, list[torch.Tensor]]:
    """The node's task on ``spec`` and FedProx's anchor.

    Built once per (base model file as it is now, node, examples, settings) in this process, renewed with
    ``spec``'s updatable weights after that (``base`` None: built every time).
    """
    stamp = "" if base is None else f"{os.path.realpath(base)}:{os.stat(base).st_mtime_ns}:{os.stat(base).st_size}"
    key = (f"{node}/{_seen(examples)}", stamp, repr(sorted((parameters or {}).items())), repr(proximal_mu))
    if base is not None and key in _TASKS:
        task, anchor = _TASKS[key]
        task = task.renewed(spec)
    else:
        anchor = []

        def proximal(ctx: Any) -> None:
            step = float(ctx.parameters["learning_rate"]) * proximal_mu
            with torch.no_grad():
                for p, p0 in zip(ctx.task.trainable_parameters, anchor, strict=True):
                    p.sub_(step * (p - p0))

        handlers = ProgressHandlers({"mini_batch_end"}, proximal) if proximal_mu > 0 else None
        task = _task(spec, examples, node, parameters, handlers)
    if base is not None:
        _TASKS[key] = (task, anchor)
    anchor[:] = [p.detach().clone() for p in task.trainable_parameters]
    return task, anchor


def train_local(spec: Any, examples: Sequence[Mapping[str, Any]], node: str,
                parameters: Mapping[str, Any] | None = None, proximal_mu: float = 0.0,
                base: str | None = None) -> tuple[Any, dict[str, float]]:
    """Update ``spec`` on one node's examples.

    Args:
        spec: The model holding the global weights.
        examples: The node's feature dicts.
        node: Names the node for the feature cache.
        parameters: Overrides of the model's update parameters (``epochs``, ``learning_rate``, ...).
        proximal_mu: FedProx's mu: after every mini-batch, the updatable weights move towards the global
            ones by ``learning_rate * mu * (w - w_global)`` (the proximal term's gradient step). 0: plain update.
        base: Names the model ``spec`` is, its updatable weights aside (a ``load_spec`` path): the node's
            task is then built once per process and renewed every round. None: a new task every call.

    Returns:
        The updated spec and ``num-examples``, ``train-loss``, ``loss-before``, ``loss-after``,
        ``accuracy-before`` and ``accuracy-after`` (on the node's examples).

    Raises:
        mlupdate.Error: What ``UpdateTask`` raises (bad data, parameters, a diverging update).
    """
    task, _ = _renewed(spec, examples, node, base, parameters, proximal_mu)
    before = task.evaluate()
    ctx = task.run()
    after = task.evaluate()
    metrics = {"num-examples": len(examples), "train-loss": float(ctx.metrics.get("loss", after["loss"]))}
    for name, scores in (("before", before), ("after", after)):
        metrics.update({f"{k}-{name}": v for k, v in scores.items()})
    return ctx.spec, metrics


def evaluate_local(spec: Any, examples: Sequence[Mapping[str, Any]], node: str,
                   base: str | None = None) -> dict[str, float]:
    """``num-examples``, ``loss`` and ``accuracy`` of ``spec`` on examples, without training.

    ``base`` as for :func:`train_local`: the evaluating task is built once and renewed.

    Raises:
        mlupdate.Error: Bad examples (``TrainingDataError``, ``ImageError``).
    """
    task, _ = _renewed(spec, examples, node, base, None, 0.0)
    return {"num-examples": len(examples), **task.evaluate()}
