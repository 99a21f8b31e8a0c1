"""Layers that make tensors of a given or computed shape, or read shapes.

fillLike, fillStatic, fillDynamic, broadcastToLike, broadcastToStatic, broadcastToDynamic,
rangeStatic, rangeDynamic, reshapeDynamic, getShape, sliceDynamic.

ND blobs are held as ``[N, *coreml_shape]``. Shape-carrying inputs (a rank-1 Core ML tensor of
``r`` values) are held as ``[N, r]`` float tensors, and getShape returns the Core ML shape of each
example (without ``N``) as a held ``[N, rank]`` tensor. The layers without inputs (fillStatic,
rangeStatic) return one example, ``[1, *shape]``; the graph expands it to ``N``.

When the output's shape comes from input values (fillDynamic, broadcastToDynamic, rangeDynamic,
reshapeDynamic, sliceDynamic), the module sets ``per_example = True`` (the network runs one example
at a time, ``N == 1``) and ``exportable = False`` (an ONNX export would freeze the shape it saw
while tracing), and reads the values from example 0.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from mlupdate.errors import SpecError
from mlupdate.layers import BuildContext, register
from mlupdate.layers.common import check_size, int_list, nd_rank


def held_values(t: torch.Tensor, what: str) -> list[float]:
    """The Core ML values of example 0 of a held ``[N, ...]`` tensor (all examples must agree)."""
    if t.dim() < 1 or t.shape[0] < 1:
        raise ValueError(f"the {what} input is empty")
    row = t[0].reshape(-1)
    if t.shape[0] > 1 and not bool((t.reshape(t.shape[0], -1) == row).all()):
        raise ValueError(f"the examples give different {what} values; run them one at a time")
    return [float(v) for v in row.tolist()]


def held_ints(t: torch.Tensor, what: str) -> list[int]:
    """Like :func:`held_values`, as integers (a value that is not an integer raises)."""
    out = []
    for v in held_values(t, what):
        if not math.isfinite(v) or abs(v - round(v)) > 1e-3:
            raise ValueError(f"the {what} input holds {v}, which is not an integer")
        out.append(int(round(v)))
    return out


def held_scalar(t: torch.Tensor, what: str) -> float:
    """The one value of a scalar (or shape ``(1,)``) input."""
    values = held_values(t, what)
    if len(values) != 1:
        raise ValueError(f"the {what} input must hold one value, not {len(values)}")
    return values[0]


def _shape(values: list[int], what: str) -> list[int]:
    if not values:
        raise ValueError(f"the {what} is empty; Core ML tensors have rank 1 or more")
    if any(v < 0 for v in values):
        raise ValueError(f"the {what} {values} has a negative dimension")
    return values


def broadcast_to(x: torch.Tensor, target: list[int]) -> torch.Tensor:
    """Held ``x`` broadcast (numpy ``broadcast_to`` rules) to the Core ML shape ``target``."""
    have = [int(d) for d in x.shape[1:]]
    if len(have) > len(target):
        raise ValueError(f"a rank-{len(have)} input cannot broadcast to the rank-{len(target)} shape {target}")
    have = [1] * (len(target) - len(have)) + have
    for h, t in zip(have, target, strict=True):
        if h not in (1, t):
            raise ValueError(f"the input shape {have} does not broadcast to {target}")
    return x.reshape((x.shape[0], *have)).expand((x.shape[0], *target))


class FillLike(nn.Module):
    """``fillLike``: ``value`` everywhere, in the shape of the input."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full_like(x, self.value)


@register("fillLike")
def _fill_like(p: Any, ctx: BuildContext) -> nn.Module:
    return FillLike(float(p.value))


class FillStatic(nn.Module):
    """``fillStatic``: ``value`` everywhere, in the fixed ``targetShape`` (one example)."""

    def __init__(self, value: float, shape: list[int]) -> None:
        super().__init__()
        check_size(shape, f"targetShape {shape}")
        self.register_buffer("out", torch.full((1, *shape), value), persistent=False)

    def forward(self) -> torch.Tensor:
        return self.out


@register("fillStatic")
def _fill_static(p: Any, ctx: BuildContext) -> nn.Module:
    shape = int_list(p.targetShape)
    if not shape:
        raise SpecError(f"fillStatic layer '{ctx.name}' has no targetShape; Core ML requires one. Set it.")
    return FillStatic(float(p.value), shape)


