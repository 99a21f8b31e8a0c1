"""Element-wise layers: add, multiply (and their broadcastable forms)."""

from __future__ import annotations

from functools import reduce
from typing import Any

import torch
from torch import nn

from mlupdate.layers import BuildContext, register


class Add(nn.Module):
    """``add`` / ``addBroadcastable``: the sum of the inputs, plus ``alpha`` when there is one input."""

    def __init__(self, alpha: float = 0.0) -> None:
        super().__init__()
        self.alpha = alpha

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        if len(xs) == 1:
            return xs[0] + self.alpha
        return reduce(torch.add, xs)


class Multiply(nn.Module):
    """``multiply`` / ``multiplyBroadcastable``: the product of the inputs, or ``alpha * x``."""

    def __init__(self, alpha: float = 1.0) -> None:
        super().__init__()
        self.alpha = alpha

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        if len(xs) == 1:
            return xs[0] * self.alpha
        return reduce(torch.mul, xs)


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
