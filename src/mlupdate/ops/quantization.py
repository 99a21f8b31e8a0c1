"""quantize, dequantize (MIL quantization_ops.py).

Also :func:`per_axis`, the broadcasting of quantization parameters (scalar, per-axis vector, or blockwise
tensor of the data's rank) that the ``constexpr_*`` kernels share.
"""

from __future__ import annotations

from typing import Any

import torch

from mlupdate.ops import OpContext
from mlupdate.ops.tensor import axis_of, flag, kernel, op_error

#: The integer types quantize writes, with their ranges.
QUANTIZED: dict[str, tuple[torch.dtype, int, int]] = {"int8": (torch.int8, -128, 127),
                                                       "uint8": (torch.uint8, 0, 255)}


def per_axis(ctx: OpContext, param: torch.Tensor, shape: tuple[int, ...], axis: int | None, what: str) -> torch.Tensor:
    """``param`` broadcast to ``shape``: a scalar, a vector along ``axis``, or blocks of equal size per axis.

    Raises:
        LayerError: When the parameter fits none of the three forms (the message names the op and ``what``).
    """
    rank = len(shape)
    if param.dim() == 0 or (param.dim() == 1 and param.numel() == 1):
        return param.reshape([1] * rank)
    if param.dim() == 1:
        if axis is None or int(param.shape[0]) != shape[axis]:
            raise op_error(ctx, f"{what} has {int(param.shape[0])} values; a vector must match axis {axis} of "
                                f"the data {list(shape)}")
        view = [1] * rank
        view[axis] = -1
        return param.reshape(view)
    if param.dim() != rank or any(s % max(int(p), 1) or int(p) == 0 for s, p in zip(shape, param.shape, strict=True)):
        raise op_error(ctx, f"{what} of shape {list(param.shape)} does not divide the data {list(shape)} into blocks")
    for dim, (s, p) in enumerate(zip(shape, param.shape, strict=True)):
        if int(p) != s:
            param = param.repeat_interleave(s // int(p), dim=dim)
    return param


def _axis(ctx: OpContext, rank: int) -> int | None:
    return None if ctx.const("axis") is None else axis_of(ctx, rank, "axis", None)


@kernel("quantize", since=17)
def _quantize(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
    """``clip(round(input / scale) + zero_point)``, rounding half to even as numpy's ``around``."""
    x = inputs["input"]
    name = str(flag(ctx, "output_dtype"))
    if name not in QUANTIZED:
        raise op_error(ctx, f"output_dtype '{name}' is not int8 or uint8")
    dtype, low, high = QUANTIZED[name]
    shape, axis = tuple(int(d) for d in x.shape), _axis(ctx, x.dim())
    scale = per_axis(ctx, inputs["scale"], shape, axis, "scale").to(x.dtype)
    q = torch.round(x / scale).to(torch.float32)  # the division in the input's dtype, as coremltools
    if "zero_point" in inputs:
        q = q + per_axis(ctx, inputs["zero_point"], shape, axis, "zero_point").to(torch.float32)
    return q.clamp(low, high).to(dtype)


def dequantize_values(ctx: OpContext, data: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor | None,
                      axis: int | None) -> torch.Tensor:
    """``scale * (data - zero_point)``, computed in fp32 and returned in the scale's dtype (as coremltools)."""
    shape = tuple(int(d) for d in data.shape)
    y = data.to(torch.float32)
    if zero_point is not None:
        y = y - per_axis(ctx, zero_point, shape, axis, "zero_point").to(torch.float32)
    return (y * per_axis(ctx, scale, shape, axis, "scale").to(torch.float32)).to(scale.dtype)


@kernel("dequantize", since=17)
def _dequantize(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
    x = inputs["input"]
    return dequantize_values(ctx, x, inputs["scale"], inputs.get("zero_point"), _axis(ctx, x.dim()))
