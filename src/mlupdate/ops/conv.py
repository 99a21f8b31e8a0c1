"""conv, conv_transpose, conv_quantized (MIL conv.py).

1-D, 2-D and 3-D. ``pad_type`` defaults to ``valid`` (coremltools' default inputs); ``same`` pads so that
``d_out = ceil(d_in / stride)`` with the odd pixel after (``same_lower``, from iOS16 on: before), the rule the
neural-network layers share (:func:`mlupdate.layers.conv.same_padding`); ``custom`` reads ``pad``
(``[before_0, after_0, before_1, ...]``). Padding is applied explicitly with zeros and the convolution then
runs unpadded, so asymmetric pads work the same on every backend.

``conv_transpose`` computes the full transposed convolution and crops it: ``custom`` crops ``pad``; ``same``
gives ``d_in * stride`` and crops ``(K - 1) * dilation + 1 - stride`` split as ``same`` splits conv padding
(the odd pixel from the end); ``output_shape`` fixes the size, cropping the ``pad``/``same`` amount from the
start and padding with zeros (plus bias) at the end where it is longer, as PyTorch's ``output_padding``.

From iOS17 on weights and bias may have another dtype than ``x``: they are converted to ``x``'s dtype.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from mlupdate.layers.conv import same_padding
from mlupdate.ops import Kernel, OpContext, register
from mlupdate.ops.elementwise import flag, op_error

PAD_TYPES = ("valid", "same", "same_lower", "custom")
TRANSPOSED_PAD_TYPES = ("valid", "same", "custom")


def spatial_list(ctx: OpContext, param: str, n: int, default: int) -> list[int]:
    """A per-spatial-axis integer parameter (``strides``, ``dilations``, ``kernel_sizes``) of length ``n``."""
    value = ctx.const(param)
    if value is None:
        return [default] * n
    values = [int(v) for v in np.asarray(value).reshape(-1)]
    if len(values) != n:
        raise op_error(ctx, f"{param} {values} must have one value per spatial axis ({n})")
    if any(v < 1 for v in values):
        raise op_error(ctx, f"{param} {values} must all be positive")
    return values


def explicit_pads(ctx: OpContext, sizes: list[int], kernel: list[int], strides: list[int],
                  dilations: list[int]) -> list[tuple[int, int]]:
    """(before, after) padding of each spatial axis for the op's ``pad_type`` (default ``valid``)."""
    pad_type = str(flag(ctx, "pad_type", "valid"))
    if pad_type not in PAD_TYPES:
        raise op_error(ctx, f"pad_type '{pad_type}' is not one of {list(PAD_TYPES)}")
    n = len(sizes)
    if pad_type == "custom":
        pad = [int(v) for v in np.asarray(ctx.const("pad", np.zeros(2 * n))).reshape(-1)]
        if len(pad) != 2 * n or any(p < 0 for p in pad):
            raise op_error(ctx, f"pad {pad} must hold {2 * n} non-negative values (before and after each "
                                "spatial axis)")
        return [(pad[2 * i], pad[2 * i + 1]) for i in range(n)]
    if pad_type == "valid":
        return [(0, 0)] * n
    lower = pad_type == "same_lower"
    return [same_padding(sizes[i], kernel[i], strides[i], dilations[i], lower) for i in range(n)]


def pad_spatial(x: torch.Tensor, pads: list[tuple[int, int]], value: float = 0.0) -> torch.Tensor:
    """``x`` padded with ``value`` by (before, after) on each spatial axis (the axes after the first two)."""
    if not any(b or a for b, a in pads):
        return x
    flat = [p for before_after in reversed(pads) for p in before_after]
    return F.pad(x, flat, value=value)


