"""Core ML neural-network layers compiled to PyTorch.

One registry, keyed by the protobuf name of the ``NeuralNetworkLayer.layer`` oneof
(``convolution``, ``innerProduct``, ``softmaxND``, ...). Each family module registers a
builder ``build(layer, ctx) -> torch.nn.Module``; the module's ``forward`` takes the layer's
input tensors in order and returns one tensor or a tuple (one per output blob).

Blob layout: every tensor carries the batch in dim 0. In a legacy (rank-5) network a blob
``[Seq, Batch, C, H, W]`` with ``Seq == 1`` is held as ``[B, C, H, W]``; in an ND network
(``EXACT_ARRAY_MAPPING``) the declared leading dimension is the batch.
"""

from __future__ import annotations

import importlib
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
    """

    nd: bool = True
    name: str = ""


Builder = Callable[[Any, BuildContext], nn.Module]
LAYERS: dict[str, Builder] = {}

_FAMILIES = (
    "activation", "conv", "pooling", "normalization", "linear", "softmax", "shape",
    "elementwise", "mathops", "tensor", "resize", "reduce", "constant",
)


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
    if builder is None:
        raise UnsupportedLayerError(
            f"Layer '{layer.name}' is of type '{kind}', which mlupdate does not support. Supported layer "
            f"types: {', '.join(sorted(LAYERS))}. Replace the layer before conversion, or open an issue "
            "with the model attached."
        )
    return builder(getattr(layer, kind), replace(ctx, name=layer.name))


_loaded = False


def _load_families() -> None:
    global _loaded
    if not _loaded:
        for fam in _FAMILIES:
            importlib.import_module(f"mlupdate.layers.{fam}")
        _loaded = True
