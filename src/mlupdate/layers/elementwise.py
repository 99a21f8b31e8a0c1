"""Element-wise binary layers: add, multiply, average, max, min, dot, scale, bias and the broadcastable forms."""

from __future__ import annotations

from collections.abc import Callable
from functools import reduce
from typing import Any

import numpy as np
import torch
from torch import nn

from mlupdate.errors import SpecError
from mlupdate.layers import BuildContext, register
from mlupdate.layers.common import align, int_list
from mlupdate.layers.weights import weight_array


class Add(nn.Module):
    """``add`` / ``addBroadcastable``: the sum of the inputs, plus ``alpha`` when there is one input."""

    def __init__(self, alpha: float = 0.0) -> None:
        super().__init__()
        self.alpha = alpha

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        if len(xs) == 1:
            return xs[0] + self.alpha
        return reduce(torch.add, align(xs))


class Multiply(nn.Module):
    """``multiply`` / ``multiplyBroadcastable``: the product of the inputs, or ``alpha * x``."""

    def __init__(self, alpha: float = 1.0) -> None:
        super().__init__()
        self.alpha = alpha

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        if len(xs) == 1:
            return xs[0] * self.alpha
        return reduce(torch.mul, align(xs))


class Fold(nn.Module):
    """Any n-ary element-wise layer folded with one broadcasting binary function (``average`` divides)."""

    def __init__(self, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], mean: bool = False) -> None:
        super().__init__()
        self.fn, self.mean = fn, mean

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        out = reduce(self.fn, align(xs))
        return out / len(xs) if self.mean else out


@register("add")
def _add(p: Any, ctx: BuildContext) -> nn.Module:
    return Add(float(p.alpha))


@register("addBroadcastable")
def _add_b(p: Any, ctx: BuildContext) -> nn.Module:
    return Add()


@register("multiply")
def _mul(p: Any, ctx: BuildContext) -> nn.Module:
    return Multiply(float(p.alpha))


@register("multiplyBroadcastable")
def _mul_b(p: Any, ctx: BuildContext) -> nn.Module:
    return Multiply()


def _floor_div(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.floor(a / b)


_BINARY: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "max": torch.maximum, "min": torch.minimum, "maxBroadcastable": torch.maximum,
    "minBroadcastable": torch.minimum, "subtractBroadcastable": torch.sub, "divideBroadcastable": torch.div,
    "powBroadcastable": torch.pow, "modBroadcastable": torch.remainder, "floorDivBroadcastable": _floor_div,
}


def _binary(kind: str) -> Callable[[Any, BuildContext], nn.Module]:
    return lambda p, ctx: Fold(_BINARY[kind])


for _kind in _BINARY:
    register(_kind)(_binary(_kind))


@register("average")
def _average(p: Any, ctx: BuildContext) -> nn.Module:
    return Fold(torch.add, mean=True)


class Dot(nn.Module):
    """``dot``: dot product (or cosine similarity) over axis -3 of ``[.., C, 1, 1]`` blobs."""

    def __init__(self, cosine: bool) -> None:
        super().__init__()
        self.cosine = cosine

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if self.cosine:
            a = a / torch.sqrt((a * a).sum(dim=-3, keepdim=True))
            b = b / torch.sqrt((b * b).sum(dim=-3, keepdim=True))
        return (a * b).sum(dim=-3, keepdim=True)


@register("dot")
def _dot(p: Any, ctx: BuildContext) -> nn.Module:
    return Dot(bool(p.cosineSimilarity))


def chw_param(wp: Any, shape: list[int], what: str) -> torch.Tensor:
    """A ``[1]``, ``[C]``, ``[1, H, W]`` or ``[C, H, W]`` parameter shaped to broadcast over ``[.., C, H, W]``.

    Raises:
        SpecError: If the shape is none of these or the value count does not match.
    """
    shape = shape or [1]
    if len(shape) not in (1, 3):
        raise SpecError(f"{what} has shape {shape}; Core ML allows [1], [C], [1, H, W] or [C, H, W].")
    arr = weight_array(wp, int(np.prod(shape)), what)
    t = torch.from_numpy(arr.copy())
    if len(shape) == 1:
        return t.reshape(()) if shape[0] == 1 else t.reshape(-1, 1, 1)
    return t.reshape(shape)


class Scale(nn.Module):
    """``scale``: ``x * scale (+ bias)``, both broadcast from ``[1]``, ``[C]``, ``[1, H, W]`` or ``[C, H, W]``."""

    def __init__(self, p: Any, name: str) -> None:
        super().__init__()
        what = f"Scale layer '{name}'"
        self.register_buffer("scale", chw_param(p.scale, int_list(p.shapeScale), f"{what} scale"))
        self.has_bias = bool(p.hasBias)
        if self.has_bias:
            self.register_buffer("bias", chw_param(p.bias, int_list(p.shapeBias), f"{what} bias"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x * self.scale
        return y + self.bias if self.has_bias else y


@register("scale")
def _scale(p: Any, ctx: BuildContext) -> nn.Module:
    return Scale(p, ctx.name)


class Bias(nn.Module):
    """``bias``: ``x + bias`` broadcast from ``[1]``, ``[C]``, ``[1, H, W]`` or ``[C, H, W]``."""

    def __init__(self, p: Any, name: str) -> None:
        super().__init__()
        self.register_buffer("bias", chw_param(p.bias, int_list(p.shape), f"Bias layer '{name}' bias"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bias


@register("bias")
def _bias(p: Any, ctx: BuildContext) -> nn.Module:
    return Bias(p, ctx.name)
