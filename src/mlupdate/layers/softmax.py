"""``softmax`` (over the channel axis, N-3) and ``softmaxND`` (explicit axis)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mlupdate.layers import BuildContext, register


class Softmax(nn.Module):
    """Softmax along one axis; ``log_input`` lets the loss use log-softmax for stability."""

    def __init__(self, axis: int) -> None:
        super().__init__()
        self.axis = axis

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(x, dim=self.axis)


@register("softmax")
def _softmax(p: Any, ctx: BuildContext) -> nn.Module:
    return Softmax(-3)


@register("softmaxND")
def _softmax_nd(p: Any, ctx: BuildContext) -> nn.Module:
    return Softmax(int(p.axis))
