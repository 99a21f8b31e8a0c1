"""Activations: relu, gelu, softmax, ... (MIL activation.py).

Scalar parameters (``alpha``, ``beta``) are compile-time constants; from iOS17 on they may have another dtype
than ``x``, so every kernel computes in ``x``'s dtype whatever the parameters' dtype (one kernel serves both
opsets). ``prelu`` and ``softplus_parametric`` take one value per channel (axis 1). ``gelu`` and
``clamped_relu`` share their kernels with the neural-network layers of the same name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from mlupdate.layers.activation import ClampedReLU, Gelu
from mlupdate.ops import OpContext, register
from mlupdate.ops.elementwise import axis_of, flag, op_error, param_like

#: gelu's ``mode`` to the neural-network layer's kernel (``GeluLayerParams.GeluMode``); the modules are stateless.
GELU_MODES = {"EXACT": Gelu(0), "TANH_APPROXIMATION": Gelu(1), "SIGMOID_APPROXIMATION": Gelu(2)}

_PLAIN: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": torch.relu,
    "relu6": lambda x: torch.clamp(x, min=0, max=6),
    "sigmoid": torch.sigmoid,
    "silu": lambda x: x * torch.sigmoid(x),
    "softplus": F.softplus,
    "softsign": lambda x: x / (1 + torch.abs(x)),
}


def _plain(fn: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[OpContext, dict[str, Any]], torch.Tensor]:
    return lambda ctx, inputs: fn(inputs["x"])


for _name, _fn in _PLAIN.items():
    register(_name)(_plain(_fn))


def _scalars(ctx: OpContext, inputs: dict[str, Any], x: torch.Tensor, *names: str) -> list[Any]:
    values = [param_like(ctx, inputs, name, x) for name in names]
    missing = [name for name, value in zip(names, values, strict=True) if value is None]
    if missing:
        raise op_error(ctx, f"the input '{missing[0]}' is required")
    return values


@register("elu")
def _elu(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
    x = inputs["x"]
    (alpha,) = _scalars(ctx, inputs, x, "alpha")
    return torch.where(x > 0, x, alpha * (torch.exp(x) - 1))


@register("leaky_relu")
def _leaky_relu(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
    x = inputs["x"]
    (alpha,) = _scalars(ctx, inputs, x, "alpha")
    return torch.where(x >= 0, x, alpha * x)


@register("thresholded_relu")
def _thresholded_relu(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
    x = inputs["x"]
    (alpha,) = _scalars(ctx, inputs, x, "alpha")
    return torch.where(x >= alpha, x, torch.zeros_like(x))


@register("linear_activation")
def _linear_activation(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
    x = inputs["x"]
    alpha, beta = _scalars(ctx, inputs, x, "alpha", "beta")
    return x * alpha + beta


@register("scaled_tanh")
def _scaled_tanh(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
    x = inputs["x"]
    alpha, beta = _scalars(ctx, inputs, x, "alpha", "beta")
    return alpha * torch.tanh(beta * x)


@register("sigmoid_hard")
def _sigmoid_hard(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
    x = inputs["x"]
    alpha, beta = _scalars(ctx, inputs, x, "alpha", "beta")
    return torch.clamp(alpha * x + beta, min=0, max=1)


@register("clamped_relu")
def _clamped_relu(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
    x = inputs["x"]
    alpha, beta = _scalars(ctx, inputs, x, "alpha", "beta")
    return ClampedReLU(alpha, beta)(x)


@register("gelu")
def _gelu(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
    mode = str(flag(ctx, "mode", "EXACT"))
    if mode not in GELU_MODES:
        raise op_error(ctx, f"mode '{mode}' is not one of {sorted(GELU_MODES)}")
    return GELU_MODES[mode](inputs["x"])


@register("softmax")
def _softmax(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
    x = inputs["x"]
    return torch.softmax(x, dim=axis_of(ctx, x.dim(), "axis", -1))


def _per_channel(ctx: OpContext, inputs: dict[str, Any], x: torch.Tensor, name: str) -> torch.Tensor:
    """Parameter ``name`` (``[C]``) shaped to broadcast over axis 1 of ``x``."""
    value = param_like(ctx, inputs, name, x)
    if value is None:
        raise op_error(ctx, f"the input '{name}' is required")
    value = torch.as_tensor(value, dtype=x.dtype, device=x.device)
    if value.dim() != 1 or value.shape[0] != x.shape[1]:
        raise op_error(ctx, f"{name} has shape {list(value.shape)}; it must be [C] = [{x.shape[1]}] (axis 1 of x)")
    return value.reshape((-1,) + (1,) * (x.dim() - 2))


@register("prelu")
def _prelu(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
    x = inputs["x"]
    if x.dim() not in (3, 4, 5):
        raise op_error(ctx, f"x must have rank 3, 4 or 5 ([B, C, ...]), not {x.dim()}")
    alpha = _per_channel(ctx, inputs, x, "alpha")
    values = np.asarray(ctx.consts.get("alpha", [0])).reshape(-1)
    if x.dim() in (3, 5) and np.abs(values - values[0]).max() > 1e-5:
        raise op_error(ctx, "a rank-3 or rank-5 x needs one alpha value for every channel (the definition's rule); "
                            "use a rank-4 x for per-channel alphas")
    return torch.where(x > 0, x, alpha * x)


@register("softplus_parametric")
def _softplus_parametric(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
    x = inputs["x"]
    if x.dim() < 3:
        raise op_error(ctx, f"x must have rank 3 or more ([B, C, ...]), not {x.dim()}")
    alpha, beta = _per_channel(ctx, inputs, x, "alpha"), _per_channel(ctx, inputs, x, "beta")
    return alpha * F.softplus(beta * x)
