"""Layers that select or combine tensors.

concat, concatND, split, splitND, slice, sliceStatic, sliceBySize, gather, gatherAlongAxis,
stack, tile, reverse.

Index inputs arrive as float blobs (Core ML blobs are float) and are cast to integers.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mlupdate.errors import UnsupportedLayerError
from mlupdate.layers import BuildContext, register
from mlupdate.layers.common import int_list


class Concat(nn.Module):
    """``concat`` (axis -3, or -5 with sequenceConcat) and ``concatND`` (explicit axis)."""

    def __init__(self, axis: int) -> None:
        super().__init__()
        self.axis = axis

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return torch.cat(xs, dim=self.axis)


@register("concat")
def _concat(p: Any, ctx: BuildContext) -> nn.Module:
    if p.sequenceConcat and not ctx.nd:
        raise UnsupportedLayerError(
            f"Concat layer '{ctx.name}' concatenates along the sequence axis; mlupdate only runs sequence "
            "length 1 in rank-5 networks. Concatenate channels instead."
        )
    return Concat(-5 if p.sequenceConcat else -3)


@register("concatND")
def _concat_nd(p: Any, ctx: BuildContext) -> nn.Module:
    return Concat(int(p.axis))


class Split(nn.Module):
    """``split`` (equal parts along axis -3) and ``splitND`` (equal parts or given sizes)."""

    def __init__(self, axis: int, n: int, sizes: list[int]) -> None:
        super().__init__()
        self.axis, self.n, self.sizes = axis, n, sizes

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if self.sizes:
            return tuple(torch.split(x, self.sizes, dim=self.axis))
        return tuple(torch.split(x, x.shape[self.axis] // self.n, dim=self.axis))


@register("split")
def _split(p: Any, ctx: BuildContext) -> nn.Module:
    return Split(-3, max(int(p.nOutputs), 1), [])


@register("splitND")
def _split_nd(p: Any, ctx: BuildContext) -> nn.Module:
    return Split(int(p.axis), max(int(p.numSplits), 1), int_list(p.splitSizes))


def take(x: torch.Tensor, dim: int, index: range) -> torch.Tensor:
    """``x`` restricted to the positions ``index`` along ``dim`` (a basic slice when the step is positive)."""
    if index.step > 0 and len(index):
        return x[(slice(None),) * (dim % x.dim()) + (slice(index.start, index.stop, index.step),)]
    return x.index_select(dim, torch.tensor(list(index), dtype=torch.long, device=x.device))


class Slice(nn.Module):
    """``slice`` (legacy): ``[start:end:stride]`` along C, H or W; negative indices count from the end."""

    def __init__(self, axis: int, start: int, end: int, stride: int) -> None:
        super().__init__()
        self.axis, self.start, self.end, self.stride = axis, start, end, max(stride, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = int(x.shape[self.axis])
        start = self.start + n if self.start < 0 else self.start
        end = self.end + n if self.end < 0 else self.end
        return take(x, self.axis, range(*slice(start, end, self.stride).indices(n)))


@register("slice")
def _slice(p: Any, ctx: BuildContext) -> nn.Module:
    return Slice((-3, -2, -1)[int(p.axis)], int(p.startIndex), int(p.endIndex), int(p.stride))


class SliceStatic(nn.Module):
    """``sliceStatic``: numpy-style slicing per axis with begin/end masks, strides and squeeze masks.

    Slicing ``[0:1]`` of dim 0 (the batch axis of a batched blob) keeps the whole batch.
    """

    def __init__(self, p: Any) -> None:
        super().__init__()
        self.begin = int_list(p.beginIds)
        self.end = int_list(p.endIds)
        n = len(self.begin)
        self.strides = int_list(p.strides) or [1] * n
        self.bmask = [bool(v) for v in p.beginMasks] or [False] * n
        self.emask = [bool(v) for v in p.endMasks] or [False] * n
        self.squeeze = [bool(v) for v in p.squeezeMasks] or [False] * n

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        squeeze = []
        for d in range(len(self.begin)):
            s = self.strides[d]
            b = None if self.bmask[d] else self.begin[d]
            e = None if self.emask[d] else self.end[d]
            if d == 0 and s == 1 and (b is None or b == 0) and (e is None or e >= 1):
                continue
            n = int(x.shape[d])
            idx = range(*slice(b, e, s).indices(n))
            if idx != range(n):
                x = take(x, d, idx)
            if self.squeeze[d] and d > 0:
                squeeze.append(d)
        for d in reversed(squeeze):
            x = x.squeeze(d)
        return x


@register("sliceStatic")
def _slice_static(p: Any, ctx: BuildContext) -> nn.Module:
    return SliceStatic(p)


class SliceBySize(nn.Module):
    """``sliceBySize``: ``x[.., begin:begin + size, ..]`` along ``axis``, ``begin`` from the second input."""

    def __init__(self, axis: int, size: int) -> None:
        super().__init__()
        self.axis, self.size = axis, size

    def forward(self, x: torch.Tensor, begin: torch.Tensor) -> torch.Tensor:
        n = x.shape[self.axis]
        start = begin.reshape(-1)[:1].long()
        start = torch.where(start < 0, start + n, start)
        idx = start + torch.arange(self.size, dtype=torch.long, device=x.device)
        return x.index_select(self.axis, idx)


@register("sliceBySize")
def _slice_by_size(p: Any, ctx: BuildContext) -> nn.Module:
    return SliceBySize(int(p.axis), int(p.size))


class Gather(nn.Module):
    """``gather``: ``data`` indexed along ``axis`` by ``indices`` (any rank; negative indices allowed)."""

    def __init__(self, axis: int) -> None:
        super().__init__()
        self.axis = axis

    def forward(self, data: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        axis = self.axis % data.dim()
        n = data.shape[axis]
        idx = indices.long()
        idx = torch.where(idx < 0, idx + n, idx)
        out = data.index_select(axis, idx.reshape(-1))
        return out.reshape((*data.shape[:axis], *idx.shape, *data.shape[axis + 1:]))


@register("gather")
def _gather(p: Any, ctx: BuildContext) -> nn.Module:
    return Gather(int(p.axis))


class GatherAlongAxis(nn.Module):
    """``gatherAlongAxis``: ``torch.gather`` semantics (negative indices allowed)."""

    def __init__(self, axis: int) -> None:
        super().__init__()
        self.axis = axis

    def forward(self, data: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        idx = indices.long()
        idx = torch.where(idx < 0, idx + data.shape[self.axis], idx)
        return torch.gather(data, self.axis, idx)


@register("gatherAlongAxis")
def _gather_along_axis(p: Any, ctx: BuildContext) -> nn.Module:
    return GatherAlongAxis(int(p.axis))


class Stack(nn.Module):
    """``stack``: join inputs along a new axis."""

    def __init__(self, axis: int) -> None:
        super().__init__()
        self.axis = axis

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return torch.stack(xs, dim=self.axis)


@register("stack")
def _stack(p: Any, ctx: BuildContext) -> nn.Module:
    return Stack(int(p.axis))


class Tile(nn.Module):
    """``tile``: repeat the input ``reps`` times per axis."""

    def __init__(self, reps: list[int]) -> None:
        super().__init__()
        self.reps = reps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.repeat(self.reps) if len(self.reps) == x.dim() else x.repeat(
            [1] * (x.dim() - len(self.reps)) + self.reps)


@register("tile")
def _tile(p: Any, ctx: BuildContext) -> nn.Module:
    return Tile(int_list(p.reps))


class Reverse(nn.Module):
    """``reverse``: flip the axes whose ``reverseDim`` is true."""

    def __init__(self, dims: list[int]) -> None:
        super().__init__()
        self.dims = dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flip(x, self.dims) if self.dims else x


@register("reverse")
def _reverse(p: Any, ctx: BuildContext) -> nn.Module:
    return Reverse([i for i, v in enumerate(p.reverseDim) if v])
