"""Exactly-equivalent rewrites that let Core ML train converted networks.

coremltools' converters end classifiers in ``softmaxND`` (the cross-entropy loss needs ``softmax``),
emit ``batchedMatmul`` for dense layers (only ``innerProduct``/``convolution`` may be updatable) and
leave ``reshapeStatic`` layers that Core ML cannot back-propagate through (apple/coremltools
#1417, #1749, #1705, #523, #534). The repairs here fix those cases only where the rewritten network
computes exactly the same values; every repair is checked numerically on mlupdate's runtime and
reported (``RepairWarning`` and ``Model.notes``).

Repairs (ND networks; legacy rank-5 networks never need them):

* ``batchedMatmul`` with constant weights, one input of rank 1-3, no transposes, float weights
  -> ``innerProduct``. The constant ``W`` (``[Cin, Cout]``) is stored column-major, i.e. as
  ``W.T`` = ``[Cout, Cin]`` row-major, which is exactly innerProduct's layout: the values are kept.
* A reshape-type layer whose output shape equals its input shape, between an updatable layer and
  the loss, is removed.
* A final ``softmaxND`` over the last axis of a rank-1..3 blob feeding a cross-entropy loss becomes
  ``softmax`` (which normalizes axis -3): the chain of ``innerProduct`` / element-wise activations
  before it is made to carry ``[..., C, 1, 1]`` blobs, starting where the chain's input is made:
  a ``reshapeStatic`` from ``[1, C, 1, 1]`` to ``[1, C]`` is removed, one from ``[1, C, H, W]`` to
  ``[1, C*H*W]`` becomes ``flatten``, otherwise a ``reshapeStatic`` adding two trailing unit axes
  is inserted. ``softmaxND`` over axis -3 of a rank >= 3 blob becomes ``softmax`` directly.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mlupdate.authoring import netgraph as ng
from mlupdate.errors import AuthoringError
from mlupdate.layers.weights import weight_array
from mlupdate.spec.io import copy_spec
from mlupdate.spec.model_types import network_of

RESHAPES = ("reshapeStatic", "flattenTo2D", "squeeze", "expandDims", "rankPreservingReshape")
ELEMENTWISE_ACTIVATIONS = ("ReLU", "leakyReLU", "tanh", "scaledTanh", "sigmoid", "sigmoidHard", "linear", "ELU",
                           "softsign", "softplus", "thresholdedReLU")


class RepairWarning(UserWarning):
    """Emitted once per repair that ``make_updatable`` applied to a model."""


def convertible_matmul(layer: Any, shapes: dict[str, tuple[int, ...]]) -> str | None:
    """Why a ``batchedMatmul`` cannot become an ``innerProduct`` (None when it can)."""
    p = layer.batchedMatmul
    if len(layer.input) != 1 or not p.weightMatrixFirstDimension:
        return "it multiplies two computed blobs instead of a blob by constant weights"
    if p.transposeA or p.transposeB:
        return "it transposes an operand"
    if not len(p.weights.floatValue) or (p.hasBias and not len(p.bias.floatValue)):
        return "its weights are not stored as float32"
    rank = len(shapes.get(layer.input[0], ()))
    if not 1 <= rank <= 3:
        return f"its input has rank {rank} (innerProduct reads rank-4/5 blobs as [.., C, 1, 1])"
    return None


def matmul_to_inner_product(layer: Any) -> None:
    """Rewrite a ``batchedMatmul`` layer (checked by :func:`convertible_matmul`) in place."""
    p = layer.batchedMatmul
    n_in, n_out = int(p.weightMatrixFirstDimension), int(p.weightMatrixSecondDimension)
    # Stored column-major ([Cout, Cin] row-major, as coremltools' builder writes W.T): innerProduct's layout.
    w = weight_array(p.weights, n_in * n_out, f"layer '{layer.name}' weights")
    bias = weight_array(p.bias, n_out, f"layer '{layer.name}' bias") if p.hasBias else None
    has_bias = bool(p.hasBias)
    layer.ClearField("batchedMatmul")
    ip = layer.innerProduct
    ip.inputChannels, ip.outputChannels, ip.hasBias = n_in, n_out, has_bias
    ip.weights.floatValue.extend(w.tolist())
    if bias is not None:
        ip.bias.floatValue.extend(bias.tolist())
    _clear_tensors(layer)


def _clear_tensors(layer: Any) -> None:
    # Optional rank hints; they would be stale after a rank change.
    layer.ClearField("inputTensor")
    layer.ClearField("outputTensor")


class _Plan:
    """Edits to a copy of the layer list, applied at the end (indices stay valid while planning)."""

    def __init__(self, layers: list[Any]) -> None:
        self.layers = layers
        self.removed: set[int] = set()
        self.inserts: dict[int, list[Any]] = {}
        self.notes: list[str] = []

    def live(self) -> list[Any]:
        """The layers not removed so far, with their original indices as list positions (None if removed)."""
        return [None if i in self.removed else layer for i, layer in enumerate(self.layers)]

    def producers(self) -> dict[str, int]:
        return {o: i for i, layer in enumerate(self.live()) if layer is not None for o in layer.output}

    def consumers(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for i, layer in enumerate(self.live()):
            for b in layer.input if layer is not None else ():
                out.setdefault(b, []).append(i)
        return out

    def rewire(self, index: int, old: str, new: str) -> None:
        layer = self.layers[index]
        for j, b in enumerate(layer.input):
            if b == old:
                layer.input[j] = new

    def remove(self, index: int, cons: dict[str, list[int]]) -> None:
        layer = self.layers[index]
        for c in cons.get(layer.output[0], []):
            self.rewire(c, layer.output[0], layer.input[0])
        self.removed.add(index)

    def insert_before(self, index: int, layer: Any) -> None:
        self.inserts.setdefault(index, []).append(layer)

    def result(self) -> list[Any]:
        out: list[Any] = []
        for i, layer in enumerate(self.layers):
            out.extend(self.inserts.get(i, []))
            if i not in self.removed:
                out.append(layer)
        return out


def repair(spec: Any, updatable: list[str], loss_input: str, loss: str) -> tuple[Any, list[str]]:
    """Return a repaired copy of ``spec`` and the notes describing each repair.

    Args:
        spec: A neural-network ``Model_pb2.Model`` (not modified).
        updatable: Names of the layers to be made updatable.
        loss_input: The blob the loss reads.
        loss: ``cce`` or ``mse``.

    Raises:
        AuthoringError: If a repair would change the network's outputs (a bug: please report it).
    """
    nn = network_of(spec)
    if nn is None or not ng.is_nd(nn) or not nn.layers:
        return copy_spec(spec), []
    shapes = ng.blob_shapes(spec)
    plan = _Plan([_copy(layer) for layer in nn.layers])
    layers = plan.layers
    outputs = {o.name for o in spec.description.output}
    cons = ng.consumers(layers)
    index = {layer.name: i for i, layer in enumerate(layers)}
    wanted = {index[n] for n in updatable if n in index}
    path = ng.descendants(layers, wanted) & ng.ancestors(layers, loss_input)

    for i in sorted(wanted | path):
        layer = layers[i]
        if ng.kind_of(layer) == "batchedMatmul" and convertible_matmul(layer, shapes) is None:
            matmul_to_inner_product(layer)
            plan.notes.append(f"Layer '{layer.name}': batchedMatmul with constant weights rewritten as innerProduct "
                              "(same weights) so that it can be updatable.")
    for i in sorted(path):
        layer = layers[i]
        if (ng.kind_of(layer) in RESHAPES and len(layer.input) == 1 and len(layer.output) == 1
                and shapes.get(layer.input[0]) == shapes.get(layer.output[0])
                and layer.output[0] not in outputs and layer.output[0] != loss_input):
            plan.remove(i, cons)
            plan.notes.append(f"Layer '{layer.name}' ({ng.kind_of(layer)}) removed: it does not change its input "
                              f"{list(shapes[layer.input[0]])} and Core ML cannot back-propagate through it.")
    if loss == "cce":
        _softmax_repair(plan, spec, shapes, loss_input, outputs)
    if not plan.notes:
        return copy_spec(spec), []
    fixed = copy_spec(spec)
    fixed_nn = network_of(fixed)
    del fixed_nn.layers[:]
    fixed_nn.layers.extend(plan.result())
    _check_equivalent(spec, fixed, loss_input)
    return fixed, plan.notes


def _copy(layer: Any) -> Any:
    out = type(layer)()
    out.CopyFrom(layer)
    return out


def _single(layer: Any) -> bool:
    return len(layer.input) == 1 and len(layer.output) == 1


def _softmax_repair(plan: _Plan, spec: Any, shapes: dict[str, tuple[int, ...]], prob: str, outputs: set[str]) -> None:
    layers = plan.layers
    prod, cons = plan.producers(), plan.consumers()
    s_idx = prod.get(prob)
    if s_idx is None:
        return
    last = layers[s_idx]
    # #1705 pattern, tail: softmax -> reshape [1, N, 1, 1] -> [1, N] writing the probabilities.
    if (ng.kind_of(last) in RESHAPES and _single(last) and not cons.get(prob)
            and not _declared_array(spec, prob, outputs)):
        y = last.input[0]
        j = prod.get(y)
        if (j is not None and ng.kind_of(layers[j]) in ("softmax", "softmaxND") and cons.get(y) == [s_idx]
                and y not in outputs and shapes.get(y) == shapes[prob] + (1, 1)):
            plan.removed.add(s_idx)
            layers[j].output[0] = prob
            plan.notes.append(f"Layer '{last.name}' ({ng.kind_of(last)} {list(shapes[y])} -> {list(shapes[prob])}) "
                              f"after softmax '{layers[j].name}' removed: the softmax now writes '{prob}' (the class "
                              "probabilities, same values), so the loss can read a softmax output.")
            shapes = {**shapes, prob: shapes[y]}
            s_idx = j
            prod, cons = plan.producers(), plan.consumers()
    soft = layers[s_idx]
    x = soft.input[0]
    rank = len(shapes[x])
    if ng.kind_of(soft) == "softmax":
        # #1705 pattern, head: dense [1, N] -> reshape(s) to [1, N, 1, 1] -> softmax (not trainable through).
        found, b, nxt, removed = None, x, s_idx, []
        while found is None:
            r_idx = prod.get(b)
            r = layers[r_idx] if r_idx is not None else None
            if r is None or ng.kind_of(r) not in RESHAPES or not _single(r) or cons.get(b) != [nxt] or b in outputs:
                return
            removed.append(r_idx)
            b, nxt = r.input[0], r_idx
            if 1 <= len(shapes.get(b, ())) <= 3 and shapes[b] + (1, 1) == shapes[x]:
                found = b
        for r_idx in removed:
            plan.remove(r_idx, plan.consumers())
        chain, how = _promote(plan, found, s_idx, shapes, outputs)
        names = ", ".join(f"{ng.kind_of(layers[i])} '{layers[i].name}'" for i in removed)
        plan.notes.append(f"Removed {names} ({list(shapes[found])} -> {list(shapes[x])}) before softmax "
                          f"'{soft.name}', since Core ML cannot back-propagate through it; the blobs from "
                          f"{_names(layers, chain)} on carry the two trailing unit axes instead ({how}). "
                          "Predictions are unchanged.")
        return
    if ng.kind_of(soft) != "softmaxND":
        return
    axis = int(soft.softmaxND.axis) % rank if rank else 0
    if rank >= 3 and axis == rank - 3:
        _to_softmax(soft)
        plan.notes.append(f"Layer '{soft.name}': softmaxND over axis -3 rewritten as softmax (the same axis) so "
                          "that the categorical cross-entropy loss can attach to it.")
        return
    if not (1 <= rank <= 3 and axis == rank - 1):
        return
    if cons.get(soft.output[0]) or _declared_array(spec, soft.output[0], outputs):
        return  # a rank change of the probabilities would be visible to other layers or in an output
    chain, how = _promote(plan, x, s_idx, shapes, outputs)
    _to_softmax(soft)
    plan.notes.append(
        f"Layer '{soft.name}': final softmaxND (axis -1 of a rank-{rank} blob) rewritten as softmax, which Core ML's "
        f"categorical cross-entropy loss requires; to keep the same axis the blobs from "
        f"{_names(layers, chain)} on carry two trailing unit axes ({how}). Predictions are unchanged."
    )


def _names(layers: list[Any], chain: list[int]) -> str:
    return ", ".join(f"'{layers[i].name}'" for i in reversed(chain)) or "the softmax input"


def _promote(plan: _Plan, blob: str, nxt: int, shapes: dict[str, tuple[int, ...]],
             outputs: set[str]) -> tuple[list[int], str]:
    """Make ``blob`` (read by layer ``nxt``) carry ``shape + (1, 1)``, walking up dense/activation layers.

    Returns:
        The chain of layers whose blobs changed rank (nearest first) and how the chain's input was made.
    """
    layers = plan.layers
    prod, cons = plan.producers(), plan.consumers()
    chain: list[int] = []
    how = ""
    while True:
        i = prod.get(blob)
        if cons.get(blob, []) != [nxt] or blob in outputs or i is None:
            how = _insert_reshape(plan, blob, nxt, shapes)
            break
        layer = layers[i]
        kind = ng.kind_of(layer)
        if _single(layer) and (
                kind == "innerProduct"
                or (kind == "activation" and layer.activation.WhichOneof("NonlinearityType") in ELEMENTWISE_ACTIVATIONS)
                or (kind == "batchedMatmul" and convertible_matmul(layer, shapes) is None)):
            chain.append(i)
            blob, nxt = layer.input[0], i
            continue
        if kind in RESHAPES and _single(layer):
            y = layer.input[0]
            if shapes.get(y) == shapes[blob] + (1, 1):
                plan.remove(i, cons)
                how = (f"removed {kind} '{layer.name}' ({list(shapes[y])} -> {list(shapes[blob])}) so that the "
                       f"dense layers read the {list(shapes[y])} blob directly")
                break
            ys = shapes.get(y, ())
            if kind == "reshapeStatic" and len(ys) == 4 and shapes[blob] == (ys[0], math.prod(ys[1:])):
                layer.ClearField("reshapeStatic")
                layer.flatten.SetInParent()
                layer.flatten.mode = 0  # CHANNEL_FIRST: the same element order as the row-major reshape
                _clear_tensors(layer)
                how = (f"replaced reshapeStatic '{layer.name}' ({list(ys)} -> {list(shapes[blob])}) by flatten "
                       f"([{ys[0]}, {math.prod(ys[1:])}, 1, 1], same element order)")
                break
        how = _insert_reshape(plan, blob, nxt, shapes)
        break
    for i in chain:
        if ng.kind_of(layers[i]) == "batchedMatmul":
            matmul_to_inner_product(layers[i])
        _clear_tensors(layers[i])
    return chain, how


def _to_softmax(layer: Any) -> None:
    layer.ClearField("softmaxND")
    layer.softmax.SetInParent()
    _clear_tensors(layer)


def _insert_reshape(plan: _Plan, blob: str, consumer: int, shapes: dict[str, tuple[int, ...]]) -> str:
    taken = {layer.name for layer in plan.layers} | {o for layer in plan.layers for o in layer.output}
    target = tuple(shapes[blob]) + (1, 1)
    name = f"{blob}_rank{len(target)}"
    while name in taken:
        name += "_"
    layer = type(plan.layers[consumer])()
    layer.name = name
    layer.input.append(blob)
    layer.output.append(name)
    layer.reshapeStatic.targetShape.extend(target)
    plan.rewire(consumer, blob, name)
    plan.insert_before(consumer, layer)
    return f"inserted reshapeStatic '{name}' {list(shapes[blob])} -> {list(target)}"


def _declared_array(spec: Any, blob: str, outputs: set[str]) -> bool:
    if blob not in outputs:
        return False
    fd = next(o for o in spec.description.output if o.name == blob)
    return fd.type.WhichOneof("Type") == "multiArrayType" and len(fd.type.multiArrayType.shape) > 0


def _check_equivalent(before: Any, after: Any, prob: str) -> None:
    """Raise unless ``after`` computes the same outputs as ``before`` on random inputs."""
    produced = {o for layer in network_of(before).layers for o in layer.output}
    blobs = [o.name for o in before.description.output if o.name in produced]
    if prob in produced and prob not in blobs:
        blobs.append(prob)
    for seed in (0, 1):
        inputs = ng.sample_inputs(before, seed)
        a = ng.run_blobs(before, blobs, inputs)
        b = ng.run_blobs(after, blobs, inputs)
        for name in blobs:
            x, y = a[name].reshape(-1), b[name].reshape(-1)
            if x.shape != y.shape or not np.allclose(x, y, rtol=1e-5, atol=1e-6):
                raise AuthoringError(
                    f"Internal error: repairing the model would change blob '{name}'. Nothing was written. "
                    "Pass repair=False (or --no-repair) and report this model to the mlupdate developers."
                )
