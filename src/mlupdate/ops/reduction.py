"""reduce_* ops and arg-reductions (MIL reduction.py).

``axes`` absent reduces every axis; ``keep_dims`` defaults to False. The result has ``x``'s dtype: int32
inputs of the reductions that leave the integers (``reduce_mean``, ``reduce_l2_norm``, ``reduce_log_sum``,
``reduce_log_sum_exp``) are computed in fp32 and truncated toward zero, as coremltools' value inference
casts its numpy result back to the input dtype. ``reduce_argmax`` / ``reduce_argmin`` return int32 (from iOS17
on, ``output_dtype`` may ask for uint16); ties go to the first index.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from mlupdate.ops import OpContext, register
from mlupdate.ops.elementwise import axes_of, axis_of, flag, fp16_in_fp32, op_error

Reducer = Callable[[torch.Tensor, tuple[int, ...], bool], torch.Tensor]


def _prod(x: torch.Tensor, dims: tuple[int, ...], keep: bool) -> torch.Tensor:
    for d in sorted(dims, reverse=True):
        x = torch.prod(x, dim=d, keepdim=keep)
    return x


def _log_sum_exp(x: torch.Tensor, dims: tuple[int, ...], keep: bool) -> torch.Tensor:
    return torch.logsumexp(x, dim=dims, keepdim=keep)


_REDUCERS: dict[str, tuple[Reducer, bool]] = {  # name -> (reducer, needs floating point)
    "reduce_sum": (lambda x, d, k: torch.sum(x, dim=d, keepdim=k), False),
    "reduce_mean": (lambda x, d, k: torch.mean(x, dim=d, keepdim=k), True),
    "reduce_prod": (_prod, False),
    "reduce_max": (lambda x, d, k: torch.amax(x, dim=d, keepdim=k), False),
    "reduce_min": (lambda x, d, k: torch.amin(x, dim=d, keepdim=k), False),
    "reduce_l1_norm": (lambda x, d, k: torch.sum(torch.abs(x), dim=d, keepdim=k), False),
    "reduce_l2_norm": (lambda x, d, k: torch.sqrt(torch.sum(x * x, dim=d, keepdim=k)), True),
    "reduce_sum_square": (lambda x, d, k: torch.sum(x * x, dim=d, keepdim=k), False),
    "reduce_log_sum": (lambda x, d, k: torch.log(torch.sum(x, dim=d, keepdim=k)), True),
    "reduce_log_sum_exp": (_log_sum_exp, True),
}


def _reduction(reduce: Reducer, floating: bool) -> Callable[[OpContext, dict[str, Any]], torch.Tensor]:
    def kernel(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
        x = inputs["x"]
        if x.dim() < 1:
            raise op_error(ctx, "x must have rank 1 or more")
        dims = axes_of(ctx, x.dim())
        keep = bool(flag(ctx, "keep_dims", False))
        if dims is None:
            dims = tuple(range(x.dim()))
        elif not dims:  # an empty axes list reduces nothing (numpy's axis=()): reduce a new unit axis
            x, dims = x.unsqueeze(0), (0,)
            keep = False
        work = x if x.dtype.is_floating_point or not floating else x.to(torch.float32)
        return reduce(work, dims, keep).to(x.dtype)

    return kernel


for _name, (_reduce, _floating) in _REDUCERS.items():
    _kernel = _reduction(_reduce, _floating)
    # the sum of squares under the root would overflow fp16 long before the norm does
    register(_name)(fp16_in_fp32(_kernel) if _name == "reduce_l2_norm" else _kernel)


#: ``output_dtype`` of the iOS17 arg-reductions.
ARG_DTYPES = {"int32": torch.int32, "uint16": torch.uint16}


def _arg(largest: bool, since: int) -> Callable[[OpContext, dict[str, Any]], torch.Tensor]:
    def kernel(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
        x = inputs["x"]
        if x.dim() < 1:
            raise op_error(ctx, "x must have rank 1 or more")
        dim = axis_of(ctx, x.dim(), "axis", -1)
        keep = bool(flag(ctx, "keep_dims", False))
        name = str(flag(ctx, "output_dtype", "int32")) if since >= 17 else "int32"
        if name not in ARG_DTYPES:
            raise op_error(ctx, f"output_dtype '{name}' is not one of {sorted(ARG_DTYPES)}")
        fn = torch.argmax if largest else torch.argmin
        return fn(x, dim=dim, keepdim=keep).to(torch.int32).to(ARG_DTYPES[name])

    return kernel


for _since in (15, 17):
    register("reduce_argmax", since=_since)(_arg(True, _since))
    register("reduce_argmin", since=_since)(_arg(False, _since))
