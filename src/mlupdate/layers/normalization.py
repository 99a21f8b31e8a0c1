"""Normalization layers: ``batchnorm`` (and instance normalization)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mlupdate.layers import BuildContext, register
from mlupdate.layers.weights import weight_array


class BatchNorm(nn.Module):
    """``batchnorm``: per-channel affine normalization over the ``C`` axis of ``[.., C, H, W]``."""

    def __init__(self, p: Any, name: str) -> None:
        super().__init__()
        c = int(p.channels)
        what = f"BatchNorm layer '{name}'"
        for field in ("gamma", "beta", "mean", "variance"):
            if field in ("mean", "variance") and p.computeMeanVar:
                continue
            arr = weight_array(getattr(p, field), c, f"{what} {field}")
            self.register_buffer(field, torch.from_numpy(arr.copy()))
        self.eps = float(p.epsilon)
        self.compute = bool(p.computeMeanVar)
        self.instance = bool(p.instanceNormalization)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (-1, 1, 1) if x.dim() >= 3 else (-1,)
        if self.compute:
            if self.instance:
                return F.instance_norm(x, weight=self.gamma, bias=self.beta, eps=self.eps)
            dims = tuple(d for d in range(x.dim()) if d != x.dim() - 3)
            mean = x.mean(dim=dims, keepdim=True)
            var = x.var(dim=dims, unbiased=False, keepdim=True)
            return (x - mean) / torch.sqrt(var + self.eps) * self.gamma.reshape(shape) + self.beta.reshape(shape)
        scale = self.gamma / torch.sqrt(self.variance + self.eps)
        shift = self.beta - self.mean * scale
        return x * scale.reshape(shape) + shift.reshape(shape)


@register("batchnorm")
def _batchnorm(p: Any, ctx: BuildContext) -> nn.Module:
    return BatchNorm(p, ctx.name)
