"""Helpers every MIL op family uses: errors naming the op, constant parameters, axes, sizes, fp16."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from mlupdate.errors import Error, ExportError, LayerError
from mlupdate.layers.common import check_size
from mlupdate.ops import Kernel, OpContext, register


def op_error(ctx: OpContext, message: str) -> LayerError:
    """An error naming the op (``ctx.name`` and its type) with ``message``."""
    return LayerError(f"Op '{ctx.name}' ({ctx.op_type}): {message}.")


def kernel(*names: str, since: int = 15) -> Callable[[Kernel], Kernel]:
    """Register a kernel like :func:`mlupdate.ops.register`, naming the op in its failures.

    A torch / numpy exception of the kernel (inputs that do not fit together) becomes a :class:`LayerError`
    naming the op instead of the raw exception.
    """

    def deco(fn: Kernel) -> Kernel:
        @functools.wraps(fn)
        def guarded(ctx: OpContext, inputs: dict[str, Any]) -> Any:
            try:
                return fn(ctx, inputs)
            except Error:  # already names the op (or asks for the torch fallback)
                raise
            except (RuntimeError, ValueError, IndexError, TypeError) as exc:
                raise op_error(ctx, str(exc).split("\n")[0]) from exc

        register(*names, since=since)(guarded)
        return fn

    return deco


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


def ints_of(ctx: OpContext, inputs: dict[str, Any], param: str) -> list[int]:
    """An integer-vector parameter: its constant value, else (torch only, not exportable) its run-time value."""
    if param in ctx.consts:
        return [int(v) for v in np.asarray(ctx.consts[param]).reshape(-1)]
    if param not in inputs:
        raise op_error(ctx, f"the input '{param}' is missing")
    if torch.jit.is_tracing():  # an export would freeze the values it traced with: run such a program on torch
        raise ExportError(f"Op '{ctx.name}' ({ctx.op_type}) reads its '{param}' at run time")
    return [int(v) for v in inputs[param].reshape(-1).tolist()]


_REQUIRED: Any = object()


def required(ctx: OpContext, param: str, size: int | None = None) -> np.ndarray:
    """A required constant parameter as a numpy array (of ``size`` values when given)."""
    value = ctx.const(param)
    if value is None:
        raise op_error(ctx, f"the required input '{param}' is missing")
    value = np.asarray(value)
    if size is not None and value.size != size:
        raise op_error(ctx, f"{param} has {value.size} values, expected {size}")
    return value


def flag(ctx: OpContext, param: str, default: Any = _REQUIRED) -> Any:
    """A scalar constant parameter (bool, number or string); ``default`` when absent, else it is required."""
    if default is _REQUIRED:
        return required(ctx, param).reshape(-1)[0].item()
    value = ctx.const(param, default)
    return np.asarray(value).reshape(-1)[0].item() if isinstance(value, np.ndarray) else value


def sized(ctx: OpContext, shape: list[int] | tuple[int, ...]) -> list[int]:
    """``shape``, after refusing negative dimensions and results over the array limit before allocating."""
    if any(d < 0 for d in shape):
        raise op_error(ctx, f"the shape {list(shape)} has a negative dimension")
    try:
        check_size([int(d) for d in shape], f"the result of shape {list(shape)}")
    except ValueError as exc:
        raise op_error(ctx, str(exc)) from None
    return list(shape)


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
