"""Layers that move data around: flatten, reshape, concat.

In every layer here the batch stays in dim 0 (see the package docstring).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mlupdate.layers import BuildContext, register


class Flatten(nn.Module):
    """``flatten``: ``[.., C, H, W]`` to ``[.., C*H*W, 1, 1]`` in channel-first or channel-last order."""

    def __init__(self, channel_last: bool) -> None:
        super().__init__()
        self.channel_last = channel_last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channel_last:
            x = x.movedim(-3, -1)
        return x.flatten(-3)[..., None, None]


@register("flatten")
def _flatten(p: Any, ctx: BuildContext) -> nn.Module:
    return Flatten(p.mode == 1)


class ReshapeStatic(nn.Module):
    """``reshapeStatic``: to a fixed shape whose first (batch) dimension follows the input's."""

    def __init__(self, shape: list[int]) -> None:
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.shape and self.shape[0] == 1:
            return x.reshape((x.shape[0], *self.shape[1:]))
        return x.reshape(self.shape)


@register("reshapeStatic")
def _reshape_static(p: Any, ctx: BuildContext) -> nn.Module:
    return ReshapeStatic([int(v) for v in p.targetShape])


class Concat(nn.Module):
    """``concat`` (channel axis, N-3) and ``concatND`` (explicit axis)."""

    def __init__(self, axis: int) -> None:
        super().__init__()
        self.axis = axis

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return torch.cat(xs, dim=self.axis)


@register("concat")
def _concat(p: Any, ctx: BuildContext) -> nn.Module:
    return Concat(-4 if p.sequenceConcat else -3)


@register("concatND")
def _concat_nd(p: Any, ctx: BuildContext) -> nn.Module:
    return Concat(int(p.axis))
