"""Layers that change a tensor's shape without changing its values.

flatten, flattenTo2D, reshape (legacy), reshapeStatic, reshapeLike, rankPreservingReshape,
squeeze, expandDims, permute (legacy), transpose, copy.

The batch stays in dim 0 (see the package docstring). In ND networks positive axes index the
blob directly (the declared rank includes the batch axis); a squeeze never removes dim 0 of a
tensor of rank > 1, which is the batch axis.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mlupdate.errors import UnsupportedLayerError
from mlupdate.layers import BuildContext, register
from mlupdate.layers.common import int_list


class Flatten(nn.Module):
    """``flatten``: ``[.., C, H, W]`` to ``[.., C*H*W, 1, 1]`` in channel-first or channel-last order."""

    def __init__(self, channel_last: bool) -> None:
        super().__init__()
        self.channel_last = channel_last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channel_last:
            x = x.movedim(x.dim() - 3, x.dim() - 1)  # positive dims: ONNX export rejects negative perms
        return x.flatten(-3)[..., None, None]


@register("flatten")
def _flatten(p: Any, ctx: BuildContext) -> nn.Module:
    return Flatten(p.mode == 1)


class FlattenTo2D(nn.Module):
    """``flattenTo2D``: ``[d0, .., dn]`` to ``[d0*..*d(axis-1), d(axis)*..*dn]``.

    For ``axis >= 2`` the batch axis (dim 0) is kept apart, giving ``[B, lead, tail]``.
    """

    def __init__(self, axis: int) -> None:
        super().__init__()
        self.axis = axis

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        axis = self.axis % x.dim() if self.axis < 0 else self.axis
        if axis == 0:
            return x.reshape(1, -1)
        tail = 1
        for d in x.shape[axis:]:
            tail *= int(d)
        if axis == 1:
            return x.reshape(-1, tail)
        lead = 1
        for d in x.shape[1:axis]:
            lead *= int(d)
        return x.reshape(-1, lead, tail)  # dim 0 stays the batch axis: per example this is [lead, tail]


@register("flattenTo2D")
def _flatten_to_2d(p: Any, ctx: BuildContext) -> nn.Module:
    return FlattenTo2D(int(p.axis))


class Reshape(nn.Module):
    """``reshape`` (legacy): to ``[C, H, W]`` per example, channel-first or channel-last order."""

    def __init__(self, chw: tuple[int, int, int], channel_last: bool) -> None:
        super().__init__()
        self.chw = chw
        self.channel_last = channel_last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c, h, w = self.chw
        if not self.channel_last:
            return x.reshape((-1, c, h, w))
        n = x.dim()  # positive dims: ONNX export rejects negative perms
        return x.movedim(n - 3, n - 1).reshape((-1, h, w, c)).permute(0, 3, 1, 2)


@register("reshape")
def _reshape(p: Any, ctx: BuildContext) -> nn.Module:
    shape = int_list(p.targetShape)
    if len(shape) == 4:
        if shape[0] != 1:
            raise UnsupportedLayerError(
                f"Reshape layer '{ctx.name}' sets the sequence length to {shape[0]}; mlupdate only runs "
                "sequence length 1. Reshape to a 3-value target [C, H, W] instead."
            )
        shape = shape[1:]
    if len(shape) != 3:
        raise UnsupportedLayerError(
            f"Reshape layer '{ctx.name}' has targetShape {shape}; Core ML needs 3 or 4 values. Fix the model."
        )
    return Reshape((shape[0], shape[1], shape[2]), p.mode == 1)


class ReshapeStatic(nn.Module):
    """``reshapeStatic``: to a fixed shape; a leading 1 is the batch axis and follows the input."""

    def __init__(self, shape: list[int]) -> None:
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.shape and self.shape[0] == 1:
            rest = self.shape[1:]
            if -1 in rest:
                return x.reshape((x.shape[0], *rest))
            return x.reshape((-1, *rest))
        return x.reshape(self.shape)


@register("reshapeStatic")
def _reshape_static(p: Any, ctx: BuildContext) -> nn.Module:
    return ReshapeStatic(int_list(p.targetShape))


class ReshapeLike(nn.Module):
    """``reshapeLike``: to the shape of the second input."""

    def forward(self, x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        return x.reshape(ref.shape)


@register("reshapeLike")
def _reshape_like(p: Any, ctx: BuildContext) -> nn.Module:
    return ReshapeLike()


class RankPreservingReshape(nn.Module):
    """``rankPreservingReshape``: 0 keeps the input dimension, -1 is inferred."""

    def __init__(self, shape: list[int]) -> None:
        super().__init__()
        self.shape = shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = [x.shape[i] if s == 0 else s for i, s in enumerate(self.shape)]
        return x.reshape(shape)


@register("rankPreservingReshape")
def _rank_preserving_reshape(p: Any, ctx: BuildContext) -> nn.Module:
    return RankPreservingReshape(int_list(p.targetShape))


class Squeeze(nn.Module):
    """``squeeze``: drop the given unit axes (or all unit axes), never the batch axis."""

    def __init__(self, axes: list[int], squeeze_all: bool) -> None:
        super().__init__()
        self.axes = axes
        self.all = squeeze_all

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.dim()
        if self.all:
            dims = [d for d in range(1, n) if int(x.shape[d]) == 1]
        else:
            dims = sorted({a % n for a in self.axes})
            dims = [d for d in dims if d != 0 or n == 1]
        if n - len(dims) < 1 or not dims:
            return x
        keep = [x.shape[d] for d in range(n) if d not in dims]
        keep[0] = -1 if 0 not in dims else keep[0]
        return x.reshape(keep)


@register("squeeze")
def _squeeze(p: Any, ctx: BuildContext) -> nn.Module:
    return Squeeze(int_list(p.axes), bool(p.squeezeAll))


class ExpandDims(nn.Module):
    """``expandDims``: insert unit axes at positions of the output (negative positions allowed)."""

    def __init__(self, axes: list[int]) -> None:
        super().__init__()
        self.axes = axes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out_rank = x.dim() + len(self.axes)
        dims = sorted(a % out_rank for a in self.axes)
        for d in dims:
            x = x.unsqueeze(d)
        return x


@register("expandDims")
def _expand_dims(p: Any, ctx: BuildContext) -> nn.Module:
    return ExpandDims(int_list(p.axes))


class Permute(nn.Module):
    """``permute`` (legacy): reorder ``[Seq, C, H, W]`` (batch fixed); Seq must stay 1."""

    def __init__(self, axes: list[int], name: str) -> None:
        super().__init__()
        # blob [B, C, H, W] seen as rank 5 [Seq=1, B, C, H, W]; proto axis i -> rank-5 axis
        where = [0, 2, 3, 4]
        self.perm = [where[axes[0]], 1, where[axes[1]], where[axes[2]], where[axes[3]]]
        self.name = name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.unsqueeze(0).permute(self.perm)
        if y.shape[0] != 1:
            raise UnsupportedLayerError(
                f"Permute layer '{self.name}' moves a dimension of size {y.shape[0]} into the sequence axis; "
                "mlupdate only runs sequence length 1."
            )
        return y[0]


@register("permute")
def _permute(p: Any, ctx: BuildContext) -> nn.Module:
    axes = int_list(p.axis) or [0, 1, 2, 3]
    if sorted(axes) != [0, 1, 2, 3]:
        raise UnsupportedLayerError(f"Permute layer '{ctx.name}' has axis {axes}, not a permutation of [0, 1, 2, 3].")
    return Permute(axes, ctx.name)


class Transpose(nn.Module):
    """``transpose``: permute all axes."""

    def __init__(self, axes: list[int]) -> None:
        super().__init__()
        self.axes = axes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(self.axes)


@register("transpose")
def _transpose(p: Any, ctx: BuildContext) -> nn.Module:
    return Transpose(int_list(p.axes))


class Copy(nn.Module):
    """``copy``: the input unchanged."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


@register("copy")
def _copy(p: Any, ctx: BuildContext) -> nn.Module:
    return Copy()
