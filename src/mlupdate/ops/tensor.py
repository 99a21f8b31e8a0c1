"""concat, split, stack, tile, pad, topk, ... (MIL tensor_operation.py).

Also the helpers the families of this package share for reading an op's parameters (:func:`axis_of`,
:func:`ints_of`) and for naming the op in errors (:func:`op_error`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from mlupdate.errors import LayerError
from mlupdate.layers.common import check_size
from mlupdate.layers.detection import NonMaximumSuppression
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
        raise op_error(ctx, f"{param} {axis} is out of range for a rank-{rank} tensor")
    return axis % max(rank, 1)


def ints_of(ctx: OpContext, inputs: dict[str, Any], param: str) -> list[int]:
    """An integer-vector parameter: its constant value, else (torch only, not exportable) its run-time value."""
    if param in ctx.consts:
        return [int(v) for v in np.asarray(ctx.consts[param]).reshape(-1)]
    if param not in inputs:
        raise op_error(ctx, f"the input '{param}' is missing")
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


@kernel("identity")
def _identity(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
    return inputs["x"].clone()


@kernel("band_part")
def _band_part(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
    x = inputs["x"]
    lower, upper = int(flag(ctx, "lower", -1)), int(flag(ctx, "upper", -1))
    m, n = int(x.shape[-2]), int(x.shape[-1])
    rows, cols = np.arange(m)[:, None], np.arange(n)[None, :]
    keep = np.ones((m, n), dtype=bool)
    if lower >= 0:
        keep &= rows - cols <= lower
    if upper >= 0:
        keep &= cols - rows <= upper
    return torch.where(torch.from_numpy(keep).to(x.device), x, torch.zeros_like(x))


@kernel("cumsum")
def _cumsum(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
    x = inputs["x"]
    dim = axis_of(ctx, x.dim(), "axis", 0)
    exclusive, reverse = bool(flag(ctx, "exclusive", False)), bool(flag(ctx, "reverse", False))
    y = x.flip(dim) if reverse else x
    out = torch.cumsum(y, dim).to(x.dtype)
    if exclusive:
        zero = torch.zeros_like(y.narrow(dim, 0, 1))
        out = torch.cat([zero, out.narrow(dim, 0, int(y.shape[dim]) - 1)], dim)
    return out.flip(dim) if reverse else out


def _value(inputs: dict[str, Any], param: str, device: torch.device | None = None) -> torch.Tensor:
    value = inputs.get(param)
    return torch.tensor(0.0, device=device) if value is None else value.reshape(())


@kernel("fill")
def _fill(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
    shape = sized(ctx, ints_of(ctx, inputs, "shape"))
    value = _value(inputs, "value")
    return value.expand(shape).clone()


@kernel("fill_like", since=16)
def _fill_like(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
    ref = inputs["ref_tensor"]
    return _value(inputs, "value", ref.device).expand(ref.shape).clone()


@kernel("shape")
def _shape(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
    return torch.tensor([int(d) for d in inputs["x"].shape], dtype=torch.int32, device=inputs["x"].device)


@kernel("range_1d")
def _range_1d(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
    """Torch only when ``start``, ``end`` or ``step`` is computed at run time (the length depends on them)."""
    vals = {k: inputs[k].reshape(()) for k in ("start", "end", "step")}
    dtype = vals["start"].dtype
    start, end, step = (v.item() for v in vals.values())
    if step == 0:
        raise op_error(ctx, "step is 0")
    count = max(0, int(np.ceil((end - start) / step)))
    sized(ctx, [count])
    return (torch.arange(count, dtype=torch.float64, device=vals["start"].device) * step + start).to(dtype)


@kernel("one_hot")
def _one_hot(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
    indices = inputs["indices"].long()
    size = int(ints_of(ctx, inputs, "one_hot_vector_size")[0])
    dim = axis_of(ctx, indices.dim() + 1, "axis", -1)
    on = inputs.get("on_value", torch.tensor(1.0, device=indices.device)).reshape(())
    off = inputs.get("off_value", torch.tensor(0.0, device=indices.device)).reshape(()).to(on.dtype)
    sized(ctx, [*indices.shape, size])
    hot = (indices.unsqueeze(-1) == torch.arange(size, device=indices.device)).movedim(indices.dim(), dim)
    return torch.where(hot, on, off)


@kernel("pad")
def _pad(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
    x = inputs["x"]
    amounts = ints_of(ctx, inputs, "pad")
    mode = str(flag(ctx, "mode", "constant"))
    if len(amounts) % 2 or len(amounts) > 2 * x.dim() or min(amounts, default=0) < 0:
        raise op_error(ctx, f"pad {amounts} must hold non-negative (before, after) pairs for at most "
                            f"{x.dim()} axes")
    first = x.dim() - len(amounts) // 2
    for i, (a, b) in enumerate(zip(amounts[::2], amounts[1::2], strict=True)):
        size = int(x.shape[first + i])
        limit = size - 1 if mode == "reflect" else size
        if mode != "constant" and max(a, b) > limit:
            raise op_error(ctx, f"{mode} padding of axis {first + i} (size {size}) is at most {limit}, got {a, b}")
    sized(ctx, [int(d) + (amounts[2 * (i - first)] + amounts[2 * (i - first) + 1] if i >= first else 0)
                for i, d in enumerate(x.shape)])
    torch_pad = [p for i in reversed(range(len(amounts) // 2)) for p in amounts[2 * i:2 * i + 2]]
    if mode == "constant":
        value = float(np.asarray(ctx.const("constant_val", 0.0)).reshape(-1)[0])
        return F.pad(x, torch_pad, mode="constant", value=value)
    if mode not in ("reflect", "replicate"):
        raise op_error(ctx, f"mode '{mode}' is not one of constant, reflect, replicate")
    return _edge_pad(x, amounts, first, mode)


def _edge_pad(x: torch.Tensor, amounts: list[int], first: int, mode: str) -> torch.Tensor:
    """Reflect / replicate padding of any rank, one axis at a time by index selection."""
    for i in range(len(amounts) // 2):
        dim, (a, b) = first + i, amounts[2 * i:2 * i + 2]
        size = int(x.shape[dim])
        pos = np.arange(-a, size + b)
        if mode == "reflect":
            pos = np.abs(pos)
            pos = np.where(pos > size - 1, 2 * (size - 1) - pos, pos)
        index = np.clip(pos, 0, size - 1)
        x = x.index_select(dim, torch.from_numpy(index).to(x.device))
    return x


@kernel("tile")
def _tile(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
    x = inputs["x"]
    reps = ints_of(ctx, inputs, "reps")
    if len(reps) != x.dim():
        raise op_error(ctx, f"reps {reps} must have one entry per axis of the rank-{x.dim()} input")
    sized(ctx, [int(d) * r for d, r in zip(x.shape, reps, strict=True)])
    return x.repeat(reps)


def _sort_index(x: torch.Tensor, dim: int, ascending: bool, k: int | None = None) -> torch.Tensor:
    """The first ``k`` positions of the stable sort order: equal values keep their input order.

    An ONNX export sorts with ``TopK``, whose definition puts the lower index first among equal values.
    """
    size = int(x.shape[dim])
    if torch.jit.is_tracing():
        return torch.topk(x, size if k is None else k, dim=dim, largest=not ascending, sorted=True).indices
    order = torch.sort(x, dim=dim, descending=not ascending, stable=True).indices
    return order if k is None else order.narrow(dim, 0, k)


@kernel("argsort")
def _argsort(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
    x = inputs["x"]
    dim = axis_of(ctx, x.dim(), "axis", -1)
    return _sort_index(x, dim, bool(flag(ctx, "ascending", False))).to(torch.int32)


@kernel("topk")
@kernel("topk", since=16)
@kernel("topk", since=17)
def _topk(ctx: OpContext, inputs: dict[str, Any]) -> tuple[torch.Tensor, ...]:
    x = inputs["x"]
    dim = axis_of(ctx, x.dim(), "axis", -1)
    k = int(flag(ctx, "k", 1))
    size = int(x.shape[dim])
    if not 0 < k <= size:
        raise op_error(ctx, f"k {k} is outside [1, {size}], the size of axis {dim}")
    index = _sort_index(x, dim, bool(flag(ctx, "ascending", False)), k)
    # sort=False (iOS16) keeps the sorted order, as coremltools' op test expects of Core ML.
    values = torch.gather(x, dim, index)
    if ctx.opset >= 16 and not bool(flag(ctx, "return_indices", True)):
        return (values,)
    dtype = str(flag(ctx, "output_indices_dtype", "int32")) if ctx.opset >= 17 else "int32"
    return values, index.to(torch.uint16 if dtype == "uint16" else torch.int32)


@kernel("flatten2d")
def _flatten2d(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
    x = inputs["x"]
    axis = int(flag(ctx, "axis", 1))
    if not -x.dim() <= axis <= x.dim():
        raise op_error(ctx, f"axis {axis} is out of range for a rank-{x.dim()} tensor")
    axis = axis + x.dim() if axis < 0 else axis
    dims = [int(d) for d in x.shape]
    return x.reshape(int(np.prod(dims[:axis], dtype=np.int64)), int(np.prod(dims[axis:], dtype=np.int64)))


@kernel("concat")
def _concat(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
    values = list(inputs["values"])
    dim = axis_of(ctx, values[0].dim(), "axis", None)
    if bool(flag(ctx, "interleave", False)):
        return torch.stack(values, dim + 1).flatten(dim, dim + 1)
    return torch.cat([v.to(values[0].dtype) for v in values], dim)


@kernel("stack")
def _stack(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
    values = list(inputs["values"])
    return torch.stack(values, axis_of(ctx, values[0].dim() + 1, "axis", None))


@kernel("split")
def _split(ctx: OpContext, inputs: dict[str, Any]) -> tuple[torch.Tensor, ...]:
    x = inputs["x"]
    dim = axis_of(ctx, x.dim(), "axis", None)
    size = int(x.shape[dim])
    sizes = ctx.const("split_sizes")
    if sizes is not None:
        sizes = [int(s) for s in np.asarray(sizes).reshape(-1)]
    else:
        count = int(flag(ctx, "num_splits", 0))
        if count <= 0 or size % count:
            raise op_error(ctx, f"num_splits {count} does not divide axis {dim} of size {size} evenly")
        sizes = [size // count] * count
    if sum(sizes) != size or min(sizes) < 0:
        raise op_error(ctx, f"split_sizes {sizes} do not add up to the size {size} of axis {dim}")
    return tuple(torch.split(x, sizes, dim))


@kernel("non_zero")
def _non_zero(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
    """Torch only: the output's length depends on the input's values."""
    return torch.nonzero(inputs["x"]).to(torch.int32)


@kernel("non_maximum_suppression")
def _non_maximum_suppression(ctx: OpContext, inputs: dict[str, Any]) -> tuple[torch.Tensor, ...]:
    boxes, scores = inputs["boxes"], inputs["scores"]
    score = float(flag(ctx, "score_threshold"))
    out = _nms(ctx, boxes, scores, score)
    return out[0], out[1], out[2].to(torch.int32), out[3].to(torch.int32)


@kernel("non_maximum_suppression", since=17)
def _non_maximum_suppression_17(ctx: OpContext, inputs: dict[str, Any]) -> tuple[torch.Tensor, ...]:
    """iOS17: boxes ``[n, 4, B]`` and scores ``[n, K, B]``, no score threshold and no count output."""
    boxes, scores = inputs["boxes"].transpose(-1, -2), inputs["scores"].transpose(-1, -2)
    out = _nms(ctx, boxes, scores, float("-inf"))
    return out[0].transpose(-1, -2), out[1].transpose(-1, -2), out[2].to(torch.int32)


def _nms(ctx: OpContext, boxes: torch.Tensor, scores: torch.Tensor, score: float) -> tuple[torch.Tensor, ...]:
    """The neural-network layer's NMS (same semantics) on ``[n, B, 4]`` boxes, one example of ``n`` batches."""
    iou = float(flag(ctx, "iou_threshold"))
    max_boxes = int(flag(ctx, "max_boxes"))
    per_class = bool(flag(ctx, "per_class_suppression", False))
    if boxes.dim() != 3 or scores.dim() != 3 or boxes.shape[:2] != scores.shape[:2] or boxes.shape[-1] != 4:
        raise op_error(ctx, f"boxes {list(boxes.shape)} and scores {list(scores.shape)} do not describe the "
                            "same boxes")
    if max_boxes <= 0:
        raise op_error(ctx, f"max_boxes must be positive, got {max_boxes}")
    try:
        out = NonMaximumSuppression(iou, score, max_boxes, per_class)(boxes[None], scores[None])
    except ValueError as exc:
        raise op_error(ctx, str(exc)) from None
    return tuple(o[0] for o in out)
