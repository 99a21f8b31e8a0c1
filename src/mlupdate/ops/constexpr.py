"""constexpr_* compressed weights: LUT, affine, blockwise, sparse (MIL constexpr_ops.py, compression.py).

Each kernel computes the decompressed tensor from its constant inputs; the compiler calls it once, when it
compiles the program, and chained ops (a LUT quantized by ``constexpr_blockwise_shift_scale``, a sparse
palettized weight from ``constexpr_lut_to_sparse`` into ``constexpr_sparse_to_dense``) receive the
decompressed values of the ops before them. The result's size is checked against the array limit of
:mod:`mlupdate.spec.limits` before anything is allocated, and inconsistent inputs (a bit mask whose set bits
do not match the data, packed indices too short for the shape, an index past the LUT) are refused.

iOS16 forms pack sub-byte values into bytes, least significant bit first (``indices`` and ``mask`` are flat
``uint8`` vectors, with a ``shape`` input); the iOS18 forms take the sub-byte types (``uint1`` masks, ``uint4``
indices, ...) unpacked, one value per element, in the tensor's declared shape.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from mlupdate.ops import OpContext
from mlupdate.ops.quantization import dequantize_values
from mlupdate.ops.tensor import axis_of, flag, ints_of, kernel, op_error, sized

#: output_dtype names of constexpr_cast.
_CASTS = {"fp32": torch.float32, "fp16": torch.float16}


def _unpack(ctx: OpContext, packed: torch.Tensor, nbits: int, count: int, what: str) -> np.ndarray:
    """``count`` unsigned ``nbits``-bit values packed LSB first into the bytes of ``packed``."""
    data = packed.reshape(-1).cpu().numpy()
    data = data.view(np.uint8) if data.dtype == np.int8 else data
    need = math.ceil(nbits * count / 8)
    if data.size < need:
        raise op_error(ctx, f"{what} holds {data.size} bytes; {count} values of {nbits} bits need {need}")
    bits = np.unpackbits(data.astype(np.uint8), bitorder="little")[:nbits * count].reshape(count, nbits)
    return (bits.astype(np.int64) << np.arange(nbits)).sum(-1)


def _shape(ctx: OpContext, inputs: dict[str, Any]) -> list[int]:
    return sized(ctx, ints_of(ctx, inputs, "shape"))


@kernel("constexpr_affine_dequantize", since=16)
def _affine_dequantize(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
    """``scale * (quantized_data - zero_point)``, scale and zero point scalars or vectors along ``axis``."""
    data = inputs["quantized_data"]
    sized(ctx, [int(d) for d in data.shape])
    axis = axis_of(ctx, data.dim(), "axis", 0)
    return dequantize_values(ctx, data, inputs["scale"], inputs.get("zero_point"), axis)


@kernel("constexpr_cast", since=16)
@kernel("constexpr_cast", since=18)
def _cast(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
    name = str(flag(ctx, "output_dtype"))
    if name not in _CASTS:
        raise op_error(ctx, f"output_dtype '{name}' is not one of {', '.join(_CASTS)}")
    return inputs["source_val"].to(_CASTS[name])


@kernel("constexpr_lut_to_dense", since=16)
def _lut_to_dense(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
    """Packed ``indices`` (``log2(len(lut))`` bits each) into the LUT, reshaped to ``shape``."""
    lut = inputs["lut"].reshape(-1)
    size = int(lut.shape[0])
    if size not in (2, 4, 16, 64, 256):
        raise op_error(ctx, f"the lut has {size} entries; it must have 2, 4, 16, 64 or 256")
    shape = _shape(ctx, inputs)
    index = _unpack(ctx, inputs["indices"], int(math.log2(size)), math.prod(shape), "indices")
    return lut[torch.from_numpy(index).to(lut.device)].reshape(shape)


def _lut_values(ctx: OpContext, indices: torch.Tensor, lut: torch.Tensor, vector_axis: int | None) -> torch.Tensor:
    """iOS18 LUT decompression: per-group LUTs ``[*groups, P, V]`` over indices, vectors along ``vector_axis``."""
    rank = indices.dim()
    if lut.dim() != rank + 2:
        raise op_error(ctx, f"the lut has rank {lut.dim()}; indices of rank {rank} need rank {rank + 2}")
    dims, groups = [int(d) for d in indices.shape], [int(g) for g in lut.shape[:rank]]
    palettes, vector = int(lut.shape[-2]), int(lut.shape[-1])
    if any(g == 0 or d % g for d, g in zip(dims, groups, strict=True)):
        raise op_error(ctx, f"the lut's groups {groups} do not divide the indices' shape {dims}")
    if vector > 1 and vector_axis is None:
        raise op_error(ctx, "vector palettization (a lut vector size over 1) needs vector_axis")
    out_shape = list(dims)
    if vector > 1:
        out_shape[vector_axis] *= vector
    sized(ctx, out_shape)
    idx = indices.long().to(lut.device)
    if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= palettes):
        raise op_error(ctx, f"an index is outside the lut's {palettes} entries")
    group = torch.zeros(dims, dtype=torch.long, device=lut.device)
    for dim, (d, g) in enumerate(zip(dims, groups, strict=True)):
        view = [1] * rank
        view[dim] = d
        group = group * g + (torch.arange(d, device=lut.device) // (d // g)).reshape(view)
    values = lut.reshape(-1, palettes, vector)[group, idx]  # [*dims, V]
    if vector == 1:
        return values.squeeze(-1)
    return values.movedim(-1, vector_axis + 1).reshape(out_shape)


def _vector_axis(ctx: OpContext, rank: int) -> int | None:
    return None if ctx.const("vector_axis") is None else axis_of(ctx, rank, "vector_axis", None)


@kernel("constexpr_lut_to_dense", since=18)
def _lut_to_dense_18(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
    indices = inputs["indices"]
    return _lut_values(ctx, indices, inputs["lut"], _vector_axis(ctx, indices.dim()))


def _scatter_mask(ctx: OpContext, nonzero: torch.Tensor, mask: np.ndarray) -> torch.Tensor:
    """A dense tensor of ``mask``'s shape holding ``nonzero`` where the mask is set, zero elsewhere."""
    sized(ctx, list(mask.shape))
    where = torch.from_numpy(mask != 0).to(nonzero.device)
    nonzero = nonzero.reshape(-1)
    if int(where.sum()) != int(nonzero.shape[0]):
        raise op_error(ctx, f"the mask sets {int(where.sum())} bits but {int(nonzero.shape[0])} values are stored")
    out = torch.zeros(list(mask.shape), dtype=nonzero.dtype, device=nonzero.device)
    out[where] = nonzero
    return out


