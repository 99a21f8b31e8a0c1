"""Elementwise unary and binary ops, select, clip, cast (MIL elementwise_unary.py, elementwise_binary.py).

Also the helpers the families of this package share for reading an op's parameters (:func:`flag`,
:func:`axis_of`, :func:`axes_of`, :func:`param_like`), for naming the op in errors (:func:`op_error`) and for
computing fp16 inputs in fp32 (:func:`fp16_in_fp32`).

Binary ops broadcast as numpy does. Comparisons and logical ops return bool tensors (MIL's ``bool``).
``real_div`` of two int32 tensors returns int32, truncated toward zero (coremltools' op test casts
``x / y`` to int32); ``floor_div`` rounds toward negative infinity and ``mod`` takes the sign of the divisor
(Python's ``%``, what coremltools' value inference uses) for every dtype. An int32 division by zero gives an
unspecified value instead of stopping the process.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from mlupdate.errors import LayerError
from mlupdate.ops import Kernel, OpContext, register

Fn = Callable[..., torch.Tensor]


def op_error(ctx: OpContext, message: str) -> LayerError:
    """An error naming the op (``ctx.name`` and its type) with ``message``."""
    return LayerError(f"Op '{ctx.name}' ({ctx.op_type}): {message}.")


def flag(ctx: OpContext, param: str, default: Any) -> Any:
    """A scalar constant parameter (bool, number or string) with the definition's default."""
    value = ctx.const(param, default)
    return np.asarray(value).reshape(-1)[0].item() if isinstance(value, np.ndarray) else value


def axis_of(ctx: OpContext, rank: int, param: str = "axis", default: int | None = 0) -> int:
    """The op's ``param`` axis (a compile-time constant) as a non-negative dimension of a rank-``rank`` tensor."""
    value = ctx.const(param, default)
    if value is None:
        raise op_error(ctx, f"the input '{param}' is missing")
    axis = int(np.asarray(value).reshape(-1)[0])
    if not -rank <= axis < max(rank, 1):
        raise op_error(ctx, f"{param} {axis} is out of range for a rank-{rank} tensor (allowed: {-rank} to "
                            f"{rank - 1})")
    return axis % max(rank, 1)


def axes_of(ctx: OpContext, rank: int, param: str = "axes") -> tuple[int, ...] | None:
    """The op's ``param`` axes as sorted non-negative dimensions; None when the input is absent (all axes)."""
    value = ctx.const(param)
    if value is None:
        return None
    axes = [int(a) for a in np.asarray(value).reshape(-1)]
    bad = [a for a in axes if not -rank <= a < rank]
    if bad:
        raise op_error(ctx, f"{param} {axes} has {bad[0]}, out of range for a rank-{rank} tensor (allowed: "
                            f"{-rank} to {rank - 1})")
    dims = sorted({a % rank for a in axes})
    if len(dims) != len(axes):
        raise op_error(ctx, f"{param} {axes} names an axis twice")
    return tuple(dims)


def param_like(ctx: OpContext, inputs: dict[str, Any], param: str, x: torch.Tensor, default: float | None = None
               ) -> torch.Tensor | float | None:
    """Input ``param`` in ``x``'s dtype and device (iOS17 lets parameters differ in dtype from ``x``).

    A scalar parameter comes back as a Python number, a tensor parameter as a tensor; ``default`` when absent.
    """
    if param not in inputs:
        return default
    value = inputs[param]
    if value.dim() == 0 and param in ctx.consts:
        number = np.asarray(ctx.consts[param]).item()
        return float(number) if x.dtype.is_floating_point else int(number)
    return value.to(device=x.device, dtype=x.dtype)


def _exp2(x: torch.Tensor) -> torch.Tensor:
    return torch.pow(torch.full_like(x, 2), x)


