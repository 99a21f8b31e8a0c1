"""batch_norm, instance_norm, layer_norm, l2_norm, local_response_norm (MIL normalization.py).

Channels are axis 1 (``[n, C, *D]``). Variances are the biased (population) ones. ``layer_norm``'s ``gamma``
and ``beta`` have the shape of ``x`` on ``axes`` (all axes by default) and broadcast over the others.
``l2_norm`` divides by ``sqrt(sum of squares + epsilon)`` over the last three axes, the leading ones being
batch. ``local_response_norm`` sums squares over ``size`` neighbouring channels (``size // 2`` before,
``(size - 1) // 2`` after, zeros past the ends), as PyTorch's ``LocalResponseNorm`` that coremltools' op
test compares with. From iOS17 on the parameters may have another dtype than ``x``: they are converted to
``x``'s dtype. Instance, layer, L2 and local response norms compute fp16 inputs in fp32 (their sums of squares
would overflow fp16 long before their results do) and round the result to fp16.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from mlupdate.ops import OpContext, register
from mlupdate.ops.elementwise import axes_of, flag, fp16_in_fp32, op_error, param_like


def _channel_param(ctx: OpContext, inputs: dict[str, Any], name: str, x: torch.Tensor,
                   default: float | None) -> torch.Tensor | float:
    """Parameter ``name`` ([C]) shaped to broadcast over axis 1 of ``x``; ``default`` when absent."""
    value = param_like(ctx, inputs, name, x)
    if value is None:
        if default is None:
            raise op_error(ctx, f"the input '{name}' is required")
        return default
    value = torch.as_tensor(value, dtype=x.dtype, device=x.device)
    if tuple(value.shape) != (x.shape[1],):
        raise op_error(ctx, f"{name} has shape {list(value.shape)}; it must be [C] = [{x.shape[1]}] (axis 1 of x)")
    return value.reshape((-1,) + (1,) * (x.dim() - 2))


def _rank(ctx: OpContext, x: torch.Tensor, low: int, high: int) -> None:
    if not low <= x.dim() <= high:
        raise op_error(ctx, f"x must have rank {low} to {high}, not {x.dim()}")


@register("batch_norm")
def _batch_norm(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
    x = inputs["x"]
    _rank(ctx, x, 2, 5)
    mean, var = _channel_param(ctx, inputs, "mean", x, None), _channel_param(ctx, inputs, "variance", x, None)
    gamma, beta = _channel_param(ctx, inputs, "gamma", x, 1.0), _channel_param(ctx, inputs, "beta", x, 0.0)
    eps = param_like(ctx, inputs, "epsilon", x, 1e-5)
    return gamma * (x - mean) / torch.sqrt(var + eps) + beta


def _normalize(x: torch.Tensor, dims: tuple[int, ...], eps: Any) -> torch.Tensor:
    mean = x.mean(dim=dims, keepdim=True)
    centered = x - mean
    return centered / torch.sqrt((centered * centered).mean(dim=dims, keepdim=True) + eps)


@register("instance_norm")
@fp16_in_fp32
def _instance_norm(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
    x = inputs["x"]
    _rank(ctx, x, 3, 5)
    gamma, beta = _channel_param(ctx, inputs, "gamma", x, 1.0), _channel_param(ctx, inputs, "beta", x, 0.0)
    eps = param_like(ctx, inputs, "epsilon", x, 1e-5)
    return _normalize(x, tuple(range(2, x.dim())), eps) * gamma + beta


@register("layer_norm")
@fp16_in_fp32
def _layer_norm(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
    x = inputs["x"]
    if x.dim() < 1:
        raise op_error(ctx, "x must have rank 1 or more")
    dims = axes_of(ctx, x.dim())
    dims = tuple(range(x.dim())) if dims is None else dims
    if not dims:
        raise op_error(ctx, "axes is empty; it must name at least one axis")
    shape = [int(x.shape[d]) if d in dims else 1 for d in range(x.dim())]
    out = _normalize(x, dims, param_like(ctx, inputs, "epsilon", x, 1e-5))
    for name, combine in (("gamma", torch.mul), ("beta", torch.add)):
        value = param_like(ctx, inputs, name, x)
        if value is None:
            continue
        value = torch.as_tensor(value, dtype=x.dtype, device=x.device)
        want = [int(x.shape[d]) for d in dims]
        if list(value.shape) != want:
            raise op_error(ctx, f"{name} has shape {list(value.shape)}; it must be x's shape on axes {list(dims)}, "
                                f"{want}")
        out = combine(out, value.reshape(shape))
    return out


@register("l2_norm")
@fp16_in_fp32
def _l2_norm(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
    x = inputs["x"]
    if x.dim() < 3:
        raise op_error(ctx, f"x must have rank 3 or more (the last three axes are normalized), not {x.dim()}")
    eps = param_like(ctx, inputs, "epsilon", x, 1e-6)
    return x / torch.sqrt(torch.sum(x * x, dim=(-3, -2, -1), keepdim=True) + eps)


@register("local_response_norm")
@fp16_in_fp32
def _local_response_norm(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
    x = inputs["x"]
    _rank(ctx, x, 3, 5)
    size = int(flag(ctx, "size", 0))
    if size < 1:
        raise op_error(ctx, f"size {size} must be positive (the input 'size' is required)")
    alpha = param_like(ctx, inputs, "alpha", x, 1e-4)
    beta = param_like(ctx, inputs, "beta", x, 0.75)
    k = param_like(ctx, inputs, "k", x, 1.0)
    squares = x * x
    c = int(x.shape[1])
    before, after = size // 2, (size - 1) // 2
    padded = F.pad(squares.transpose(1, -1), (before, after)).transpose(1, -1)  # zeros past the channel ends
    window = sum(padded.narrow(1, j, c) for j in range(size))
    return x / torch.pow(k + alpha / size * window, beta)
