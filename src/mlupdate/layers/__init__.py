"""Core ML neural-network layers compiled to PyTorch.

One registry, keyed by the protobuf name of the ``NeuralNetworkLayer.layer`` oneof
(``convolution``, ``innerProduct``, ``softmaxND``, ...). Each family module registers a
builder ``build(layer, ctx) -> torch.nn.Module``; the module's ``forward`` takes the layer's
input tensors in order and returns one tensor or a tuple (one per output blob).

Blob layout: the graph owns one extra leading axis, dim 0, that stacks independent examples
(``predict_batch``, update mini-batches). It is never a Core ML axis, and no layer reads, reduces,
slices or reshapes across it.

* ND networks (``EXACT_ARRAY_MAPPING``): a Core ML tensor of rank ``r`` and shape
  ``[d0, .., d(r-1)]`` is held as ``[N, d0, .., d(r-1)]``. Core ML axis ``a`` is held dim
  :func:`mlupdate.layers.common.nd_dim` (``a + 1`` for ``a >= 0``, unchanged when negative);
  the Core ML rank is ``x.dim() - 1``. Core ML has no rank-0 tensors: a result that would be a
  scalar is ``[1]`` (held ``[N, 1]``).
* Legacy (rank-5) networks: Core ML's ``[Seq, Batch, C, H, W]`` is held as ``[N, C, H, W]``
  when ``Seq == 1`` and as ``[N, Seq, C, H, W]`` otherwise, where ``N`` runs over the examples
  and Core ML's own ``Batch``. Legacy layers act on the last three axes (C, H, W) and keep the
  leading ones; sequence-aware layers (recurrent, sequence concat/repeat) use
  :func:`mlupdate.layers.common.as_sequence`.

Control-flow modules set ``scoped = True``: they are called with the whole blob dictionary and
return the blobs they write; their ``reads`` and ``writes`` attributes name the outer blobs their
nested networks use, so the graph can order and prune them.

Layer modules may set two class attributes the runtime reads: ``per_example = True`` when the
output shape depends on input values or examples cannot be stacked (the network then runs one
example at a time, ``N == 1``), and ``exportable = False`` when the module cannot be exported to
ONNX (the network then runs on torch).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from torch import nn

from mlupdate.errors import UnsupportedLayerError


@dataclass(frozen=True)
class BuildContext:
    """What a layer builder may need to know besides the layer itself.

    Attributes:
        nd: True for ND networks (exact array mapping), False for legacy rank-5 networks.
        name: Name of the layer being built (for error messages).
        available: Blobs produced before this layer (nested networks of control-flow layers read them).
        inputs: The layer's input blob names (their count selects the dynamic variants of some kinds).
        compile_layers: ``compile_layers(layers, available, nd) -> (nodes, modules)``: compiles the nested
            networks of control-flow layers (the graph's own compiler, handed down so layers never import it).
        run_node: ``run_node(node, module, env, n)``: runs one compiled node of such a nested network.
    """

    nd: bool = True
    name: str = ""
    available: frozenset[str] = frozenset()
    inputs: tuple[str, ...] = ()
    compile_layers: Callable[..., Any] | None = None
    run_node: Callable[..., Any] | None = None


Builder = Callable[[Any, BuildContext], nn.Module]
LAYERS: dict[str, Builder] = {}

#: Layer kinds of NeuralNetwork.proto that mlupdate refuses, with the reason.
REFUSED: dict[str, str] = {
    "custom": "a custom layer's computation lives in the app's own Swift/Objective-C class (MLCustomLayer), "
              "not in the model file, so no runtime outside that app can run it",
}

def register(*kinds: str) -> Callable[[Builder], Builder]:
    """Register a builder for one or more protobuf layer kinds."""

    def deco(fn: Builder) -> Builder:
        for kind in kinds:
            LAYERS[kind] = fn
        return fn

    return deco


def supported_layers() -> list[str]:
    """Sorted protobuf names of every layer kind mlupdate compiles."""
    _load_families()
    return sorted(LAYERS)


def build_layer(layer: Any, ctx: BuildContext) -> nn.Module:
    """Compile one ``NeuralNetworkLayer`` message into a torch module.

    Raises:
        UnsupportedLayerError: If the layer kind has no builder.
    """
    _load_families()
    kind = layer.WhichOneof("layer")
    builder = LAYERS.get(kind or "")
    if kind in REFUSED:
        raise UnsupportedLayerError(
            f"Layer '{layer.name}' is a {kind} layer, which mlupdate cannot run: {REFUSED[kind]}. Replace it "
            "with standard layers before conversion."
        )
    if builder is None:
        raise UnsupportedLayerError(
            f"Layer '{layer.name}' is of type '{kind}', which mlupdate does not support. Supported layer "
            f"types: {', '.join(sorted(LAYERS))}. Replace the layer before conversion, or open an issue "
            "with the model attached."
        )
    return builder(getattr(layer, kind), replace(ctx, name=layer.name))


_loaded = False


def _load_families() -> None:
    """Import every family module (each registers its kinds), once, when a layer is first built."""
    global _loaded
    if not _loaded:
        from mlupdate.layers import (  # noqa: F401 - each family registers its kinds on import
            activation,
            constant,
            control,
            conv,
            conv3d,
            detection,
            dynamic,
            elementwise,
            indexing,
            linear,
            mathops,
            matrix_ops,
            normalization,
            pooling,
            random,
            recurrent,
            reduce,
            resize,
            sequence_ops,
            shape,
            softmax,
            tensor,
        )

        _loaded = True
