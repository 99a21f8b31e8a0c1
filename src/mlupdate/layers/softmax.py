"""``softmax`` (over the channel axis, N-3) and ``softmaxND`` (explicit axis)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mlupdate.layers import BuildContext, register
from mlupdate.layers.common import nd_dim


class Softmax(nn.Module):
    """Softmax along one Core ML axis (``axis``; negative counts from the end)."""

    def __init__(self, axis: int) -> None:
        super().__init__()
        self.axis = axis

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(x, dim=nd_dim(self.axis, x) if self.axis >= 0 else self.axis)


@register("softmax")
def _softmax(p: Any, ctx: BuildContext) -> nn.Module:
    return Softmax(-3)


@register("softmaxND")
def _softmax_nd(p: Any, ctx: BuildContext) -> nn.Module:
    return Softmax(int(p.axis))
