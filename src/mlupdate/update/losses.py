"""Core ML's two loss layers, computed stably in torch.

* Categorical cross-entropy: the mean over the mini-batch of ``-log p[target]``, where ``p`` is
  the softmax output the loss layer reads. It is computed as ``cross_entropy`` on the softmax's
  input (the logits), which has the same value without the ``log(0)`` overflow.
* Mean squared error: the mean over the mini-batch of each example's mean squared difference
  (``mse_loss(..., reduction="mean")``; Core ML does not document its normalisation).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from mlupdate.errors import NotUpdatableError, TrainingDataError, UpdateError
from mlupdate.graph import Graph
from mlupdate.update.data import Target


@dataclass(frozen=True)
class Loss:
    """The loss of an update.

    Attributes:
        kind: ``cce`` or ``mse``.
        name: The loss layer's name.
        blob: The blob the trainable part must produce (the logits for ``cce``).
        axis: The softmax axis (``cce``).
        target: How the target training input is read.
    """

    kind: str
    name: str
    blob: str
    axis: int
    target: Target

    def __call__(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The mini-batch loss (a scalar)."""
        if self.kind == "cce":
            return F.cross_entropy(as_rows(out, self.axis), target)
        got, want = out.reshape(out.shape[0], -1), target.reshape(target.shape[0], -1)
        if got.shape != want.shape:
            raise TrainingDataError(
                f"MSE loss '{self.name}' compares '{self.blob}', {got.shape[1]} values per example (shape "
                f"{list(out.shape[1:])}), with '{self.target.name}', {want.shape[1]} value(s) per example (shape "
                f"{list(target.shape[1:])}); they must hold the same number of values. Declare "
                f"'{self.target.name}' (and give its values) with {got.shape[1]} values."
            )
        return F.mse_loss(got, want)


def as_rows(logits: torch.Tensor, axis: int) -> torch.Tensor:
    """``[B, ..., C, ...]`` class scores along ``axis`` as ``[B, C]`` (``[B, C, 1, 1]`` for rank-5 softmax)."""
    rows = logits.movedim(axis, -1)
    rows = rows.reshape(-1, rows.shape[-1])
    if rows.shape[0] != logits.shape[0]:
        raise UpdateError(
            f"The categorical cross-entropy input has shape {list(logits.shape[1:])} per example; it must be one "
            "class-score vector. Core ML's loss takes a 1-D softmax output."
        )
    return rows


def loss_of(nn_msg: Any, graph: Graph, desc: Any, training_inputs: dict[str, Any]) -> Loss:
    """Read the network's loss layer and work out its target.

    Raises:
        NotUpdatableError: No loss layer, several, or a CCE input that is not a softmax output.
        TrainingDataError: Never here; targets are checked per example later.
    """
    layers = list(nn_msg.updateParams.lossLayers)
    if len(layers) != 1:
        raise NotUpdatableError(
            f"The model declares {len(layers)} loss layers; Core ML updates need exactly one. Add one with "
            "mlupdate make-updatable (or coremltools' set_categorical_cross_entropy_loss)."
        )
    layer = layers[0]
    kind = layer.WhichOneof("LossLayerType")
    if kind == "categoricalCrossEntropyLossLayer":
        p = layer.categoricalCrossEntropyLossLayer
        node = next((n for n in graph.all_nodes if p.input in n.outputs), None)
        if node is None or node.kind != "softmax":
            raise NotUpdatableError(
                f"Loss layer '{layer.name}' reads '{p.input}', which is not the output of a softmax layer. "
                "Core ML's categorical cross-entropy needs a softmax (not softmaxND) output; re-author the loss "
                "(mlupdate make-updatable rewrites a final softmaxND as softmax)."
            )
        axis = -3  # softmax normalizes the channel axis
        labels = tuple(desc.class_labels or ())
        pf = desc.predicted_feature_name
        if labels and pf and pf in training_inputs:
            target = Target(pf, "label", labels, len(labels))
        elif p.target in training_inputs:
            target = Target(p.target, "index", labels, len(labels))
        else:
            raise NotUpdatableError(
                f"The model has no training input for the loss target ('{pf or p.target}'); its training inputs "
                f"are {', '.join(training_inputs) or 'none'}. Re-author the model's training inputs."
            )
        return Loss("cce", layer.name, node.inputs[0], axis, target)
    if kind == "meanSquaredErrorLossLayer":
        p = layer.meanSquaredErrorLossLayer
        fd = training_inputs.get(p.target)
        if fd is None:
            raise NotUpdatableError(
                f"Loss layer '{layer.name}' compares with '{p.target}', which is not a training input "
                f"({', '.join(training_inputs) or 'none'}). Re-author the model's training inputs."
            )
        return Loss("mse", layer.name, p.input, 0, Target(p.target, "array", shape=tuple(fd.shape)))
    raise NotUpdatableError(f"Loss layer '{layer.name}' is of unknown type {kind!r}; use CCE or MSE.")


def set_classes(loss: Loss, classes: int) -> Loss:
    """The same loss with the class count filled in (for index targets of non-classifiers)."""
    t = loss.target
    if t.kind != "index" or t.classes:
        return loss
    return Loss(loss.kind, loss.name, loss.blob, loss.axis, Target(t.name, t.kind, t.labels, classes, t.shape))
