"""Layers that scan, reverse, window or repeat along one axis.

cumSum, reverseSeq, slidingWindows (ND layers) and sequenceRepeat (the legacy sequence axis).

ND blobs are held as ``[N, *coreml_shape]`` (Core ML axis ``a`` is held dim ``nd_dim(a, x)``);
legacy blobs as ``[N, C, H, W]`` or ``[N, Seq, C, H, W]`` (see :mod:`mlupdate.layers`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mlupdate.errors import SpecError
from mlupdate.layers import BuildContext, register
from mlupdate.layers.common import as_sequence, check_size, nd_dim, nd_rank


def _scan(x: torch.Tensor, dim: int, exclusive: bool, reverse: bool) -> torch.Tensor:
    """Cumulative sum of ``x`` along held ``dim``, exclusive (shifted by one) and/or from the end."""
    y = x.flip(dim) if reverse else x
    size = int(y.shape[dim])
    if not exclusive:
        s = torch.cumsum(y, dim)
    elif size <= 1:
        s = torch.zeros_like(y)
    else:  # a shift keeps the sums exact (x - x can be NaN for infinite values)
        s = torch.cat([torch.zeros_like(y.narrow(dim, 0, 1)), torch.cumsum(y.narrow(dim, 0, size - 1), dim)], dim)
    return s.flip(dim) if reverse else s


class CumSum(nn.Module):
    """``cumSum``: cumulative sum along ``axis``; ``excludeFinalSum`` shifts it, ``reverse`` runs from the end.

    With a second input, that input's value (per example) is the axis and the parameter is ignored. The
    sum is then computed along every axis and each example picks its own, so the layer stays batched
    and exports to ONNX.
    """

    def __init__(self, axis: int, exclusive: bool, reverse: bool) -> None:
        super().__init__()
        self.axis, self.exclusive, self.reverse = axis, exclusive, reverse

    def forward(self, x: torch.Tensor, axis: torch.Tensor | None = None) -> torch.Tensor:
        if axis is None:
            return _scan(x, nd_dim(self.axis, x), self.exclusive, self.reverse)
        rank = nd_rank(x)
        a = axis.reshape(axis.shape[0], -1)[:, 0].long()
        if not torch.jit.is_tracing() and bool(((a < -rank) | (a >= rank)).any()):
            raise IndexError(f"axis input {a.tolist()} is out of range for a rank-{rank} input "
                             f"(allowed: {-rank} to {rank - 1})")
        a = torch.where(a < 0, a + rank, a).reshape((-1,) + (1,) * rank)
        out = torch.zeros_like(x)
        for k in range(rank):
            out = torch.where(a == k, _scan(x, k + 1, self.exclusive, self.reverse), out)
        return out


@register("cumSum")
def _cumsum(p: Any, ctx: BuildContext) -> nn.Module:
    return CumSum(int(p.axis), bool(p.excludeFinalSum), bool(p.reverse))


class ReverseSeq(nn.Module):
    """``reverseSeq``: along ``batchAxis`` slice ``b``, reverse the first ``lengths[b]`` entries of ``sequenceAxis``.

    Lengths are clamped to ``[0, sequence length]``; positions past a length keep their place.
    """

    def __init__(self, batch_axis: int, seq_axis: int) -> None:
        super().__init__()
        self.batch_axis, self.seq_axis = batch_axis, seq_axis

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        bd, sd = nd_dim(self.batch_axis, x), nd_dim(self.seq_axis, x)
        if bd == sd:
            raise ValueError(f"batchAxis {self.batch_axis} and sequenceAxis {self.seq_axis} are the same axis")
        b, s = int(x.shape[bd]), int(x.shape[sd])
        lens = lengths.reshape(lengths.shape[0], -1)
        if int(lens.shape[1]) != b:
            raise ValueError(f"seq_lengths has {int(lens.shape[1])} values but the data has {b} entries "
                             f"along batchAxis {self.batch_axis}")
        lens = lens.long().clamp(0, s).unsqueeze(-1)  # [N, B, 1]
        pos = torch.arange(s, device=x.device)
        idx = torch.where(pos < lens, lens - 1 - pos, pos)  # [N, B, S]
        if bd > sd:
            idx = idx.transpose(1, 2)
        shape = [1] * x.dim()
        shape[0], shape[bd], shape[sd] = -1, b, s
        return torch.gather(x, sd, idx.reshape(shape).expand(x.shape))


@register("reverseSeq")
def _reverse_seq(p: Any, ctx: BuildContext) -> nn.Module:
    return ReverseSeq(int(p.batchAxis), int(p.sequenceAxis))


class SlidingWindows(nn.Module):
    """``slidingWindows``: windows of ``size`` every ``step`` along ``axis``; ``[.., L, ..] -> [.., M, W, ..]``.

    ``M = (L - W) // step + 1``.
    """

    def __init__(self, axis: int, size: int, step: int) -> None:
        super().__init__()
        self.axis, self.size, self.step = axis, size, step

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = nd_dim(self.axis, x)
        if self.size > int(x.shape[d]):
            raise ValueError(f"windowSize {self.size} is larger than the input's length {int(x.shape[d])} "
                             f"along axis {self.axis}")
        n = x.dim()  # unfold puts the window axis last; move it right after the window-count axis
        return x.unfold(d, self.size, self.step).permute(*range(d + 1), n, *range(d + 1, n))


@register("slidingWindows")
def _sliding_windows(p: Any, ctx: BuildContext) -> nn.Module:
    if int(p.windowSize) < 1:
        raise SpecError(f"Layer '{ctx.name}' (slidingWindows) has windowSize 0; set it to at least 1.")
    if int(p.step) < 1:
        raise SpecError(f"Layer '{ctx.name}' (slidingWindows) has step 0; set it to at least 1.")
    return SlidingWindows(int(p.axis), int(p.windowSize), int(p.step))


class SequenceRepeat(nn.Module):
    """``sequenceRepeat``: the whole sequence (axis -5) repeated ``n`` times, ``[Seq, ..] -> [n * Seq, ..]``.

    Legacy blobs come out as ``[N, n * Seq, C, H, W]`` (``[N, C, H, W]`` when that is a single step).
    In ND networks the input must have rank 5 or more and Core ML axis -5 is repeated.
    """

    def __init__(self, n: int, nd: bool) -> None:
        super().__init__()
        self.n, self.nd = n, nd

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_size(x[0].numel() * self.n, f"{self.n} repeats")
        if self.nd:
            if nd_rank(x) < 5:
                raise ValueError(f"sequenceRepeat needs an input of rank 5 or more, got rank {nd_rank(x)}")
            reps = [1] * x.dim()
            reps[nd_dim(-5, x)] = self.n
            return x.repeat(reps)
        if x.dim() not in (4, 5):
            raise ValueError(f"sequenceRepeat expects a legacy blob [Seq, B, C, H, W], got held shape {list(x.shape)}")
        if self.n == 1:
            return x
        return as_sequence(x).repeat(1, self.n, 1, 1, 1)


@register("sequenceRepeat")
def _sequence_repeat(p: Any, ctx: BuildContext) -> nn.Module:
    return SequenceRepeat(int(p.nRepetitions) or 1, ctx.nd)
