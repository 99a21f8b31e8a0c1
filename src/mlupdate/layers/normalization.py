"""Normalization layers: ``batchnorm`` (and instance norm), ``mvn``, ``l2normalize``, ``lrn``, layer norm."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mlupdate.layers import BuildContext, register
from mlupdate.layers.common import fold, int_list
from mlupdate.layers.weights import weight_array


class BatchNorm(nn.Module):
    """``batchnorm``: per-channel affine normalization over axis -3 (leading axes are batch).

    With ``computeMeanVar`` the statistics come from each instance (``instanceNormalization``)
    or from the whole batch. ``epsilon`` defaults to 1e-5 when 0.
    """

    def __init__(self, p: Any, name: str) -> None:
        super().__init__()
        c = int(p.channels)
        what = f"BatchNorm layer '{name}'"
        for field in ("gamma", "beta", "mean", "variance"):
            if field in ("mean", "variance") and p.computeMeanVar:
                continue
            arr = weight_array(getattr(p, field), c, f"{what} {field}")
            self.register_buffer(field, torch.from_numpy(arr.copy()))
        self.eps = float(p.epsilon) or 1e-5
        self.compute = bool(p.computeMeanVar)
        self.instance = bool(p.instanceNormalization)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (-1, 1, 1) if x.dim() >= 3 else (-1,)
        if self.compute:
            if self.instance:
                dims: tuple[int, ...] = (-2, -1)
            else:
                # every axis but C and the graph's example axis: examples never share statistics
                dims = tuple(d for d in range(1, x.dim()) if d != x.dim() - 3)
            mean = x.mean(dim=dims, keepdim=True)
            var = ((x - mean) ** 2).mean(dim=dims, keepdim=True)
            return (x - mean) / torch.sqrt(var + self.eps) * self.gamma.reshape(shape) + self.beta.reshape(shape)
        scale = self.gamma / torch.sqrt(self.variance + self.eps)
        shift = self.beta - self.mean * scale
        return x * scale.reshape(shape) + shift.reshape(shape)


@register("batchnorm")
def _batchnorm(p: Any, ctx: BuildContext) -> nn.Module:
    return BatchNorm(p, ctx.name)


class MeanVarianceNormalize(nn.Module):
    """``mvn``: subtract the mean (and divide by ``sqrt(var + eps)``) over H, W or over C, H, W."""

    def __init__(self, across_channels: bool, normalize_variance: bool, eps: float) -> None:
        super().__init__()
        self.dims = (-3, -2, -1) if across_channels else (-2, -1)
        self.normalize_variance = normalize_variance
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x - x.mean(dim=self.dims, keepdim=True)
        if not self.normalize_variance:
            return y
        return y / torch.sqrt((y * y).mean(dim=self.dims, keepdim=True) + self.eps)


@register("mvn")
def _mvn(p: Any, ctx: BuildContext) -> nn.Module:
    return MeanVarianceNormalize(bool(p.acrossChannels), bool(p.normalizeVariance), float(p.epsilon) or 1e-6)


class L2Normalize(nn.Module):
    """``l2normalize``: ``x / sqrt(sum(x^2) + eps)`` over the last three axes (C, H, W)."""

    def __init__(self, eps: float) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dims = tuple(range(-min(3, x.dim() - 1), 0))
        return x / torch.sqrt((x * x).sum(dim=dims, keepdim=True) + self.eps)


@register("l2normalize")
def _l2normalize(p: Any, ctx: BuildContext) -> nn.Module:
    return L2Normalize(float(p.epsilon) or 1e-6)


class LocalResponseNorm(nn.Module):
    """``lrn``: ``x / (k + alpha / localSize * sum of x^2 over localSize channels) ^ beta``."""

    def __init__(self, size: int, alpha: float, beta: float, k: float) -> None:
        super().__init__()
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fold(lambda t: F.local_response_norm(t, self.size, self.alpha, self.beta, self.k), x)


@register("lrn")
def _lrn(p: Any, ctx: BuildContext) -> nn.Module:
    return LocalResponseNorm(int(p.localSize), float(p.alpha), float(p.beta), float(p.k) or 1.0)


class LayerNorm(nn.Module):
    """``layerNormalization`` over the trailing ``normalizedShape`` axes, with gamma and beta."""

    def __init__(self, p: Any, name: str) -> None:
        super().__init__()
        self.shape = tuple(int_list(p.normalizedShape))
        n = int(np.prod(self.shape))
        what = f"LayerNormalization layer '{name}'"
        for field in ("gamma", "beta"):
            arr = weight_array(getattr(p, field), n, f"{what} {field}").reshape(self.shape)
            self.register_buffer(field, torch.from_numpy(arr.copy()))
        self.eps = float(p.eps) or 1e-5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.shape, self.gamma, self.beta, self.eps)


@register("layerNormalization")
def _layer_norm(p: Any, ctx: BuildContext) -> nn.Module:
    return LayerNorm(p, ctx.name)
