"""gather, scatter and their variants (MIL scatter_gather.py).

Indices: up to iOS16 a negative index counts from the end. From iOS17 only ``0 <= i < size`` is in range and
Core ML leaves out-of-range indices undefined unless ``validate_indices`` asks it to raise. mlupdate raises (an
error naming the op) on any out-of-range index when the kernel runs in torch, whatever ``validate_indices``
says; in an ONNX export, which cannot raise, a negative index counts from the end (docs/differences.md).
Scatter modes combine with ``mlupdate.layers.indexing.scatter_into``, the neural-network layers' kernel.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from mlupdate.layers.indexing import scatter_into
from mlupdate.ops import OpContext
from mlupdate.ops.tensor import axis_of, flag, kernel, op_error

_MODES = ("update", "add", "sub", "mul", "div", "max", "min")


def _prod(dims: Any) -> int:
    return int(np.prod([int(d) for d in dims], dtype=np.int64))


def _index(ctx: OpContext, indices: torch.Tensor, size: int | torch.Tensor) -> torch.Tensor:
    """``indices`` as int64 positions in ``[0, size)``; out-of-range ones raise (torch) or wrap (ONNX)."""
    idx = indices.long()
    if not torch.jit.is_tracing():
        low = 0 if ctx.opset >= 17 else -size
        bad = (idx < low) | (idx >= size)
        if bool(bad.any()):
            value = int(idx[bad].reshape(-1)[0])
            raise op_error(ctx, f"index {value} is out of range for size {int(size)}"
                                + (" (from iOS17 negative indices are out of range)" if value < 0 else ""))
    return torch.where(idx < 0, idx + size, idx)


def _batch_dims(ctx: OpContext, limit: int) -> int:
    bd = int(flag(ctx, "batch_dims", 0)) if ctx.opset >= 16 else 0
    if bd < 0:
        bd += limit + 1
    if not 0 <= bd <= limit:
        raise op_error(ctx, f"batch_dims {bd} is out of range")
    return bd


def _mode(ctx: OpContext) -> str:
    mode = str(flag(ctx, "mode", "add")).lower()
    if mode not in _MODES:
        raise op_error(ctx, f"mode '{mode}' is not one of {', '.join(_MODES)}")
    return mode.upper()


@kernel("gather")
@kernel("gather", since=16)
@kernel("gather", since=17)
def _gather(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
    """``out[b, p, i, q] = x[b, p, indices[b, i], q]`` with ``b`` the ``batch_dims`` leading axes."""
    x, indices = inputs["x"], inputs["indices"]
    axis = axis_of(ctx, x.dim(), "axis", 0)
    bd = _batch_dims(ctx, min(axis, indices.dim()))
    dims, ndims = [int(d) for d in x.shape], [int(d) for d in indices.shape]
    if dims[:bd] != ndims[:bd]:
        raise op_error(ctx, f"the first {bd} (batch_dims) axes of x {dims} and indices {ndims} differ")
    idx = _index(ctx, indices, dims[axis])
    if bd == 0:  # an ONNX Gather (embedding lookups)
        return x.index_select(axis, idx.reshape(-1)).reshape(dims[:axis] + ndims + dims[axis + 1:])
    b, p, a, q, i = _prod(dims[:bd]), _prod(dims[bd:axis]), dims[axis], _prod(dims[axis + 1:]), _prod(ndims[bd:])
    flat = idx.reshape(b, 1, i, 1).expand(b, p, i, q)
    out = torch.gather(x.reshape(b, p, a, q), 2, flat)
    return out.reshape(dims[:axis] + ndims[bd:] + dims[axis + 1:])


@kernel("gather_along_axis")
@kernel("gather_along_axis", since=17)
def _gather_along_axis(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
    x, indices = inputs["x"], inputs["indices"]
    axis = axis_of(ctx, x.dim(), "axis", 0)
    if indices.dim() != x.dim():
        raise op_error(ctx, f"indices {list(indices.shape)} must have the rank of x {list(x.shape)}")
    return torch.gather(x, axis, _index(ctx, indices, int(x.shape[axis])))


def _nd_offsets(ctx: OpContext, indices: torch.Tensor, lead: list[int], bd: int) -> torch.Tensor:
    """Multi-indices ``[B, I, k]`` into the ``k`` axes ``lead`` as flat offsets ``[B, I]``."""
    k = len(lead)
    idx = indices.reshape(_prod(indices.shape[:bd]), -1, k)
    if k == 0:
        return idx.long().sum(-1)
    cols = [_index(ctx, idx[..., j], lead[j]) for j in range(k)]
    strides = [_prod(lead[j + 1:]) for j in range(k)]
    return sum(c * s for c, s in zip(cols, strides, strict=True))


@kernel("gather_nd")
@kernel("gather_nd", since=16)
@kernel("gather_nd", since=17)
def _gather_nd(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
    x, indices = inputs["x"], inputs["indices"]
    dims, ndims = [int(d) for d in x.shape], [int(d) for d in indices.shape]
    bd = _batch_dims(ctx, min(x.dim(), indices.dim() - 1))
    k = ndims[-1]
    if bd + k > len(dims) or dims[:bd] != ndims[:bd]:
        raise op_error(ctx, f"indices {ndims} do not address x {dims} with batch_dims {bd}")
    offsets = _nd_offsets(ctx, indices, dims[bd:bd + k], bd)  # [B, I]
    b, m, r = _prod(dims[:bd]), _prod(dims[bd:bd + k]), _prod(dims[bd + k:])
    count = int(offsets.shape[1])
    out = torch.gather(x.reshape(b, m, r), 1, offsets.reshape(b, count, 1).expand(b, count, r))
    return out.reshape(ndims[:-1] + dims[bd + k:])


@kernel("scatter")
@kernel("scatter", since=17)
def _scatter(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
    """Indices of any rank, as tf.scatter_* (coremltools' op tests use them).

    ``updates`` has the shape ``data.shape[:axis] + indices.shape + data.shape[axis + 1:]``.
    """
    data, indices, updates = inputs["data"], inputs["indices"], inputs["updates"]
    axis = axis_of(ctx, data.dim(), "axis", 0)
    dims = [int(d) for d in data.shape]
    want = dims[:axis] + [int(d) for d in indices.shape] + dims[axis + 1:]
    if [int(d) for d in updates.shape] != want:
        raise op_error(ctx, f"updates {list(updates.shape)} must have the shape {want}")
    count = int(indices.numel())
    updates = updates.reshape(dims[:axis] + [count] + dims[axis + 1:])
    shape = [1] * data.dim()
    shape[axis] = count
    idx = _index(ctx, indices.reshape(-1), dims[axis]).reshape(shape).expand(updates.shape)
    return scatter_into(data, axis, idx, updates, _mode(ctx))


@kernel("scatter_along_axis")
@kernel("scatter_along_axis", since=17)
def _scatter_along_axis(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
    data, indices, updates = inputs["data"], inputs["indices"], inputs["updates"]
    axis = axis_of(ctx, data.dim(), "axis", 0)
    if indices.shape != updates.shape or indices.dim() != data.dim():
        raise op_error(ctx, f"indices {list(indices.shape)} and updates {list(updates.shape)} must have one shape "
                            f"of the rank of data {list(data.shape)}")
    return scatter_into(data, axis, _index(ctx, indices, int(data.shape[axis])), updates, _mode(ctx))


@kernel("scatter_nd")
@kernel("scatter_nd", since=17)
def _scatter_nd(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
    data, indices, updates = inputs["data"], inputs["indices"], inputs["updates"]
    dims, ndims = [int(d) for d in data.shape], [int(d) for d in indices.shape]
    k = ndims[-1]
    if k > len(dims) or [int(d) for d in updates.shape] != ndims[:-1] + dims[k:]:
        raise op_error(ctx, f"updates {list(updates.shape)} must have the shape {ndims[:-1] + dims[k:]}")
    offsets = _nd_offsets(ctx, indices, dims[:k], 0).reshape(-1)  # [L]
    m, r = _prod(dims[:k]), _prod(dims[k:])
    count = int(offsets.shape[0])
    idx = offsets.reshape(count, 1).expand(count, r)
    out = scatter_into(data.reshape(m, r), 0, idx, updates.reshape(count, r), _mode(ctx))
    return out.reshape(dims)