class FillDynamic(nn.Module):
    """``fillDynamic``: ``value`` everywhere, in the shape held by the input."""

    per_example = True
    exportable = False

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def forward(self, shape: torch.Tensor) -> torch.Tensor:
        dims = _shape(held_ints(shape, "shape"), "shape")
        check_size(dims, f"shape {dims}")
        return torch.full((shape.shape[0], *dims), self.value, dtype=shape.dtype, device=shape.device)


@register("fillDynamic")
def _fill_dynamic(p: Any, ctx: BuildContext) -> nn.Module:
    return FillDynamic(float(p.value))


class BroadcastToLike(nn.Module):
    """``broadcastToLike``: the first input broadcast to the second input's shape."""

    def forward(self, x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        return broadcast_to(x, [int(d) for d in ref.shape[1:]])


@register("broadcastToLike")
def _broadcast_to_like(p: Any, ctx: BuildContext) -> nn.Module:
    return BroadcastToLike()


class BroadcastToStatic(nn.Module):
    """``broadcastToStatic``: the input broadcast to ``targetShape``."""

    def __init__(self, shape: list[int]) -> None:
        super().__init__()
        self.shape = shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return broadcast_to(x, self.shape)


@register("broadcastToStatic")
def _broadcast_to_static(p: Any, ctx: BuildContext) -> nn.Module:
    shape = int_list(p.targetShape)
    if not shape:
        raise SpecError(f"broadcastToStatic layer '{ctx.name}' has no targetShape; Core ML requires one. Set it.")
    return BroadcastToStatic(shape)


class BroadcastToDynamic(nn.Module):
    """``broadcastToDynamic``: the first input broadcast to the shape held by the second."""

    per_example = True
    exportable = False

    def forward(self, x: torch.Tensor, shape: torch.Tensor) -> torch.Tensor:
        return broadcast_to(x, _shape(held_ints(shape, "shape"), "shape"))


@register("broadcastToDynamic")
def _broadcast_to_dynamic(p: Any, ctx: BuildContext) -> nn.Module:
    return BroadcastToDynamic()


def arange(start: float, end: float, step: float) -> torch.Tensor:
    """``numpy.arange(start, end, step)`` as a held ``[1, L]`` float tensor (empty when the range is)."""
    if step == 0 or not all(math.isfinite(v) for v in (start, end, step)):
        raise ValueError(f"range needs finite bounds and a non-zero step (got {start}, {end}, {step})")
    n = max(0, math.ceil((end - start) / step))
    check_size(n, "the range")
    return (torch.arange(n, dtype=torch.float64) * step + start).float().reshape(1, n)


class RangeStatic(nn.Module):
    """``rangeStatic``: ``numpy.arange(startValue, endValue, stepSizeValue)`` (one example)."""

    def __init__(self, start: float, end: float, step: float) -> None:
        super().__init__()
        self.register_buffer("out", arange(start, end, step), persistent=False)

    def forward(self) -> torch.Tensor:
        return self.out


@register("rangeStatic")
def _range_static(p: Any, ctx: BuildContext) -> nn.Module:
    start, end, step = float(p.startValue), float(p.endValue), float(p.stepSizeValue)
    if step == 0 or not all(math.isfinite(v) for v in (start, end, step)):
        raise SpecError(f"rangeStatic layer '{ctx.name}' has start {start}, end {end}, step {step}; Core ML needs "
                        "finite values and a non-zero step. Fix the layer's parameters.")
    return RangeStatic(start, end, step)


class RangeDynamic(nn.Module):
    """``rangeDynamic``: inputs ``end``, then optionally ``start`` and ``step``, overriding the parameters."""

    per_example = True
    exportable = False

    def __init__(self, start: float, step: float) -> None:
        super().__init__()
        self.start, self.step = start, step

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        if not 1 <= len(inputs) <= 3:
            raise ValueError(f"rangeDynamic takes 1 to 3 inputs (end, start, step), not {len(inputs)}")
        end, rest = inputs[0], inputs[1:]
        e = held_scalar(end, "end")
        s = held_scalar(rest[0], "start") if len(rest) > 0 else self.start
        st = held_scalar(rest[1], "step") if len(rest) > 1 else self.step
        return arange(s, e, st).to(device=end.device, dtype=end.dtype)


@register("rangeDynamic")
def _range_dynamic(p: Any, ctx: BuildContext) -> nn.Module:
    return RangeDynamic(float(p.startValue), float(p.stepSizeValue))


class ReshapeDynamic(nn.Module):
    """``reshapeDynamic``: the first input reshaped to the shape held by the second."""

    per_example = True
    exportable = False

    def forward(self, x: torch.Tensor, shape: torch.Tensor) -> torch.Tensor:
        dims = held_ints(shape, "shape")
        if not dims:
            raise ValueError("the shape is empty; Core ML tensors have rank 1 or more")
        return x.reshape((x.shape[0], *dims))


@register("reshapeDynamic")
def _reshape_dynamic(p: Any, ctx: BuildContext) -> nn.Module:
    return ReshapeDynamic()


class GetShape(nn.Module):
    """``getShape``: the Core ML shape of each example, ``[N, rank]``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # _shape_as_tensor exports as an ONNX Shape node (torch.tensor(x.shape) would freeze the sizes)
        dims = torch._shape_as_tensor(x)[1:].to(device=x.device, dtype=x.dtype)
        return dims.unsqueeze(0).expand(x.shape[0], nd_rank(x))


@register("getShape")
def _get_shape(p: Any, ctx: BuildContext) -> nn.Module:
    return GetShape()


class SliceDynamic(nn.Module):
    """``sliceDynamic``: numpy slicing per axis; inputs 2..7 are begin, end, strides and the three masks.

    An input present overrides its parameter. A squeezed axis keeps only the element at its begin index
    (the masks do not apply to it), as in the proto's example ``input[:3:2, 2, ::2]``.
    """

    per_example = True
    exportable = False

    def __init__(self, end: list[int], strides: list[int], bmask: list[bool], emask: list[bool],
                 squeeze: list[bool]) -> None:
        super().__init__()
        self.params = (end, strides, bmask, emask, squeeze)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        if not 2 <= len(inputs) <= 7:
            raise ValueError(f"sliceDynamic takes 2 to 7 inputs (data, beginIds, ...), not {len(inputs)}")
        x, begin, rest = inputs[0], inputs[1], inputs[2:]
        rank = nd_rank(x)
        names = ("endIds", "strides", "beginMasks", "endMasks", "squeezeMasks")
        defaults: tuple[Any, ...] = (None, 1, False, False, False)
        begins = self._fit(held_ints(begin, "beginIds"), rank, "beginIds", None, True)
        cols = []
        for k, (name, default) in enumerate(zip(names, defaults, strict=True)):
            if k < len(rest):
                values: list[Any] = held_ints(rest[k], name) if k < 2 else [bool(v) for v in held_values(rest[k], name)]
                cols.append(self._fit(values, rank, name, default, True))
            else:
                cols.append(self._fit(list(self.params[k]), rank, name, default, False))
        ends, strides, bmask, emask, squeeze = cols
        squeezed = []
        for a in range(rank):
            d, n, s = a + 1, int(x.shape[a + 1]), strides[a]
            if s == 0:
                raise ValueError(f"stride 0 on axis {a}")
            if squeeze[a]:
                i = begins[a]  # as TensorFlow's shrink axis: the begin index, whatever the masks say
                if not -n <= i < n:
                    raise IndexError(f"begin index {i} of squeezed axis {a} is out of range for size {n}")
                x = x.narrow(d, i % n, 1)
                squeezed.append(d)
                continue
            idx = range(*slice(None if bmask[a] else begins[a], None if emask[a] else ends[a], s).indices(n))
            if idx == range(n):
                continue
            if s > 0:
                x = x[(slice(None),) * d + (slice(idx.start, idx.stop, s),)]
            else:
                x = x.index_select(d, torch.tensor(list(idx), dtype=torch.long, device=x.device))
        for d in reversed(squeezed):
            x = x.squeeze(d)
        return x if x.dim() > 1 else x.reshape(x.shape[0], 1)

    @staticmethod
    def _fit(values: list[Any], rank: int, name: str, default: Any, given: bool) -> list[Any]:
        """``values`` for each of the ``rank`` axes: an input must match; parameters may be longer."""
        if len(values) == rank or (not given and len(values) > rank):
            return values[:rank]
        if not values and not given and default is not None:
            return [default] * rank
        raise ValueError(f"{name} has {len(values)} values for a rank-{rank} input")


@register("sliceDynamic")
def _slice_dynamic(p: Any, ctx: BuildContext) -> nn.Module:
    return SliceDynamic(int_list(p.endIds), int_list(p.strides), [bool(v) for v in p.beginMasks],
                        [bool(v) for v in p.endMasks], [bool(v) for v in p.squeezeMasks])