def fp16_in_fp32(kernel: Kernel) -> Kernel:
    """``kernel``, computing an fp16 ``x`` in fp32 and rounding the result to fp16.

    For ops whose fp16 intermediates would overflow before their result does (e^x in ``sinh``, sums of squares
    in norms).
    """

    def wrapped(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
        x = inputs["x"]
        if x.dtype != torch.float16:
            return kernel(ctx, inputs)
        return kernel(ctx, {**inputs, "x": x.float()}).to(torch.float16)

    return wrapped


# hyperbolic functions written with exp/log: the ONNX exporter has no sinh, cosh or atanh
def _sinh(x: torch.Tensor) -> torch.Tensor:
    return (torch.exp(x) - torch.exp(-x)) * 0.5


def _cosh(x: torch.Tensor) -> torch.Tensor:
    return (torch.exp(x) + torch.exp(-x)) * 0.5


def _atanh(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * torch.log((1 + x) / (1 - x))


_UNARY: dict[str, Fn] = {
    "abs": torch.abs, "acos": torch.acos, "asin": torch.asin, "atan": torch.atan, "atanh": _atanh,
    "ceil": torch.ceil, "cos": torch.cos, "cosh": _cosh, "erf": torch.erf, "exp": torch.exp, "exp2": _exp2,
    "floor": torch.floor, "round": torch.round, "sign": torch.sign, "sin": torch.sin, "sinh": _sinh,
    "sqrt": torch.sqrt, "square": lambda x: x * x, "tan": torch.tan, "tanh": torch.tanh,
    "logical_not": torch.logical_not,
}


def _unary(fn: Fn) -> Kernel:
    kernel: Kernel = lambda ctx, inputs: fn(inputs["x"])  # noqa: E731
    return fp16_in_fp32(kernel) if fn in (_sinh, _cosh, _atanh) else kernel


for _name, _fn in _UNARY.items():
    register(_name)(_unary(_fn))


def _with_epsilon(fn: Fn, default: float) -> Callable[[OpContext, dict[str, Any]], torch.Tensor]:
    def kernel(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
        x = inputs["x"]
        return fn(x + param_like(ctx, inputs, "epsilon", x, default))

    return kernel


register("inverse")(_with_epsilon(torch.reciprocal, 1e-4))
register("log")(_with_epsilon(torch.log, 1e-45))
register("rsqrt")(_with_epsilon(torch.rsqrt, 1e-12))


@register("threshold")
def _threshold(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
    x = inputs["x"]
    return torch.clamp(x, min=param_like(ctx, inputs, "alpha", x))


def _clip_bounds(ctx: OpContext) -> tuple[float, float]:
    alpha, beta = flag(ctx, "alpha", None), flag(ctx, "beta", None)
    if alpha is None or beta is None:
        raise op_error(ctx, "both alpha and beta are required")
    return float(alpha), float(beta)


@register("clip")
def _clip(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
    alpha, beta = _clip_bounds(ctx)
    # min(max(x, alpha), beta), as the definition's value inference: beta wins when alpha > beta
    return torch.clamp(torch.clamp(inputs["x"], min=alpha), max=beta)


@register("clip", since=17)
def _clip_17(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
    alpha, beta = _clip_bounds(ctx)
    if alpha >= beta:
        raise op_error(ctx, f"alpha ({alpha}) must be smaller than beta ({beta}) from iOS17 on")
    return torch.clamp(inputs["x"], min=alpha, max=beta)


#: MIL dtype names of ``cast`` to torch dtypes, per the opset that allows them.
CAST_DTYPES: dict[str, torch.dtype] = {"int32": torch.int32, "fp16": torch.float16, "fp32": torch.float32,
                                       "bool": torch.bool}
CAST_DTYPES_17: dict[str, torch.dtype] = {**CAST_DTYPES, "int8": torch.int8, "uint8": torch.uint8,
                                          "int16": torch.int16, "uint16": torch.uint16}


def _cast_with(table: dict[str, torch.dtype]) -> Callable[[OpContext, dict[str, Any]], torch.Tensor]:
    def kernel(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
        name = str(flag(ctx, "dtype", None))
        if name not in table:
            raise op_error(ctx, f"dtype '{name}' is not one of {sorted(table)} in opset iOS{ctx.opset}")
        x, target = inputs["x"], table[name]
        if x.dtype.is_floating_point and not target.is_floating_point and target != torch.bool:
            # float to int truncates toward zero (numpy's astype); int16/uint16 have few torch kernels: via int32
            x = x.to(torch.int32)
        return x.to(target)

    return kernel


register("cast")(_cast_with(CAST_DTYPES))
register("cast", since=17)(_cast_with(CAST_DTYPES_17))


# Integer division goes through float64 (exact for int32 operands): integer division by zero traps in torch and
# in onnxruntime, and would end the process; through floats it gives an unspecified value, as Core ML documents none.
def _real_div(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if x.dtype.is_floating_point:
        return x / y
    return (x.double() / y.double()).to(x.dtype)  # the cast truncates toward zero


def _floor_div(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if x.dtype.is_floating_point:
        return torch.div(x, y, rounding_mode="floor")
    return torch.floor(x.double() / y.double()).to(x.dtype)


def _mod(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if x.dtype.is_floating_point:
        return torch.remainder(x, y)
    xd, yd = x.double(), y.double()
    return (xd - torch.floor(xd / yd) * yd).to(x.dtype)


_BINARY: dict[str, Fn] = {
    "add": torch.add, "sub": torch.sub, "mul": torch.mul, "real_div": _real_div,
    "floor_div": _floor_div, "mod": _mod, "pow": torch.pow,
    "maximum": torch.maximum, "minimum": torch.minimum,
    "equal": torch.eq, "not_equal": torch.ne, "greater": torch.gt, "greater_equal": torch.ge, "less": torch.lt,
    "less_equal": torch.le,
    "logical_and": torch.logical_and, "logical_or": torch.logical_or, "logical_xor": torch.logical_xor,
}


def _binary(fn: Fn) -> Callable[[OpContext, dict[str, Any]], torch.Tensor]:
    def kernel(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
        x, y = inputs["x"], inputs["y"]
        try:
            torch.broadcast_shapes(x.shape, y.shape)
        except RuntimeError:
            raise op_error(ctx, f"x {list(x.shape)} and y {list(y.shape)} do not broadcast") from None
        return fn(x, y)

    return kernel


for _name, _fn in _BINARY.items():
    register(_name)(_binary(_fn))


@register("select")
def _select(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
    if "a" not in inputs or "b" not in inputs:
        raise op_error(ctx, "needs both a and b (the one-input form's output shape depends on the values); "
                            "pass both branches")
    cond, a, b = inputs["cond"], inputs["a"], inputs["b"]
    try:
        torch.broadcast_shapes(cond.shape, a.shape, b.shape)
    except RuntimeError:
        raise op_error(ctx, f"cond {list(cond.shape)}, a {list(a.shape)} and b {list(b.shape)} do not "
                            "broadcast") from None
    return torch.where(cond if cond.dtype == torch.bool else cond != 0, a, b)
