"""Graph helpers shared by make_updatable, the repairs and lint.

Blob producers and consumers of a ``NeuralNetwork`` layer list, Core ML's backward BFS from the
loss layers, and blob shapes / numeric comparisons obtained by running mlupdate's own torch graph
(the runtime that serves predictions), so a repair is checked against the computation it changes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch

from mlupdate.features.arrays import image_blob, to_blob
from mlupdate.graph import Graph, compile_layers
from mlupdate.runtime.network import is_nd  # noqa: F401 - re-exported for the authoring modules (ng.is_nd)
from mlupdate.spec.description import FeatureDescription
from mlupdate.spec.model_types import network_of

# Layers Core ML can back-propagate through ([CT] NeuralNetworkValidatorGraph.hpp isLayerSupportedForBackprop).
BACKPROP_LAYERS = ("convolution", "innerProduct", "flatten", "pooling", "batchnorm", "reshape")
BACKPROP_ACTIVATIONS = ("ReLU", "sigmoid", "tanh")


def kind_of(layer: Any) -> str:
    """The layer's protobuf kind (``innerProduct``, ``softmaxND``, ...)."""
    return layer.WhichOneof("layer") or ""


def supports_backprop(layer: Any) -> bool:
    """Whether Core ML can back-propagate through ``layer``."""
    kind = kind_of(layer)
    if kind == "activation":
        return layer.activation.WhichOneof("NonlinearityType") in BACKPROP_ACTIVATIONS
    return kind in BACKPROP_LAYERS


def producers(layers: Sequence[Any]) -> dict[str, int]:
    """Blob name to the index of the (last) layer writing it."""
    out: dict[str, int] = {}
    for i, layer in enumerate(layers):
        for o in layer.output:
            out[o] = i
    return out


def consumers(layers: Sequence[Any]) -> dict[str, list[int]]:
    """Blob name to the indices of the layers reading it."""
    out: dict[str, list[int]] = {}
    for i, layer in enumerate(layers):
        for b in layer.input:
            out.setdefault(b, []).append(i)
    return out


def ancestors(layers: Sequence[Any], blob: str) -> set[int]:
    """Indices of every layer the blob depends on."""
    prod = producers(layers)
    seen: set[int] = set()
    todo = [blob]
    while todo:
        i = prod.get(todo.pop())
        if i is None or i in seen:
            continue
        seen.add(i)
        todo.extend(layers[i].input)
    return seen


def descendants(layers: Sequence[Any], start: Iterable[int]) -> set[int]:
    """Indices of the layers in ``start`` and every layer that depends on one of them."""
    tainted: set[str] = set()
    out: set[int] = set()
    start = set(start)
    for i, layer in enumerate(layers):
        if i in start or any(b in tainted for b in layer.input):
            out.add(i)
            tainted.update(layer.output)
    return out


def backprop_blocker(layers: Sequence[Any], losses: Sequence[tuple[str, str, str]]) -> tuple[str, str] | None:
    """Core ML's backward BFS from each loss layer (same visit order and single-flag quirk).

    Args:
        layers: The network's layers.
        losses: ``(loss name, loss kind, input blob)`` per loss layer; kind ``cce`` or ``mse``.

    Returns:
        ``(blocking layer, updatable layer)`` for the first updatable layer reached after a layer
        that does not support back-propagation, or None.
    """
    # Parents as Core ML links them: each input blob's producer among the layers inserted before.
    parents: list[list[int]] = []
    prod: dict[str, int] = {}
    for i, layer in enumerate(layers):
        parents.append([prod[b] for b in layer.input if b in prod])
        for o in layer.output:
            prod[o] = i
    visited: set[int] = set()
    for _name, kind, blob in losses:
        queue: list[tuple[int | None, list[int]]] = [(None, [prod[blob]] if blob in prod else [])]
        blocked = False
        first = ""
        while queue:
            current, pars = queue.pop(0)
            for p in pars:
                if p in visited:
                    continue
                visited.add(p)
                queue.append((p, parents[p]))
                layer = layers[p]
                if layer.isUpdatable and blocked:
                    return first, layer.name
                if not supports_backprop(layer):
                    if kind_of(layer) == "softmax" and current is None and kind == "cce":
                        continue
                    blocked = True
                    first = layer.name
    return None


# -- running the network -----------------------------------------------------------------------------
def sample_inputs(spec: Any, seed: int = 0, batch: int = 1) -> list[np.ndarray]:
    """Random inputs laid out as mlupdate's graph takes them (``batch`` examples on the leading axis)."""
    nn = network_of(spec)
    nd = is_nd(nn)
    rng = np.random.default_rng(seed)
    arrays = []
    for f in (FeatureDescription.from_proto(f) for f in spec.description.input):
        if f.type == "image":
            c = f.image_constraint
            one = image_blob(rng.uniform(0, 255, (c.channels, c.height, c.width)).astype(np.float32), nd,
                             nn.imageInputShapeMapping == 1)
        else:
            one = to_blob(rng.standard_normal(f.shape or (1,)).astype(np.float32), nd)
        arrays.append(np.stack([one] * batch))
    return arrays


def run_blobs(spec: Any, blobs: Sequence[str], inputs: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
    """Values of ``blobs`` computed by mlupdate's torch graph of the network (no preprocessing)."""
    nn = network_of(spec)
    names = [f.name for f in spec.description.input]
    nodes, modules = compile_layers(nn.layers, names, is_nd(nn))
    graph = Graph(nodes, modules, names, list(blobs)).eval()
    with torch.inference_mode():
        outs = graph(*[torch.from_numpy(np.ascontiguousarray(a)) for a in inputs])
    return {b: o.numpy() for b, o in zip(blobs, outs, strict=True)}


def blob_shapes(spec: Any) -> dict[str, tuple[int, ...]]:
    """Shape of every blob (inputs and layer outputs) for one example.

    ND networks: the Core ML shape. Legacy networks: ``[1, C, H, W]`` (the graph's example axis first).
    """
    nn = network_of(spec)
    names = [f.name for f in spec.description.input]
    blobs = list(dict.fromkeys(o for layer in nn.layers for o in layer.output))
    inputs = sample_inputs(spec)
    values = run_blobs(spec, blobs, inputs)
    shapes = {b: tuple(v.shape) for b, v in values.items()}
    shapes.update({n: tuple(a.shape) for n, a in zip(names, inputs, strict=True)})
    if is_nd(nn):
        shapes = {b: s[1:] for b, s in shapes.items()}
    return shapes


def weight_params(layer: Any) -> list[tuple[str, Any]]:
    """``(field name, WeightParams)`` of every weight field of a layer (as coremltools walks them)."""
    kind = kind_of(layer)
    typed = getattr(layer, kind)
    out = []
    for fd in typed.DESCRIPTOR.fields:
        if fd.message_type is not None and fd.message_type.name == "WeightParams":
            field = getattr(typed, fd.name)
            if hasattr(field, "isUpdatable"):  # not a repeated field
                out.append((fd.name, field))
    return out


def weight_format_problem(layer: Any) -> str | None:
    """Why a layer's weights cannot be updated (float16, quantized), or None."""
    for name, wp in weight_params(layer):
        if name == "bias" and not getattr(getattr(layer, kind_of(layer)), "hasBias", True):
            continue
        if len(wp.float16Value):
            return f"its {name} are stored as float16"
        if wp.HasField("quantization") or len(wp.int8RawValue):
            return f"its {name} are quantized"
    return None
