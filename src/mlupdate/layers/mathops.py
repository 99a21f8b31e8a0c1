"""Element-wise math.

``unary`` (UnaryFunctionLayerParams), rounding, trigonometry, ``erf``, comparisons, logical
operators and ``whereBroadcastable``.

Comparisons and logical layers return 1.0 / 0.0 floats, as Core ML does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from mlupdate.layers import BuildContext, register
from mlupdate.layers.common import align

SQRT, RSQRT, INVERSE, POWER, EXP, LOG, ABS, THRESHOLD = range(8)


class Unary(nn.Module):
    """``unary``: ``f(scale * x + shift)`` for sqrt, rsqrt, inverse, power, exp, log, abs, threshold.

    ``epsilon`` (``1e-6`` when unset or 0, as the proto says) is added before rsqrt, inverse and log.
    """

    def __init__(self, p: Any) -> None:
        super().__init__()
        self.op = int(p.type)
        self.alpha = float(p.alpha)
        self.eps = float(p.epsilon) or 1e-6
        self.shift = float(p.shift)
        self.scale = float(p.scale) or 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: PLR0911 - a flat dispatch table
        if self.scale != 1.0:
            x = x * self.scale
        if self.shift != 0.0:
            x = x + self.shift
        op = self.op
        if op == SQRT:
            return torch.sqrt(x)
        if op == RSQRT:
            return 1.0 / torch.sqrt(x + self.eps)
        if op == INVERSE:
            return 1.0 / (x + self.eps)
        if op == POWER:
            return torch.pow(x, self.alpha)
        if op == EXP:
            return torch.exp(x)
        if op == LOG:  # log(x + epsilon), as coremltools' MIL log op and its NN mapping define it
            return torch.log(x + self.eps)
        if op == ABS:
            return torch.abs(x)
        return torch.clamp(x, min=self.alpha)


@register("unary")
def _unary(p: Any, ctx: BuildContext) -> nn.Module:
    return Unary(p)


class Elementwise(nn.Module):
    """One input, one torch function."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


def _exp2(x: torch.Tensor) -> torch.Tensor:
    return torch.pow(2.0, x)


# hyperbolic functions written with exp/log: the ONNX exporter has no sinh, cosh, asinh, acosh, atanh
def _sinh(x: torch.Tensor) -> torch.Tensor:
    return (torch.exp(x) - torch.exp(-x)) * 0.5


def _cosh(x: torch.Tensor) -> torch.Tensor:
    return (torch.exp(x) + torch.exp(-x)) * 0.5


def _asinh(x: torch.Tensor) -> torch.Tensor:
    return torch.sign(x) * torch.log(torch.abs(x) + torch.sqrt(x * x + 1))


def _acosh(x: torch.Tensor) -> torch.Tensor:
    return torch.log(x + torch.sqrt(x * x - 1))


def _atanh(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * torch.log((1 + x) / (1 - x))


_UNARY: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "ceil": torch.ceil, "floor": torch.floor, "sign": torch.sign, "round": torch.round, "exp2": _exp2,
    "sin": torch.sin, "cos": torch.cos, "tan": torch.tan, "asin": torch.asin, "acos": torch.acos,
    "atan": torch.atan, "sinh": _sinh, "cosh": _cosh, "tanh": torch.tanh, "asinh": _asinh,
    "acosh": _acosh, "atanh": _atanh, "erf": torch.erf,
}


def _unary_builder(kind: str) -> Callable[[Any, BuildContext], nn.Module]:
    return lambda p, ctx: Elementwise(_UNARY[kind])


for _kind in _UNARY:
    register(_kind)(_unary_builder(_kind))


class Compare(nn.Module):
    """Comparison of two inputs, or of one input with ``alpha``; 1.0 where true."""

    def __init__(self, fn: Callable[[torch.Tensor, Any], torch.Tensor], alpha: float) -> None:
        super().__init__()
        self.fn, self.alpha = fn, alpha

    def forward(self, a: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
        if b is None:
            return self.fn(a, self.alpha).to(a.dtype)
        a, b = align((a, b))
        return self.fn(a, b).to(a.dtype)


_COMPARE: dict[str, Callable[[torch.Tensor, Any], torch.Tensor]] = {
    "equal": torch.eq, "notEqual": torch.ne, "lessThan": torch.lt, "lessEqual": torch.le,
    "greaterThan": torch.gt, "greaterEqual": torch.ge,
}


def _compare_builder(kind: str) -> Callable[[Any, BuildContext], nn.Module]:
    return lambda p, ctx: Compare(_COMPARE[kind], float(p.alpha))


for _kind in _COMPARE:
    register(_kind)(_compare_builder(_kind))


class Logical(nn.Module):
    """``logicalAnd/Or/Xor/Not``: non-zero is true; 1.0 where the result is true."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    def forward(self, a: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
        x = a != 0
        if self.kind == "logicalNot":
            return (~x).to(a.dtype)
        x, y = align((x, b != 0))
        fn = {"logicalAnd": torch.logical_and, "logicalOr": torch.logical_or, "logicalXor": torch.logical_xor}
        return fn[self.kind](x, y).to(a.dtype)


def _logical_builder(kind: str) -> Callable[[Any, BuildContext], nn.Module]:
    return lambda p, ctx: Logical(kind)


for _kind in ("logicalAnd", "logicalOr", "logicalXor", "logicalNot"):
    register(_kind)(_logical_builder(_kind))


class Where(nn.Module):
    """``whereBroadcastable``: ``b`` where ``cond`` is non-zero, else ``c``."""

    def forward(self, cond: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        cond, b, c = align((cond, b, c))
        return torch.where(cond != 0, b, c)


@register("whereBroadcastable")
def _where(p: Any, ctx: BuildContext) -> nn.Module:
    return Where()