def register_padded(name: str, kernel: Kernel) -> None:
    """Register ``kernel`` from iOS16 on, and from iOS15 a version refusing ``same_lower`` (new in iOS16)."""

    def ios15(ctx: OpContext, inputs: dict[str, Any]) -> Any:
        if flag(ctx, "pad_type", "valid") == "same_lower":
            raise op_error(ctx, "pad_type 'same_lower' needs opset iOS16 or later (the program declares iOS15)")
        return kernel(ctx, inputs)

    register(name)(ios15)
    register(name, since=16)(kernel)


_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


def _check_x(ctx: OpContext, x: torch.Tensor) -> int:
    if not 3 <= x.dim() <= 5:
        raise op_error(ctx, f"x must have rank 3 to 5 ([n, C, 1 to 3 spatial axes]), not {x.dim()}")
    return x.dim() - 2


def _groups(ctx: OpContext) -> int:
    groups = int(flag(ctx, "groups", 1))
    if groups < 1:
        raise op_error(ctx, f"groups {groups} must be positive")
    return groups


def _bias(ctx: OpContext, inputs: dict[str, Any], x: torch.Tensor, c_out: int) -> torch.Tensor | None:
    if "bias" not in inputs:
        return None
    bias = inputs["bias"]
    if tuple(bias.shape) != (c_out,):
        raise op_error(ctx, f"bias has shape {list(bias.shape)}; it must be [C_out] = [{c_out}]")
    return bias.to(device=x.device, dtype=x.dtype)


def _convolve(ctx: OpContext, x: torch.Tensor, weight: torch.Tensor, inputs: dict[str, Any]) -> torch.Tensor:
    n = _check_x(ctx, x)
    groups = _groups(ctx)
    if weight.dim() != x.dim():
        raise op_error(ctx, f"weight has shape {list(weight.shape)}; it must be [C_out, C_in / groups, "
                            f"{n} kernel sizes]")
    c_in, c_out = int(x.shape[1]), int(weight.shape[0])
    if c_in % groups or int(weight.shape[1]) * groups != c_in or c_out % groups:
        raise op_error(ctx, f"x has {c_in} channels and weight shape {list(weight.shape)} with groups {groups}: "
                            "C_in and C_out must divide by groups and weight.shape[1] must be C_in / groups")
    kernel = [int(k) for k in weight.shape[2:]]
    strides, dilations = spatial_list(ctx, "strides", n, 1), spatial_list(ctx, "dilations", n, 1)
    sizes = [int(s) for s in x.shape[2:]]
    pads = explicit_pads(ctx, sizes, kernel, strides, dilations)
    for size, (b, a), k, d in zip(sizes, pads, kernel, dilations, strict=True):
        if size + b + a < (k - 1) * d + 1:
            raise op_error(ctx, f"the padded input ({size + b + a}) is smaller than the dilated kernel "
                                f"({(k - 1) * d + 1}) on a spatial axis")
    return _CONV[n](pad_spatial(x, pads), weight.to(device=x.device, dtype=x.dtype), _bias(ctx, inputs, x, c_out),
                    stride=strides, dilation=dilations, groups=groups)