@kernel("constexpr_sparse_to_dense", since=16)
def _sparse_to_dense(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
    """Bit ``i`` of the packed ``mask`` set: element ``i`` is the next of ``nonzero_data``; else 0."""
    shape = _shape(ctx, inputs)
    bits = _unpack(ctx, inputs["mask"], 1, math.prod(shape), "mask").reshape(shape)
    return _scatter_mask(ctx, inputs["nonzero_data"], bits)


@kernel("constexpr_sparse_to_dense", since=18)
def _sparse_to_dense_18(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
    return _scatter_mask(ctx, inputs["nonzero_data"], inputs["mask"].cpu().numpy())


def _shift_scale(ctx: OpContext, data: torch.Tensor, scale: torch.Tensor, offset: torch.Tensor | None) -> torch.Tensor:
    """``scale * (data - offset)`` with blockwise scale/offset, in the scale's dtype (coremltools' order)."""
    if scale.dim() != data.dim() or (offset is not None and offset.shape != scale.shape):
        raise op_error(ctx, f"scale {list(scale.shape)} (and offset) must have the rank of data {list(data.shape)}")
    shape = [int(d) for d in data.shape]
    sized(ctx, shape)
    if any(int(s) == 0 or d % int(s) for d, s in zip(shape, scale.shape, strict=True)):
        raise op_error(ctx, f"scale {list(scale.shape)} does not divide data {shape} into blocks")

    def blocks(t: torch.Tensor) -> torch.Tensor:
        for dim, (d, s) in enumerate(zip(shape, t.shape, strict=True)):
            if d != int(s):
                t = t.repeat_interleave(d // int(s), dim=dim)
        return t.to(scale.dtype)

    values = data.to(scale.dtype)
    if offset is not None:
        values = values - blocks(offset)
    return blocks(scale) * values


@kernel("constexpr_blockwise_shift_scale", since=18)
def _blockwise_shift_scale(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
    return _shift_scale(ctx, inputs["data"], inputs["scale"], inputs.get("offset"))


@kernel("constexpr_lut_to_sparse", since=18)
def _lut_to_sparse(ctx: OpContext, inputs: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """The mask (repeated along ``vector_axis`` for vector LUTs) and the LUT values of the set elements."""
    mask = inputs["indices_mask"]
    indices = _scatter_mask(ctx, inputs["indices_nonzero_data"].to(torch.uint8), mask.cpu().numpy())
    axis = _vector_axis(ctx, mask.dim())
    dense = _lut_values(ctx, indices, inputs["lut"], axis)
    vector = int(inputs["lut"].shape[-1])
    out_mask = mask.repeat_interleave(vector, dim=axis) if vector > 1 and axis is not None else mask
    return out_mask, dense[out_mask != 0].reshape(-1)


@kernel("constexpr_sparse_blockwise_shift_scale", since=18)
def _sparse_blockwise_shift_scale(ctx: OpContext, inputs: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """The mask, and ``scale * (data - offset)`` of the set elements (blocks as in the dense layout)."""
    mask = inputs["data_mask"]
    data = _scatter_mask(ctx, inputs["nonzero_data"], mask.cpu().numpy())
    dense = _shift_scale(ctx, data, inputs["scale"], inputs.get("offset"))
    return mask, dense[mask != 0].reshape(-1)
