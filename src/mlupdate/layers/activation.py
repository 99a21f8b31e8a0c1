"""Every ``ActivationParams`` kind (``activation``), plus ``clip``, ``clampedReLU`` and ``gelu``."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mlupdate.layers import BuildContext, register
from mlupdate.layers.weights import weight_array


def _per_channel(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A length-C (or length-1) parameter broadcast over axis -3 of ``x`` (the last axis when rank < 3)."""
    return t.reshape(-1, 1, 1) if x.dim() >= 3 else t


class Activation(nn.Module):
    """One of Core ML's activation functions (``ActivationParams``)."""

    def __init__(self, p: Any, name: str = "") -> None:
        super().__init__()
        self.kind = p.WhichOneof("NonlinearityType") or "linear"
        q = getattr(p, self.kind)
        self.alpha = float(getattr(q, "alpha", 0.0)) if self.kind not in ("PReLU", "parametricSoftplus") else 0.0
        self.beta = float(getattr(q, "beta", 0.0)) if self.kind not in ("PReLU", "parametricSoftplus") else 0.0
        what = f"Activation layer '{name}'"
        if self.kind == "PReLU":
            self.register_buffer("a", torch.from_numpy(weight_array(q.alpha, None, f"{what} alpha").copy()))
        if self.kind == "parametricSoftplus":
            self.register_buffer("a", torch.from_numpy(weight_array(q.alpha, None, f"{what} alpha").copy()))
            self.register_buffer("b", torch.from_numpy(weight_array(q.beta, None, f"{what} beta").copy()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: C901, PLR0911 - a flat dispatch table
        k, a, b = self.kind, self.alpha, self.beta
        if k == "ReLU":
            return F.relu(x)
        if k == "sigmoid":
            return torch.sigmoid(x)
        if k == "tanh":
            return torch.tanh(x)
        if k == "linear":
            return a * x + b
        if k == "leakyReLU":
            return torch.where(x >= 0, x, a * x)
        if k == "thresholdedReLU":
            return torch.where(x >= a, x, torch.zeros_like(x))
        if k == "scaledTanh":
            return a * torch.tanh(b * x)
        if k == "sigmoidHard":
            return torch.clamp(a * x + b, 0.0, 1.0)
        if k == "ELU":
            return torch.where(x >= 0, x, a * (torch.exp(x) - 1))
        if k == "softsign":
            return x / (1 + torch.abs(x))
        if k == "softplus":
            return F.softplus(x)
        if k == "PReLU":
            return torch.where(x >= 0, x, _per_channel(self.a, x) * x)
        if k == "parametricSoftplus":
            return _per_channel(self.a, x) * F.softplus(_per_channel(self.b, x) * x)
        raise AssertionError(k)


@register("activation")
def _activation(p: Any, ctx: BuildContext) -> nn.Module:
    return Activation(p, ctx.name)


class Clip(nn.Module):
    """``clip``: clamp to [minVal, maxVal]."""

    def __init__(self, lo: float, hi: float) -> None:
        super().__init__()
        self.lo, self.hi = lo, hi

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp(x, self.lo, self.hi)


@register("clip")
def _clip(p: Any, ctx: BuildContext) -> nn.Module:
    return Clip(float(p.minVal), float(p.maxVal))


class ClampedReLU(nn.Module):
    """``clampedReLU``: ``min(x if x >= 0 else alpha * x, beta)``."""

    def __init__(self, alpha: float, beta: float) -> None:
        super().__init__()
        self.alpha, self.beta = alpha, beta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp(torch.where(x >= 0, x, self.alpha * x), max=self.beta)


@register("clampedReLU")
def _clamped_relu(p: Any, ctx: BuildContext) -> nn.Module:
    return ClampedReLU(float(p.alpha), float(p.beta))


class Gelu(nn.Module):
    """``gelu``: exact (erf), tanh approximation or sigmoid approximation (``x * sigmoid(1.702 x)``)."""

    def __init__(self, mode: int) -> None:
        super().__init__()
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == 1:
            return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
        if self.mode == 2:
            return x * torch.sigmoid(1.702 * x)
        return 0.5 * x * (1 + torch.erf(x / math.sqrt(2.0)))


@register("gelu")
def _gelu(p: Any, ctx: BuildContext) -> nn.Module:
    return Gelu(int(p.mode))

