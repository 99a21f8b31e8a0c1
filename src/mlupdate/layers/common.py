"""Helpers shared by the layer families: folding leading axes, axis lists, 1-D resampling grids, size limits."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch

from mlupdate.spec.limits import MAX_ARRAY_ELEMENTS_ENV, max_array_elements


def fold(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, keep: int = 3) -> torch.Tensor:
    """Apply ``fn`` to ``x`` seen as ``[N, *last keep dims]`` and restore the leading axes.

    Core ML's spatial layers treat every axis before ``C`` (axis -3) as batch; torch's 2-D
    operators want exactly ``[N, C, H, W]``. Unit leading axes (the usual ``[N, 1, C, H, W]`` of a
    converted network) are squeezed and restored, which exports to ONNX without shape arithmetic.
    """
    if x.dim() == keep + 1:
        return fn(x)
    lead = [int(d) for d in x.shape[1:-keep]]  # Core ML axes: static sizes
    if all(d == 1 for d in lead):
        y = fn(x[(slice(None), *(0,) * len(lead))])
        for _ in lead:
            y = y.unsqueeze(1)
        return y
    y = fn(x.reshape((-1, *x.shape[-keep:])))
    return y.reshape((-1, *lead, *y.shape[1:]))


def float_list(values: Sequence[float]) -> list[float]:
    """Protobuf repeated floats as a plain list."""
    return [float(v) for v in values]


def int_list(values: Sequence[int]) -> list[int]:
    """Protobuf repeated ints as a plain list."""
    return [int(v) for v in values]


def linear_along(x: torch.Tensor, dim: int, grid: np.ndarray) -> torch.Tensor:
    """Sample ``x`` along ``dim`` at fractional positions ``grid`` by linear interpolation.

    Positions are clamped to ``[0, size - 1]``. The grid is fixed when the graph is built or
    traced, so the result exports to ONNX as two gathers and a weighted sum.
    """
    size = int(x.shape[dim])
    g = np.clip(np.asarray(grid, dtype=np.float64), 0.0, size - 1)
    lo = np.floor(g).astype(np.int64)
    hi = np.minimum(lo + 1, size - 1)
    w = (g - lo).astype(np.float32)
    shape = [1] * x.dim()
    shape[dim] = len(g)
    wt = torch.from_numpy(w).reshape(shape).to(device=x.device, dtype=x.dtype)
    a = x.index_select(dim, torch.from_numpy(lo).to(x.device))
    b = x.index_select(dim, torch.from_numpy(hi).to(x.device))
    return a + (b - a) * wt


def nearest_along(x: torch.Tensor, dim: int, index: np.ndarray) -> torch.Tensor:
    """Pick whole slices of ``x`` along ``dim`` at integer positions ``index``."""
    return x.index_select(dim, torch.from_numpy(np.asarray(index, dtype=np.int64)).to(x.device))


def nd_rank(x: torch.Tensor) -> int:
    """Core ML rank of a held ND blob (the graph's leading example axis excluded)."""
    return x.dim() - 1


def nd_dim(axis: int, x: torch.Tensor) -> int:
    """Held dim of Core ML axis ``axis`` (negative counts from the end) of the held ND blob ``x``.

    Raises:
        IndexError: If ``axis`` is outside ``[-rank, rank)``; the graph reports it with the layer's name.
    """
    rank = nd_rank(x)
    if not -rank <= axis < rank:
        raise IndexError(f"axis {axis} is out of range for a rank-{rank} input (allowed: {-rank} to {rank - 1})")
    return axis + 1 if axis >= 0 else axis + rank + 1


def nd_dims(axes: Sequence[int], x: torch.Tensor) -> tuple[int, ...]:
    """Sorted, de-duplicated held dims of Core ML ``axes`` of ``x``."""
    return tuple(sorted({nd_dim(a, x) for a in axes}))


def as_sequence(x: torch.Tensor) -> torch.Tensor:
    """A held legacy blob as ``[N, Seq, C, H, W]`` (``Seq == 1`` for a rank-4 blob)."""
    return x.unsqueeze(1) if x.dim() == 4 else x


def align(xs: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """Held blobs of different ranks made broadcastable: unit axes go after the example axis.

    Core ML broadcasts by aligning trailing axes of the Core ML shapes; torch aligns trailing
    axes of the held tensors, which would pair one blob's example axis with another's Core ML axis.
    """
    rank = max(x.dim() for x in xs)
    out = []
    for x in xs:
        for _ in range(rank - x.dim()):
            x = x.unsqueeze(1)
        out.append(x)
    return tuple(out)


def check_size(shape: Sequence[int] | int, what: str) -> None:
    """Refuse, before allocating it, a result of more values per example than the array limit.

    Args:
        shape: The per-example shape (or the value count) the layer is about to produce; under ONNX
            tracing (the load-time run on the sample inputs) counts may be 0-d tensors.
        what: Names the result in the message.

    Raises:
        ValueError: Over ``max_array_elements()`` (the graph reports it as the layer's error).
    """
    count = int(shape) if isinstance(shape, int | torch.Tensor) else math.prod(int(d) for d in shape)
    limit = max_array_elements()
    if count > limit:
        raise ValueError(f"{what} would hold {count} values per example, more than the limit of {limit} "
                         f"(set {MAX_ARRAY_ELEMENTS_ENV} to allow more)")
