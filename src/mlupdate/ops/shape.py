"""reshape, transpose, slice_*, squeeze, ... (MIL tensor_transformation.py).

Every op here takes its shapes, axes and slice bounds as compile-time constants and exports to ONNX, except
``reshape`` and ``slice_by_index`` / ``slice_by_size`` / ``slice_update`` with bounds computed at run time
(torch only: the result's shape depends on them).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from mlupdate.layers.resize import ReorganizeData
from mlupdate.ops import OpContext
from mlupdate.ops.tensor import axis_of, flag, ints_of, kernel, op_error, required


def _axes(ctx: OpContext, rank: int, param: str, default: list[int] | None) -> list[int] | None:
    value = ctx.const(param, None)
    if value is None:
        return default
    axes = [int(a) for a in np.asarray(value).reshape(-1)]
    if any(not -rank <= a < rank for a in axes):
        raise op_error(ctx, f"{param} {axes} are out of range for a rank-{rank} tensor")
    return sorted({a % rank for a in axes})


@kernel("reshape")
def _reshape(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
    x = inputs["x"]
    shape = ints_of(ctx, inputs, "shape")
    if len(shape) == x.dim():
        shape = [int(x.shape[i]) if s == 0 else s for i, s in enumerate(shape)]
    if shape.count(-1) > 1 or any(s < -1 for s in shape):
        raise op_error(ctx, f"shape {shape} may hold one -1 and otherwise non-negative sizes")
    known, count = int(np.prod([s for s in shape if s != -1], dtype=np.int64)), int(x.numel())
    if -1 in shape:
        if not known or count % known:
            raise op_error(ctx, f"cannot reshape {[int(d) for d in x.shape]} to {shape}")
        shape[shape.index(-1)] = count // known
    elif known != count:
        raise op_error(ctx, f"cannot reshape {[int(d) for d in x.shape]} ({count} values) to {shape}")
    return x.reshape(shape)


@kernel("reshape_like", since=16)
def _reshape_like(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
    refs = list(inputs["ref_tensors"])
    begins, ends, masks = (required(ctx, p, len(refs)).reshape(-1) for p in ("begins", "ends", "end_masks"))
    shape: list[int] = []
    for ref, b, e, m in zip(refs, begins, ends, masks, strict=True):
        dims = [int(d) for d in ref.shape]
        shape += dims[int(b):] if bool(m) else dims[int(b):int(e)]
    if int(np.prod(shape, dtype=np.int64)) != inputs["x"].numel():
        raise op_error(ctx, f"cannot reshape {list(inputs['x'].shape)} to {shape}")
    return inputs["x"].reshape(shape)


@kernel("expand_dims")
def _expand_dims(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
    x = inputs["x"]
    axes = [int(a) for a in required(ctx, "axes").reshape(-1)]
    rank = x.dim() + len(axes)
    if any(not -rank <= a < rank for a in axes):
        raise op_error(ctx, f"axes {axes} are out of range for the rank-{rank} result")
    shape = [int(d) for d in x.shape]
    for a in sorted(a % rank for a in axes):
        shape.insert(a, 1)
    return x.reshape(shape)


@kernel("squeeze")
def _squeeze(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
    x = inputs["x"]
    axes = _axes(ctx, x.dim(), "axes", list(range(x.dim())))
    shape = [int(d) for i, d in enumerate(x.shape) if not (i in axes and d == 1)]
    return x.reshape(shape)


@kernel("transpose")
def _transpose(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
    x = inputs["x"]
    perm = [int(p) % max(x.dim(), 1) for p in required(ctx, "perm", x.dim()).reshape(-1)]
    if sorted(perm) != list(range(x.dim())):
        raise op_error(ctx, f"perm {perm} is not a permutation of the {x.dim()} axes")
    return x.permute(perm)


@kernel("reverse")
def _reverse(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
    x = inputs["x"]
    axes = _axes(ctx, x.dim(), "axes", list(range(x.dim())))
    return torch.flip(x, axes) if axes else x.clone()


@kernel("reverse_sequence")
def _reverse_sequence(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
    x, lengths = inputs["x"], inputs["lengths"].long().reshape(-1)
    sd, bd = axis_of(ctx, x.dim(), "seq_axis", 0), axis_of(ctx, x.dim(), "batch_axis", 0)
    if sd == bd:
        raise op_error(ctx, f"seq_axis and batch_axis are the same axis {sd}")
    b, s = int(x.shape[bd]), int(x.shape[sd])
    if int(lengths.shape[0]) != b:
        raise op_error(ctx, f"lengths has {int(lengths.shape[0])} values for {b} entries along batch_axis {bd}")
    lens = lengths.clamp(0, s)[:, None]
    pos = torch.arange(s, device=x.device)
    idx = torch.where(pos < lens, lens - 1 - pos, pos)  # [B, S]
    shape = [1] * x.dim()
    shape[bd], shape[sd] = b, s
    idx = (idx if bd < sd else idx.t()).reshape(shape).expand(x.shape)
    return torch.gather(x, sd, idx)


def _slice_index(ctx: OpContext, inputs: dict[str, Any], x: torch.Tensor) -> tuple[list[np.ndarray], list[int]]:
    """Per axis, the positions ``slice_by_index`` keeps (Python slice rules), and the axes it squeezes."""
    rank = x.dim()
    begin, end = ints_of(ctx, inputs, "begin"), ints_of(ctx, inputs, "end")
    stride = ints_of(ctx, inputs, "stride") if "stride" in inputs or "stride" in ctx.consts else [1] * rank

    def mask(param: str) -> list[bool]:
        value = ctx.const(param, None)
        return [False] * rank if value is None else [bool(v) for v in np.asarray(value).reshape(-1)]

    begin_mask, end_mask, squeeze_mask = mask("begin_mask"), mask("end_mask"), mask("squeeze_mask")
    if not all(len(v) == rank for v in (begin, end, stride, begin_mask, end_mask, squeeze_mask)):
        raise op_error(ctx, f"begin, end, stride and the masks must have one entry per axis of the rank-{rank} "
                            "input")
    positions = []
    for i in range(rank):
        size = int(x.shape[i])
        if stride[i] == 0:
            raise op_error(ctx, f"stride of axis {i} is 0")
        if squeeze_mask[i]:
            at = begin[i] + size if begin[i] < 0 else begin[i]
            if not 0 <= at < size:
                raise op_error(ctx, f"begin {begin[i]} of the squeezed axis {i} is outside its size {size}")
            positions.append(np.array([at]))
            continue
        sl = slice(None if begin_mask[i] else begin[i], None if end_mask[i] else end[i], stride[i])
        positions.append(np.arange(size)[sl])
    return positions, [i for i in range(rank) if squeeze_mask[i]]


def _take(x: torch.Tensor, positions: list[np.ndarray]) -> torch.Tensor:
    for dim, pos in enumerate(positions):
        size = int(x.shape[dim])
        if len(pos) == size and (pos == np.arange(size)).all():
            continue
        step = int(pos[1] - pos[0]) if len(pos) > 1 else 1
        if len(pos) and step > 0 and (np.diff(pos) == step).all():
            x = x[(slice(None),) * dim + (slice(int(pos[0]), int(pos[-1]) + 1, step),)]
        else:
            x = x.index_select(dim, torch.from_numpy(pos.astype(np.int64)).to(x.device))
    return x


@kernel("slice_by_index")
def _slice_by_index(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
    x = inputs["x"]
    positions, squeeze = _slice_index(ctx, inputs, x)
    out = _take(x, positions)
    return out.reshape([int(d) for i, d in enumerate(out.shape) if i not in squeeze])


@kernel("slice_by_size")
def _slice_by_size(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
    x = inputs["x"]
    begin, size = ints_of(ctx, inputs, "begin"), ints_of(ctx, inputs, "size")
    if len(begin) != x.dim() or len(size) != x.dim():
        raise op_error(ctx, f"begin {begin} and size {size} must have one entry per axis of the rank-{x.dim()} "
                            "input")
    positions = []
    for i, (b, n) in enumerate(zip(begin, size, strict=True)):
        dim = int(x.shape[i])
        b = b + dim if b < 0 else b
        n = dim - b if n == -1 else n
        if b < 0 or n < 0 or b + n > dim:
            raise op_error(ctx, f"begin {begin[i]} and size {size[i]} do not fit axis {i} of size {dim}")
        positions.append(np.arange(b, b + n))
    return _take(x, positions)


@kernel("slice_update", since=18)
def _slice_update(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
    x, update = inputs["x"], inputs["update"]
    positions, _ = _slice_index(ctx, inputs, x)
    shape = [len(p) for p in positions]
    if update.numel() != int(np.prod(shape, dtype=np.int64)):
        raise op_error(ctx, f"update {list(update.shape)} does not match the slice {shape}")
    index = tuple(torch.from_numpy(ix.astype(np.int64)).to(x.device) for ix in np.ix_(*positions))
    return x.index_put(index, update.reshape(shape).to(x.dtype))


def _rank4(ctx: OpContext, x: torch.Tensor) -> None:
    if x.dim() != 4:
        raise op_error(ctx, f"the input must have rank 4 [n, C, H, W], got shape {list(x.shape)}")


def _block(ctx: OpContext, x: torch.Tensor, param: str, divides: list[int]) -> int:
    b = int(flag(ctx, param, None))
    if b < 1 or any(d % b for d in divides):
        raise op_error(ctx, f"{param} {b} must be positive and divide {divides}")
    return b


@kernel("depth_to_space")
def _depth_to_space(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
    x = inputs["x"]
    _rank4(ctx, x)
    b = int(flag(ctx, "block_size"))
    if b < 1 or int(x.shape[1]) % (b * b):
        raise op_error(ctx, f"block_size {b} squared does not divide the {int(x.shape[1])} channels")
    return ReorganizeData(1, b)(x)


@kernel("space_to_depth")
def _space_to_depth(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
    x = inputs["x"]
    _rank4(ctx, x)
    return ReorganizeData(0, _block(ctx, x, "block_size", [int(x.shape[2]), int(x.shape[3])]))(x)


@kernel("pixel_shuffle")
def _pixel_shuffle(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
    x = inputs["x"]
    _rank4(ctx, x)
    f = int(flag(ctx, "upscale_factor"))
    if f < 1 or int(x.shape[1]) % (f * f):
        raise op_error(ctx, f"upscale_factor {f} squared does not divide the {int(x.shape[1])} channels")
    return torch.nn.functional.pixel_shuffle(x, f)


@kernel("pixel_unshuffle", since=16)
def _pixel_unshuffle(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
    x = inputs["x"]
    _rank4(ctx, x)
    f = _block(ctx, x, "downscale_factor", [int(x.shape[2]), int(x.shape[3])])
    return torch.nn.functional.pixel_unshuffle(x, f)


@kernel("space_to_batch")
def _space_to_batch(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
    """TensorFlow's ``space_to_batch_nd`` on the two spatial axes of ``[n, C, H, W]``."""
    x = inputs["x"]
    _rank4(ctx, x)
    bh, bw = (int(v) for v in required(ctx, "block_shape", 2).reshape(-1))
    (pt, pb), (pl, pr) = required(ctx, "paddings", 4).reshape(2, 2).tolist()
    n, c, h, w = (int(d) for d in x.shape)
    h, w = h + pt + pb, w + pl + pr
    if min(bh, bw) < 1 or h % bh or w % bw or min(pt, pb, pl, pr) < 0:
        raise op_error(ctx, f"the padded size {[h, w]} is not a multiple of block_shape {[bh, bw]}")
    y = torch.nn.functional.pad(x, [pl, pr, pt, pb]).reshape(n, c, h // bh, bh, w // bw, bw)
    return y.permute(3, 5, 0, 1, 2, 4).reshape(n * bh * bw, c, h // bh, w // bw)


@kernel("batch_to_space")
def _batch_to_space(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
    """TensorFlow's ``batch_to_space_nd`` on the two spatial axes of ``[n, C, H, W]``."""
    x = inputs["x"]
    _rank4(ctx, x)
    bh, bw = (int(v) for v in required(ctx, "block_shape", 2).reshape(-1))
    (ct, cb), (cl, cr) = required(ctx, "crops", 4).reshape(2, 2).tolist()
    n, c, h, w = (int(d) for d in x.shape)
    if min(bh, bw) < 1 or n % (bh * bw) or min(ct, cb, cl, cr) < 0 or ct + cb > h * bh or cl + cr > w * bw:
        raise op_error(ctx, f"block_shape {[bh, bw]} and crops do not fit the input {list(x.shape)}")
    y = x.reshape(bh, bw, n // (bh * bw), c, h, w).permute(2, 3, 4, 0, 5, 1)
    y = y.reshape(n // (bh * bw), c, h * bh, w * bw)
    return y[:, :, ct:h * bh - cb, cl:w * bw - cr]


@kernel("sliding_windows")
def _sliding_windows(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
    x = inputs["x"]
    d = axis_of(ctx, x.dim(), "axis", None)
    size, stride = int(flag(ctx, "size")), int(flag(ctx, "stride", 1))
    if size < 1 or stride < 1 or size > int(x.shape[d]):
        raise op_error(ctx, f"size {size} and stride {stride} must be positive, the size at most the length "
                            f"{int(x.shape[d])} of axis {d}")
    n = x.dim()  # unfold puts the window axis last; move it right after the window-count axis
    return x.unfold(d, size, stride).permute(*range(d + 1), n, *range(d + 1, n))
