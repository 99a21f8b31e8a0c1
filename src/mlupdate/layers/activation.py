"""Every ``ActivationParams`` kind (``activation``), plus ``clip``."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mlupdate.layers import BuildContext, register


def _channel(values: Any, x: torch.Tensor) -> torch.Tensor:
    """Per-channel parameters broadcast over a ``[B, C, H, W]`` (or ``[.., C, H, W]``) tensor."""
    t = torch.as_tensor(np.asarray(values, dtype=np.float32))
    return t.reshape(-1, 1, 1) if x.dim() >= 3 else t


class Activation(nn.Module):
    """One of Core ML's activation functions."""

    def __init__(self, p: Any) -> None:
        super().__init__()
        self.kind = p.WhichOneof("NonlinearityType")
        self.p = getattr(p, self.kind)
        if self.kind == "PReLU":
            self.register_buffer("alpha", torch.tensor(list(self.p.alpha.floatValue), dtype=torch.float32))
        if self.kind == "parametricSoftplus":
            self.register_buffer("alpha", torch.tensor(list(self.p.alpha.floatValue), dtype=torch.float32))
            self.register_buffer("beta", torch.tensor(list(self.p.beta.floatValue), dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: C901 - a flat dispatch table
        k, p = self.kind, self.p
        if k == "ReLU":
            return F.relu(x)
        if k == "sigmoid":
            return torch.sigmoid(x)
        if k == "tanh":
            return torch.tanh(x)
        if k == "linear":
            return p.alpha * x + p.beta
        if k == "leakyReLU":
            return F.leaky_relu(x, p.alpha)
        if k == "thresholdedReLU":
            return torch.where(x > p.alpha, x, torch.zeros_like(x))
        if k == "scaledTanh":
            return p.alpha * torch.tanh(p.beta * x)
        if k == "sigmoidHard":
            return torch.clamp(p.alpha * x + p.beta, 0.0, 1.0)
        if k == "ELU":
            return F.elu(x, p.alpha)
        if k == "softsign":
            return F.softsign(x)
        if k == "softplus":
            return F.softplus(x)
        if k == "PReLU":
            a = self.alpha.reshape(-1, 1, 1) if x.dim() >= 3 else self.alpha
            return torch.where(x >= 0, x, a * x)
        if k == "parametricSoftplus":
            shape = (-1, 1, 1) if x.dim() >= 3 else (-1,)
            return self.alpha.reshape(shape) * F.softplus(self.beta.reshape(shape) * x)
        raise AssertionError(k)


@register("activation")
def _activation(p: Any, ctx: BuildContext) -> nn.Module:
    return Activation(p)


class Clip(nn.Module):
    """``clip``: clamp to [minVal, maxVal]."""

    def __init__(self, p: Any) -> None:
        super().__init__()
        self.lo, self.hi = float(p.minVal), float(p.maxVal)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp(x, self.lo, self.hi)


@register("clip")
def _clip(p: Any, ctx: BuildContext) -> nn.Module:
    return Clip(p)