def _conv(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
    return _convolve(ctx, inputs["x"], inputs["weight"], inputs)


def _conv_quantized(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
    x, weight = inputs["x"], inputs["weight"]
    kind = str(flag(ctx, "quantization_type", ""))
    if kind != "linear":
        raise op_error(ctx, f"quantization_type '{kind}' is not supported: mlupdate runs 'linear' (the "
                            "definition does not say which input holds a 'lut' table); dequantize the weights")
    nbits = int(flag(ctx, "nbits", 8))
    if not 1 <= nbits <= 8:
        raise op_error(ctx, f"nbits {nbits} must lie in 1..8")
    scale, shift = (inputs[k].to(device=x.device, dtype=x.dtype).reshape(-1) for k in ("quant_scale", "quant_bias"))
    c_out = int(weight.shape[0])
    for name, value in (("quant_scale", scale), ("quant_bias", shift)):
        if value.numel() not in (1, c_out):
            raise op_error(ctx, f"{name} has {value.numel()} values; it needs 1 or C_out = {c_out}")
    per_channel = (-1,) + (1,) * (weight.dim() - 1)
    # W_float = W_quantized * scale + bias, per output channel
    dense = weight.to(device=x.device, dtype=x.dtype) * scale.reshape(per_channel) + shift.reshape(per_channel)
    return _convolve(ctx, x, dense, inputs)


register_padded("conv", _conv)
register_padded("conv_quantized", _conv_quantized)


def _transposed_crop(ctx: OpContext, full: list[int], sizes: list[int], kernel: list[int], strides: list[int],
                     dilations: list[int]) -> list[tuple[int, int]]:
    """(start, length) of the output window of each spatial axis within the full transposed convolution."""
    pad_type = str(flag(ctx, "pad_type", "valid"))
    if pad_type not in TRANSPOSED_PAD_TYPES:
        raise op_error(ctx, f"pad_type '{pad_type}' is not one of {list(TRANSPOSED_PAD_TYPES)}")
    n = len(sizes)
    if pad_type == "custom":
        pad = [int(v) for v in np.asarray(ctx.const("pad", np.zeros(2 * n))).reshape(-1)]
        if len(pad) != 2 * n or any(p < 0 for p in pad):
            raise op_error(ctx, f"pad {pad} must hold {2 * n} non-negative values")
        crops = [(pad[2 * i], full[i] - pad[2 * i] - pad[2 * i + 1]) for i in range(n)]
    elif pad_type == "valid":
        crops = [(0, f) for f in full]
    else:
        crops = []
        for i in range(n):
            total = max((kernel[i] - 1) * dilations[i] + 1 - strides[i], 0)
            crops.append((total // 2, sizes[i] * strides[i]))
    shape = ctx.const("output_shape")
    if shape is not None:
        out = [int(v) for v in np.asarray(shape).reshape(-1)]
        if len(out) not in (n, n + 2):
            raise op_error(ctx, f"output_shape {out} must hold [n, C_out, {n} spatial sizes]")
        crops = [(start, size) for (start, _), size in zip(crops, out[-n:], strict=True)]
    if any(length < 1 for _, length in crops):
        raise op_error(ctx, f"the output would have spatial sizes {[c[1] for c in crops]}; they must be positive")
    return crops


@register("conv_transpose")
def _conv_transpose(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
    x, weight = inputs["x"], inputs["weight"]
    n = _check_x(ctx, x)
    groups = _groups(ctx)
    c_in = int(x.shape[1])
    if weight.dim() != x.dim() or int(weight.shape[0]) != c_in or c_in % groups:
        raise op_error(ctx, f"weight has shape {list(weight.shape)}; it must be [C_in = {c_in}, C_out / groups, "
                            f"{n} kernel sizes] with C_in divisible by groups {groups}")
    c_out = int(weight.shape[1]) * groups
    kernel = [int(k) for k in weight.shape[2:]]
    strides, dilations = spatial_list(ctx, "strides", n, 1), spatial_list(ctx, "dilations", n, 1)
    sizes = [int(s) for s in x.shape[2:]]
    full = [(s - 1) * st + (k - 1) * d + 1 for s, st, k, d in zip(sizes, strides, kernel, dilations, strict=True)]
    crops = _transposed_crop(ctx, full, sizes, kernel, strides, dilations)
    y = _CONV_T[n](x, weight.to(device=x.device, dtype=x.dtype), None, stride=strides, dilation=dilations,
                   groups=groups)
    # zeros past the end where the window runs beyond the full result, then the window itself
    extra = [(0, max(start + length - f, 0)) for (start, length), f in zip(crops, full, strict=True)]
    y = pad_spatial(y, extra)
    for axis, (start, length) in enumerate(crops):
        y = y.narrow(axis + 2, start, length)
    bias = _bias(ctx, inputs, x, c_out)
    return y if bias is None else y + bias.reshape((-1,) + (1,) * n)
