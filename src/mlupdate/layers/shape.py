"""Layers that change a tensor's shape without changing its values.

flatten, flattenTo2D, reshape (legacy), reshapeStatic, reshapeLike, rankPreservingReshape,
squeeze, expandDims, permute (legacy), transpose, copy.

Axes are Core ML axes; the graph's example axis (dim 0, see the package docstring) is never touched.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from mlupdate.errors import SpecError
from mlupdate.layers import BuildContext, register
from mlupdate.layers.common import as_sequence, int_list, nd_dims, nd_rank


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
    """``flattenTo2D``: Core ML ``[d0, .., dn]`` to ``[d0*..*d(axis-1), d(axis)*..*dn]`` (held ``[N, lead, tail]``)."""

    def __init__(self, axis: int) -> None:
        super().__init__()
        self.axis = axis

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rank = nd_rank(x)
        if not -rank <= self.axis <= rank:
            raise IndexError(f"axis {self.axis} is out of range for a rank-{rank} input")
        axis = self.axis + rank if self.axis < 0 else self.axis
        dims = [int(d) for d in x.shape[1:]]
        lead = math.prod(dims[:axis])
        return x.reshape(x.shape[0], lead, math.prod(dims[axis:]))


@register("flattenTo2D")
def _flatten_to_2d(p: Any, ctx: BuildContext) -> nn.Module:
    return FlattenTo2D(int(p.axis))


class Reshape(nn.Module):
    """``reshape`` (legacy): ``[C, H, W]`` per sequence step, or ``[Seq, C, H, W]`` per example.

    Channel-last mode reads and writes the values in ``[.., H, W, C]`` order.
    """

    def __init__(self, shape: tuple[int, ...], channel_last: bool) -> None:
        super().__init__()
        self.shape = shape
        self.channel_last = channel_last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.dim()  # positive dims: ONNX export rejects negative perms
        if len(self.shape) == 3:
            x = x.movedim(n - 3, n - 1) if self.channel_last else x
            c, h, w = self.shape
            y = x.reshape((*x.shape[:-3], h, w, c) if self.channel_last else (*x.shape[:-3], c, h, w))
            return y.movedim(n - 1, n - 3) if self.channel_last else y
        x = as_sequence(x)
        x = x.movedim(2, 4) if self.channel_last else x
        s, c, h, w = self.shape
        y = x.reshape((x.shape[0], s, h, w, c) if self.channel_last else (x.shape[0], s, c, h, w))
        y = y.movedim(4, 2) if self.channel_last else y
        return y[:, 0] if s == 1 else y


@register("reshape")
def _reshape(p: Any, ctx: BuildContext) -> nn.Module:
    shape = int_list(p.targetShape)
    if len(shape) not in (3, 4) or any(d <= 0 for d in shape):
        raise SpecError(
            f"Reshape layer '{ctx.name}' has targetShape {shape}; Core ML needs 3 or 4 positive values "
            "([C, H, W] or [Seq, C, H, W]). Fix the model."
        )
    return Reshape(tuple(shape), p.mode == 1)


class ReshapeStatic(nn.Module):
    """``reshapeStatic``: to the Core ML shape ``targetShape`` (one ``-1`` may be inferred)."""

    def __init__(self, shape: list[int]) -> None:
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape((x.shape[0], *self.shape))


@register("reshapeStatic")
def _reshape_static(p: Any, ctx: BuildContext) -> nn.Module:
    shape = int_list(p.targetShape)
    if not shape or any(d == 0 or d < -1 for d in shape) or shape.count(-1) > 1:
        raise SpecError(f"ReshapeStatic layer '{ctx.name}' has targetShape {shape}; Core ML needs positive sizes "
                        "(at most one -1). Fix the model.")
    return ReshapeStatic(shape)


class ReshapeLike(nn.Module):
    """``reshapeLike``: to the shape of the second input."""

    def forward(self, x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        return x.reshape((x.shape[0], *ref.shape[1:]))


@register("reshapeLike")
def _reshape_like(p: Any, ctx: BuildContext) -> nn.Module:
    return ReshapeLike()


class RankPreservingReshape(nn.Module):
    """``rankPreservingReshape``: 0 keeps the input dimension, -1 is inferred."""

    def __init__(self, shape: list[int]) -> None:
        super().__init__()
        self.shape = shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if len(self.shape) != nd_rank(x):
            raise ValueError(f"targetShape {self.shape} has {len(self.shape)} values for a rank-{nd_rank(x)} input")
        shape = [x.shape[i + 1] if s == 0 else s for i, s in enumerate(self.shape)]
        return x.reshape((x.shape[0], *shape))


@register("rankPreservingReshape")
def _rank_preserving_reshape(p: Any, ctx: BuildContext) -> nn.Module:
    return RankPreservingReshape(int_list(p.targetShape))


class Squeeze(nn.Module):
    """``squeeze``: drop the given unit axes (or every unit axis); a rank-0 result is ``[1]``."""

    def __init__(self, axes: list[int], squeeze_all: bool) -> None:
        super().__init__()
        self.axes = axes
        self.all = squeeze_all

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.all:
            dims = [d for d in range(1, x.dim()) if int(x.shape[d]) == 1]
        else:
            dims = list(nd_dims(self.axes, x))
            bad = [d - 1 for d in dims if int(x.shape[d]) != 1]
            if bad:
                raise ValueError(f"squeeze axes {bad} have sizes {[int(x.shape[d + 1]) for d in bad]}, not 1")
        keep = [int(x.shape[d]) for d in range(1, x.dim()) if d not in dims] or [1]
        return x.reshape((x.shape[0], *keep))


@register("squeeze")
def _squeeze(p: Any, ctx: BuildContext) -> nn.Module:
    return Squeeze(int_list(p.axes), bool(p.squeezeAll))


class ExpandDims(nn.Module):
    """``expandDims``: insert unit axes at positions of the output (negative positions allowed)."""

    def __init__(self, axes: list[int]) -> None:
        super().__init__()
        self.axes = axes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out_rank = nd_rank(x) + len(self.axes)
        if any(not -out_rank <= a < out_rank for a in self.axes):
            raise IndexError(f"axes {self.axes} are out of range for a rank-{out_rank} output")
        for d in sorted(a % out_rank for a in self.axes):
            x = x.unsqueeze(d + 1)
        return x


@register("expandDims")
def _expand_dims(p: Any, ctx: BuildContext) -> nn.Module:
    axes = int_list(p.axes)
    if not axes:
        raise SpecError(f"ExpandDims layer '{ctx.name}' has no axes; give at least one.")
    return ExpandDims(axes)


class Permute(nn.Module):
    """``permute``: reorder ``[Seq, C, H, W]`` of each example (Core ML's batch axis stays in place).

    Legacy blobs are held ``[N, (Seq,) C, H, W]``; in an ND network the input is a Core ML rank-5
    ``[Seq, B, C, H, W]``, held ``[N, Seq, B, C, H, W]``.

    A legacy permute that moves the sequence axis makes the shapes after it follow the sequence length an input
    has at run time (coremltools' ``test_fixed_seq_len``: 15 embeddings permuted into W and flattened into 480
    channels, on an input declared ``[1, 1, 1]``): it sets ``sequence_shapes``, and the runtime neither exports
    the network (an export fixes the length it was traced with) nor checks it at load on the declared shape.
    """

    def __init__(self, axes: list[int], nd: bool = False) -> None:
        super().__init__()
        self.sequence_shapes = not nd and axes[0] != 0
        self.perm = [0, *(a + 1 for a in axes)]
        held = (1, 3, 4, 5)  # held dims of Seq, C, H, W in [N, Seq, B, C, H, W]
        self.nd_perm = [0, held[axes[0]], 2, *(held[a] for a in axes[1:])] if nd else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.nd_perm is not None:
            if nd_rank(x) != 5:
                raise ValueError(f"permute needs a rank-5 input [Seq, B, C, H, W], got rank {nd_rank(x)}")
            return x.permute(self.nd_perm)
        y = as_sequence(x).permute(self.perm)
        return y[:, 0] if y.shape[1] == 1 else y


@register("permute")
def _permute(p: Any, ctx: BuildContext) -> nn.Module:
    axes = int_list(p.axis) or [0, 1, 2, 3]
    if sorted(axes) != [0, 1, 2, 3]:
        raise SpecError(f"Permute layer '{ctx.name}' has axis {axes}, not a permutation of [0, 1, 2, 3].")
    return Permute(axes, ctx.nd)


class Transpose(nn.Module):
    """``transpose``: permute the Core ML axes.

    ``axes`` shorter than the input's rank permute its last ``len(axes)`` axes when every axis before them has
    size 1, and keep those: the leading batch axis of a rank-4 image mapping (``[1, C, H, W]``), which
    ``NeuralNetworkBuilder.set_pre_processing_parameters`` (``make_image_input`` with ``NHWC``) follows with
    ``axes = [1, 2, 0]`` written for the array's ``[C, H, W]``, and which Core ML runs (coremltools' tests).
    """

    def __init__(self, axes: list[int]) -> None:
        super().__init__()
        self.axes = axes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rank, n = nd_rank(x), len(self.axes)
        lead = rank - n
        if (sorted(a % max(n, 1) for a in self.axes) != list(range(n)) or lead < 0
                or any(int(d) != 1 for d in x.shape[1:1 + lead])):
            raise ValueError(f"axes {self.axes} are not a permutation of the {rank} axes of the input")
        return x.permute([*range(1 + lead), *(a % n + 1 + lead for a in self.axes)])


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
