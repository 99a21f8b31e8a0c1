"""Layers that select or combine tensors.

concat, concatND, split, splitND, slice, sliceStatic, sliceBySize, gather, gatherAlongAxis,
stack, tile, reverse.

Index inputs arrive as float blobs (Core ML blobs are float) and are cast to integers. Axes are
Core ML axes; every example (the graph's leading axis) uses its own indices.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from mlupdate.errors import SpecError
from mlupdate.layers import BuildContext, register
from mlupdate.layers.common import align, as_sequence, check_size, int_list, nd_dim, nd_rank


class Concat(nn.Module):
    """``concat`` (legacy: channels, axis -3) and ``concatND`` (a Core ML axis).

    With ``interleave`` (concatND), output slice ``k * n + i`` along the axis is slice ``k`` of input ``i``
    (the proto's ``output[i::n] = in_i``); the inputs must then be equally long on that axis.
    """

    def __init__(self, axis: int, interleave: bool = False) -> None:
        super().__init__()
        self.axis, self.interleave = axis, interleave

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        xs = align(xs)
        dim = nd_dim(self.axis, xs[0])
        if not self.interleave or len(xs) == 1:
            return torch.cat(xs, dim=dim)
        sizes = [int(x.shape[dim]) for x in xs]
        if len(set(sizes)) != 1:
            raise ValueError(f"interleaved concatenation needs inputs of one size along axis {self.axis}; "
                             f"got sizes {sizes}")
        y = torch.stack(xs, dim=dim + 1)  # [.., L, n, ..]: slice k of every input, in input order
        return y.flatten(dim, dim + 1)


class SequenceConcat(nn.Module):
    """``concat`` with ``sequenceConcat`` (legacy): join along the sequence axis."""

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return torch.cat([as_sequence(x) for x in xs], dim=1)


@register("concat")
def _concat(p: Any, ctx: BuildContext) -> nn.Module:
    return SequenceConcat() if p.sequenceConcat else Concat(-3)


@register("concatND")
def _concat_nd(p: Any, ctx: BuildContext) -> nn.Module:
    return Concat(int(p.axis), bool(p.interleave))


class Split(nn.Module):
    """``split`` (equal parts along axis -3) and ``splitND`` (given sizes, or ``n`` parts).

    ``n`` parts of an axis of size ``L``: the first ``L % n`` have ``L // n + 1`` elements, the others
    ``L // n`` (7 in 3 parts: 3, 2, 2), as ``numpy.array_split``, which coremltools' splitND test expects.
    """

    def __init__(self, axis: int, n: int, sizes: list[int]) -> None:
        super().__init__()
        self.axis, self.n, self.sizes = axis, n, sizes

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        dim = nd_dim(self.axis, x)
        length = int(x.shape[dim])
        sizes = self.sizes
        if not sizes:
            if self.n > length:
                raise ValueError(f"{self.n} parts of an axis of size {length} would leave empty parts")
            part, extra = divmod(length, self.n)
            sizes = [part + (i < extra) for i in range(self.n)]
        if sum(sizes) != length or min(sizes) <= 0:
            raise ValueError(f"split sizes {sizes} do not add up to the axis size {length}")
        return tuple(torch.split(x, sizes, dim=dim))


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
    """``sliceStatic``: numpy-style slicing per Core ML axis with begin/end masks, strides and squeeze masks.

    A result whose every axis is squeezed is ``[1]``.
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
        if len(self.begin) != nd_rank(x):
            raise ValueError(f"{len(self.begin)} begin ids for a rank-{nd_rank(x)} input")
        squeeze = []
        for d in range(len(self.begin)):
            b = None if self.bmask[d] else self.begin[d]
            e = None if self.emask[d] else self.end[d]
            n = int(x.shape[d + 1])
            idx = range(*slice(b, e, self.strides[d]).indices(n))
            if idx != range(n):
                x = take(x, d + 1, idx)
            if self.squeeze[d]:
                squeeze.append(d + 1)
        keep = [int(x.shape[d]) for d in range(1, x.dim()) if d not in squeeze] or [1]
        return x.reshape((x.shape[0], *keep)) if squeeze else x


@register("sliceStatic")
def _slice_static(p: Any, ctx: BuildContext) -> nn.Module:
    if any(s == 0 for s in p.strides):
        raise SpecError(f"SliceStatic layer '{ctx.name}' has a stride of 0; strides must be non-zero.")
    return SliceStatic(p)


class SliceBySize(nn.Module):
    """``sliceBySize``: ``x[.., begin:begin + size, ..]`` along ``axis``, ``begin`` from the second input."""

    def __init__(self, axis: int, size: int) -> None:
        super().__init__()
        self.axis, self.size = axis, size

    def forward(self, x: torch.Tensor, begin: torch.Tensor) -> torch.Tensor:
        dim = nd_dim(self.axis, x)
        n = x.shape[dim]
        start = begin.reshape(begin.shape[0], -1)[:, :1].long()  # one begin per example
        start = torch.where(start < 0, start + n, start)
        idx = start + torch.arange(self.size, dtype=torch.long, device=x.device)  # [N, size]
        moved = x.movedim(dim, 1)
        idx = idx.reshape((idx.shape[0], self.size) + (1,) * (moved.dim() - 2)).expand(
            (moved.shape[0], self.size, *moved.shape[2:]))
        return torch.gather(moved, 1, idx).movedim(1, dim)


@register("sliceBySize")
def _slice_by_size(p: Any, ctx: BuildContext) -> nn.Module:
    return SliceBySize(int(p.axis), int(p.size))


class Gather(nn.Module):
    """``gather``: each example's ``data`` indexed along ``axis`` by its ``indices`` (negative allowed).

    Core ML shape: ``data.shape[:axis] + indices.shape + data.shape[axis + 1:]``.
    """

    def __init__(self, axis: int) -> None:
        super().__init__()
        self.axis = axis

    def forward(self, data: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        dim = nd_dim(self.axis, data)
        pre, length, post = data.shape[1:dim], data.shape[dim], data.shape[dim + 1:]
        n, p, q = data.shape[0], math.prod(pre), math.prod(post)
        idx = indices.long()
        idx = torch.where(idx < 0, idx + length, idx)
        m = math.prod(idx.shape[1:])
        flat = idx.reshape(idx.shape[0], 1, m, 1).expand(n, p, m, q)
        out = torch.gather(data.reshape(n, p, length, q), 2, flat)
        return out.reshape((n, *pre, *idx.shape[1:], *post))


@register("gather")
def _gather(p: Any, ctx: BuildContext) -> nn.Module:
    return Gather(int(p.axis))


class GatherAlongAxis(nn.Module):
    """``gatherAlongAxis``: ``torch.gather`` semantics per example (negative indices allowed)."""

    def __init__(self, axis: int) -> None:
        super().__init__()
        self.axis = axis

    def forward(self, data: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        dim = nd_dim(self.axis, data)
        idx = indices.long()
        idx = torch.where(idx < 0, idx + data.shape[dim], idx)
        return torch.gather(data, dim, idx)


@register("gatherAlongAxis")
def _gather_along_axis(p: Any, ctx: BuildContext) -> nn.Module:
    return GatherAlongAxis(int(p.axis))


class Stack(nn.Module):
    """``stack``: join inputs along a new Core ML axis."""

    def __init__(self, axis: int) -> None:
        super().__init__()
        self.axis = axis

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return torch.stack(xs, dim=self.axis + 1 if self.axis >= 0 else self.axis)


@register("stack")
def _stack(p: Any, ctx: BuildContext) -> nn.Module:
    return Stack(int(p.axis))


class Tile(nn.Module):
    """``tile``: repeat the input ``reps`` times per Core ML axis.

    Fewer reps than the input's rank are made up with leading ones (the proto's ``reps = (6)`` on a rank-3
    input is ``(1, 1, 6)``, as ``numpy.tile``); more are refused.
    """

    def __init__(self, reps: list[int]) -> None:
        super().__init__()
        self.reps = reps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rank = nd_rank(x)
        if len(self.reps) > rank:
            raise ValueError(f"{len(self.reps)} reps for a rank-{rank} input; give at most one rep per axis")
        reps = [1] * (rank - len(self.reps)) + self.reps
        check_size([int(d) * r for d, r in zip(x.shape[1:], reps, strict=True)], f"tiling by {self.reps}")
        return x.repeat([1, *reps])


class DynamicTile(nn.Module):
    """``tile`` with the reps in a second input (the output shape follows the values)."""

    per_example = True
    exportable = False

    def forward(self, x: torch.Tensor, reps: torch.Tensor) -> torch.Tensor:
        return Tile([int(r) for r in reps[0].reshape(-1).tolist()])(x)


@register("tile")
def _tile(p: Any, ctx: BuildContext) -> nn.Module:
    if len(ctx.inputs) > 1:
        return DynamicTile()
    reps = int_list(p.reps)
    if not reps or any(r <= 0 for r in reps):
        raise SpecError(f"Tile layer '{ctx.name}' has reps {reps}; give one positive rep per axis.")
    return Tile(reps)


class Reverse(nn.Module):
    """``reverse``: flip the Core ML axes whose ``reverseDim`` is true."""

    def __init__(self, dims: list[int]) -> None:
        super().__init__()
        self.dims = dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flip(x, self.dims) if self.dims else x


@register("reverse")
def _reverse(p: Any, ctx: BuildContext) -> nn.Module:
    return Reverse([i + 1 for i, v in enumerate(p.reverseDim) if v])
