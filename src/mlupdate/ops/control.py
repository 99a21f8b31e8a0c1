"""cond, while_loop and lists (MIL ``iOS15/control_flow.py``); ``const`` is folded by the compiler.

The nested blocks arrive compiled in ``ctx.blocks`` (callables over the block's inputs that see the enclosing
scope). A MIL list is held as a Python list of tensors, copied on every write (ops are functional). Programs with
control flow run on torch: an ONNX export would fix the branch or the trip count it was traced with.
"""

from __future__ import annotations

from typing import Any

import torch

from mlupdate.errors import LayerError
from mlupdate.ops import REFUSED, OpContext, register
from mlupdate.ops.precision import torch_dtype

_LIST_DTYPES = {"fp16": "float16", "fp32": "float32", "int32": "int32", "bool": "bool"}


def _flag(ctx: OpContext, value: Any, what: str) -> bool:
    if not isinstance(value, torch.Tensor) or value.numel() != 1:
        raise LayerError(f"Op '{ctx.name}' ({ctx.op_type}): {what} must be a single bool.")
    return bool(value.reshape(()).item())


@register("cond")
def cond(ctx: OpContext, inputs: dict[str, Any]) -> tuple[Any, ...]:
    """The outputs of the first block when ``pred`` is true, else of the second."""
    true_fn, false_fn = ctx.blocks
    return tuple(true_fn() if _flag(ctx, inputs["pred"], "pred") else false_fn())


@register("while_loop")
def while_loop(ctx: OpContext, inputs: dict[str, Any]) -> tuple[Any, ...]:
    """Run the body block on ``loop_vars`` while the condition block returns true; the final loop vars."""
    cond_fn, body_fn = ctx.blocks
    values = tuple(inputs["loop_vars"])
    while _flag(ctx, cond_fn(*values)[0], "the condition block's output"):
        values = tuple(body_fn(*values))
        if len(values) != len(inputs["loop_vars"]):
            raise LayerError(f"Op '{ctx.name}' (while_loop): the body returns {len(values)} values for "
                             f"{len(inputs['loop_vars'])} loop vars.")
    return values


@register("make_list")
def make_list(ctx: OpContext, inputs: dict[str, Any]) -> list[Any]:
    """A list of ``init_length`` elements: zeros of ``elem_shape`` when it is known, else unset."""
    length = int(inputs["init_length"].reshape(()).item()) if "init_length" in inputs else 1
    shape = [int(s) if getattr(s, "dtype", None) is not None and s.dtype.kind in "iu" else None
             for s in (ctx.const("elem_shape") or [])]
    dtype = torch_dtype(_LIST_DTYPES.get(str(ctx.const("dtype", "fp32")), "float32"))
    if None in shape:
        return [None] * length
    return [torch.zeros(shape, dtype=dtype) for _ in range(length)]


def _index(ctx: OpContext, value: Any) -> int:
    return int(value.reshape(()).item())


@register("list_length")
def list_length(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
    """The number of elements."""
    return torch.tensor(len(inputs["ls"]), dtype=torch.int32)


@register("list_write")
def list_write(ctx: OpContext, inputs: dict[str, Any]) -> list[Any]:
    """A copy of ``ls`` with ``value`` at ``index`` (grown with zeros when the index is past the end)."""
    ls = list(inputs["ls"])
    i = _index(ctx, inputs["index"])
    if i < 0:
        raise LayerError(f"Op '{ctx.name}' (list_write): index {i} is negative.")
    _grow(ls, i, inputs["value"])
    ls[i] = inputs["value"]
    return ls


def _grow(ls: list[Any], i: int, value: torch.Tensor) -> None:
    """Extend ``ls`` to hold index ``i``; the new elements are zeros like ``value`` (as Core ML fills them)."""
    ls += [torch.zeros_like(value) for _ in range(i + 1 - len(ls))]


def _element(ctx: OpContext, ls: list[Any], i: int) -> torch.Tensor:
    if not 0 <= i < len(ls) or ls[i] is None:
        raise LayerError(f"Op '{ctx.name}' ({ctx.op_type}) reads element {i} of a list of {len(ls)} that is not set.")
    return ls[i]


@register("list_read")
def list_read(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
    """Element ``index``."""
    return _element(ctx, inputs["ls"], _index(ctx, inputs["index"]))


@register("list_gather")
def list_gather(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
    """The elements at ``indices``, stacked along a new first axis."""
    return torch.stack([_element(ctx, inputs["ls"], int(i)) for i in inputs["indices"].reshape(-1).tolist()])


@register("list_scatter")
def list_scatter(ctx: OpContext, inputs: dict[str, Any]) -> list[Any]:
    """A copy of ``ls`` with ``value[k]`` at ``indices[k]`` (grown with zeros as needed)."""
    ls = list(inputs["ls"])
    for k, i in enumerate(inputs["indices"].reshape(-1).tolist()):
        if i < 0:
            raise LayerError(f"Op '{ctx.name}' (list_scatter): index {i} is negative.")
        _grow(ls, i, inputs["value"][k])
        ls[i] = inputs["value"][k]
    return ls


REFUSED["_const_symbolic"] = ("a placeholder of coremltools' converter for symbolic shapes, which it replaces before "
                              "saving; it never appears in a saved program")
