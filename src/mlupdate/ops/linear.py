"""linear, matmul, einsum (MIL linear.py).

``linear`` is ``x @ weight.T + bias`` for ``x`` of any rank from 1 (the definition says 1 to 3; Core ML runs more).
``matmul`` follows numpy's matmul (1-D operands promoted and the inserted axis removed, batch axes broadcast), after
``transpose_x`` / ``transpose_y`` swap the last two axes of an operand of rank 2 or more. From iOS17 on the weights,
and the constant operand of ``matmul``, may have another dtype than the computed input: they are converted to that
input's dtype, which is the output's. ``einsum`` supports the two equations the definition lists (and their
renamings): ``nchw,nwhu->nchu`` and ``chw,whr->chr``, broadcasting ``n`` and ``h`` when one side has 1.
"""

from __future__ import annotations

from typing import Any

import torch

from mlupdate.ops import OpContext, register
from mlupdate.ops.common import flag, op_error


def _matmul_any(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``x @ y``; int32 operands are multiplied in float64 (exact below 2^53; CUDA has no integer matmul)."""
    if x.dtype.is_floating_point:
        return torch.matmul(x, y)
    return torch.matmul(x.double(), y.double()).to(x.dtype)


@register("linear")
def _linear(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
    x, weight = inputs["x"], inputs["weight"]
    if x.dim() < 1:  # the definition says rank 1 to 3; Core ML runs rank 5 (coremltools' TestLinear stress test)
        raise op_error(ctx, "x must have rank 1 or more, not 0")
    if weight.dim() != 2 or weight.shape[1] != x.shape[-1]:
        raise op_error(ctx, f"weight has shape {list(weight.shape)}; it must be [D_out, D_in] with D_in = "
                            f"{x.shape[-1]} (the last axis of x)")
    out = _matmul_any(x, weight.to(device=x.device, dtype=x.dtype).t())
    if "bias" in inputs:
        bias = inputs["bias"]
        if bias.shape != (weight.shape[0],):
            raise op_error(ctx, f"bias has shape {list(bias.shape)}; it must be [D_out] = [{weight.shape[0]}]")
        out = out + bias.to(device=x.device, dtype=x.dtype)
    return out


@register("matmul")
def _matmul(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
    x, y = inputs["x"], inputs["y"]
    if x.dim() < 1 or y.dim() < 1:
        raise op_error(ctx, f"x and y must have rank 1 or more, not {x.dim()} and {y.dim()}")
    if x.dtype != y.dtype:  # iOS17: one is constant and the output takes the other's dtype
        if "y" in ctx.consts:
            y = y.to(x.dtype)
        else:
            x = x.to(y.dtype)
    if bool(flag(ctx, "transpose_x", False)) and x.dim() >= 2:
        x = x.transpose(-1, -2)
    if bool(flag(ctx, "transpose_y", False)) and y.dim() >= 2:
        y = y.transpose(-1, -2)
    k1, k2 = x.shape[-1], y.shape[-2] if y.dim() >= 2 else y.shape[0]
    if k1 != k2:
        raise op_error(ctx, f"x {list(x.shape)} and y {list(y.shape)} (after transposes) do not multiply: "
                            f"{k1} against {k2}")
    try:
        torch.broadcast_shapes(x.shape[:-2], y.shape[:-2])
    except RuntimeError:
        raise op_error(ctx, f"the batch axes of x {list(x.shape)} and y {list(y.shape)} do not broadcast") from None
    return _matmul_any(x, y)


def _letters(equation: str) -> tuple[list[int], list[int], list[int]]:
    """The equation's three terms with each letter replaced by its order of first appearance."""
    lhs, _, out = equation.replace(" ", "").partition("->")
    terms = lhs.split(",") + [out]
    order: dict[str, int] = {}
    for term in terms:
        for letter in term:
            order.setdefault(letter, len(order))
    first, second, third = ([order[c] for c in term] for term in terms)
    return first, second, third


@register("einsum")
def _einsum(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
    values = inputs["values"]
    equation = str(flag(ctx, "equation", ""))
    if len(values) != 2:
        raise op_error(ctx, f"values must hold 2 tensors, not {len(values)}")
    a, b = values
    pattern = _letters(equation) if equation.count(",") == 1 and equation.count("->") == 1 else None
    rank4 = pattern == ([0, 1, 2, 3], [0, 3, 2, 4], [0, 1, 2, 4])
    rank3 = pattern == ([0, 1, 2], [2, 1, 3], [0, 1, 3])
    if not (rank4 or rank3):
        raise op_error(ctx, f"equation '{equation}' is not supported: Core ML runs 'nchw,nwhu->nchu' and "
                            "'chw,whr->chr' (and their renamings)")
    if a.dim() != b.dim() or a.dim() != (4 if rank4 else 3):
        raise op_error(ctx, f"the equation needs two rank-{4 if rank4 else 3} tensors, got {list(a.shape)} and "
                            f"{list(b.shape)}")
    if a.shape[-1] != b.shape[-3]:
        raise op_error(ctx, f"{list(a.shape)} and {list(b.shape)} do not multiply: {a.shape[-1]} against "
                            f"{b.shape[-3]}")
    # [.., C, H, W1] x [.., W1, H, W2]: matmul over H as a batch axis, then back to [.., C, H, W2]
    try:
        out = torch.matmul(a.transpose(-3, -2), b.transpose(-3, -2))
    except RuntimeError:
        raise op_error(ctx, f"the batch axes of {list(a.shape)} and {list(b.shape)} do not broadcast") from None
    return out.transpose(-3, -2)
