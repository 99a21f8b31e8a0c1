"""random_normal, random_uniform, random_bernoulli, random_categorical (MIL random.py).

The values follow the documented distributions but cannot be Core ML's: Apple's generator is not documented
and not reproducible. Seeding follows the neural-network random layers (:mod:`mlupdate.layers.random`): the
default ``seed`` -1 draws fresh values on every prediction; any other seed starts a new CPU generator from it on
every prediction, so a seeded program gives the same values on every run and every device. The global torch
random state is never read or changed.

The output shape is the ``shape`` input: its constant value, else the declared output shape, else (torch only)
its run-time value. The output dtype is the declared one (fp16 or fp32), else that of the distribution's
parameters, else fp32. ``random_categorical`` returns the drawn class indices in ``x``'s dtype, shaped
``x.shape[:-1] + [size]``; with ``mode='probs'`` the probabilities are turned into logits with ``log`` as the
definition says (a zero probability is never drawn).

These kernels carry ``exportable = False``: a program that uses them runs on torch, not onnxruntime (ONNX
random ops cannot take a seeded generator).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from mlupdate.layers.common import check_size
from mlupdate.layers.random import Draw, bernoulli, generator, normal, uniform
from mlupdate.ops import Kernel, OpContext, register
from mlupdate.ops.elementwise import flag, op_error

_FP16_NAMES = ("fp16", "float16")


def _declared_dtype(ctx: OpContext, *params: str) -> torch.dtype:
    if ctx.out_types and ctx.out_types[0][0]:
        return torch.float16 if str(ctx.out_types[0][0]) in _FP16_NAMES else torch.float32
    for param in params:
        value = ctx.consts.get(param)
        if value is not None and np.asarray(value).dtype == np.float16:
            return torch.float16
    return torch.float32


def _shape(ctx: OpContext, inputs: dict[str, Any]) -> list[int]:
    if "shape" in ctx.consts:
        shape = [int(v) for v in np.asarray(ctx.consts["shape"]).reshape(-1)]
    elif ctx.out_types and ctx.out_types[0][1] is not None and None not in ctx.out_types[0][1]:
        shape = [int(v) for v in ctx.out_types[0][1]]
    elif "shape" in inputs:
        shape = [int(v) for v in inputs["shape"].reshape(-1).tolist()]
    else:
        raise op_error(ctx, "the input 'shape' is required")
    if any(d < 1 for d in shape):
        raise op_error(ctx, f"shape {shape} must have positive dimensions")
    try:
        check_size(shape, f"the result of shape {shape}")
    except ValueError as exc:
        raise op_error(ctx, str(exc)) from None
    return shape


def _not_exportable(kernel: Kernel) -> Kernel:
    kernel.exportable = False  # type: ignore[attr-defined]
    return kernel


def _fill(make: Callable[[OpContext], Draw], *params: str) -> Kernel:
    def kernel(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
        shape = _shape(ctx, inputs)
        seed = int(flag(ctx, "seed", -1))
        device = inputs["shape"].device if "shape" in inputs else torch.device("cpu")
        values = make(ctx)(shape, generator(seed))
        return values.to(device=device, dtype=_declared_dtype(ctx, *params))

    return _not_exportable(kernel)


def _normal(ctx: OpContext) -> Draw:
    std = float(flag(ctx, "stddev", 1.0))
    if std < 0:
        raise op_error(ctx, f"stddev {std} cannot be negative")
    return normal(float(flag(ctx, "mean", 0.0)), std)


def _uniform(ctx: OpContext) -> Draw:
    low, high = float(flag(ctx, "low", 0.0)), float(flag(ctx, "high", 1.0))
    if high < low:
        raise op_error(ctx, f"low {low} is above high {high} (undefined in Core ML); swap them")
    return uniform(low, high)


def _bernoulli(ctx: OpContext) -> Draw:
    prob = float(flag(ctx, "prob", 0.5))
    if not 0.0 <= prob <= 1.0:
        raise op_error(ctx, f"prob {prob} must lie in [0, 1]")
    return bernoulli(prob)


register("random_normal")(_fill(_normal, "mean", "stddev"))
register("random_uniform")(_fill(_uniform, "low", "high"))
register("random_bernoulli")(_fill(_bernoulli, "prob"))


@register("random_categorical")
@_not_exportable
def _random_categorical(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
    x = inputs["x"]
    mode = str(flag(ctx, "mode", "logits"))
    if mode not in ("logits", "probs"):
        raise op_error(ctx, f"mode '{mode}' is not one of ['logits', 'probs']")
    size = int(flag(ctx, "size", 1))
    if size < 1:
        raise op_error(ctx, f"size {size} must be positive")
    if x.dim() < 1:
        raise op_error(ctx, "x must have rank 1 or more (its last axis holds the classes)")
    logits = x.detach().to(device="cpu", dtype=torch.float64)
    if mode == "probs":
        logits = torch.log(logits)
    lead, k = list(x.shape[:-1]), int(x.shape[-1])
    try:
        check_size([*lead, size], "the samples")
        probs = torch.softmax(logits.reshape(-1, k), dim=-1)
        draws = torch.multinomial(probs, size, replacement=True, generator=generator(int(flag(ctx, "seed", -1))))
    except (RuntimeError, ValueError) as exc:
        raise op_error(ctx, f"cannot draw from x: {exc} (probabilities must be non-negative and finite, logits "
                            "finite)") from None
    return draws.reshape([*lead, size]).to(device=x.device, dtype=x.dtype)
