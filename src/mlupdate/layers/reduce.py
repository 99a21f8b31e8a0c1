"""Reductions: ``reduce`` (legacy, over C/H/W/HW/CHW), the ND ``reduce*`` layers, ``argMax``/``argMin``, ``topK``.

Axes are Core ML axes (the graph's example axis is never reduced). A reduction whose result
would be rank 0 returns ``[1]``, as Core ML does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from mlupdate.layers import BuildContext, register
from mlupdate.layers.common import int_list, nd_dim, nd_dims, nd_rank

Reducer = Callable[[torch.Tensor, tuple[int, ...], bool], torch.Tensor]


def _prod(x: torch.Tensor, dims: tuple[int, ...], keep: bool) -> torch.Tensor:
    for d in sorted((d % x.dim() for d in dims), reverse=True):
        x = torch.prod(x, dim=d, keepdim=keep)
    return x


_ND: dict[str, Reducer] = {
    "reduceSum": lambda x, d, k: torch.sum(x, dim=d, keepdim=k),
    "reduceMean": lambda x, d, k: torch.mean(x, dim=d, keepdim=k),
    "reduceMax": lambda x, d, k: torch.amax(x, dim=d, keepdim=k),
    "reduceMin": lambda x, d, k: torch.amin(x, dim=d, keepdim=k),
    "reduceProd": _prod,
    "reduceL1": lambda x, d, k: torch.sum(torch.abs(x), dim=d, keepdim=k),
    "reduceL2": lambda x, d, k: torch.sqrt(torch.sum(x * x, dim=d, keepdim=k)),
    "reduceSumSquare": lambda x, d, k: torch.sum(x * x, dim=d, keepdim=k),
    "reduceLogSum": lambda x, d, k: torch.log(torch.sum(x, dim=d, keepdim=k)),
    "reduceLogSumExp": lambda x, d, k: torch.logsumexp(x, dim=d, keepdim=k),
}


class Reduce(nn.Module):
    """One ND reduction over ``axes`` (or all non-batch axes), keeping the reduced axes or not."""

    def __init__(self, kind: str, axes: list[int], keep: bool, reduce_all: bool) -> None:
        super().__init__()
        self.kind, self.axes, self.keep, self.all = kind, axes, keep, reduce_all

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dims = tuple(range(1, x.dim())) if self.all or not self.axes else nd_dims(self.axes, x)
        y = _ND[self.kind](x, dims, self.keep)
        return y.reshape(x.shape[0], 1) if y.dim() == 1 else y


def _nd_builder(kind: str) -> Callable[[Any, BuildContext], nn.Module]:
    return lambda p, ctx: Reduce(kind, int_list(p.axes), bool(p.keepDims), bool(p.reduceAll))


for _kind in _ND:
    register(_kind)(_nd_builder(_kind))


SUM, AVG, PROD, LOGSUM, SUMSQUARE, L1, L2, MAX, MIN, ARGMAX = range(10)
_AXES = {0: (-3, -2, -1), 1: (-2, -1), 2: (-3,), 3: (-2,), 4: (-1,)}


class LegacyReduce(nn.Module):
    """``reduce`` (ReduceLayerParams): SUM, AVG, PROD, LOGSUM (of ``x + eps``), SUMSQUARE, L1, L2, MAX, MIN, ARGMAX.

    The reduced axes are kept with size 1.
    """

    def __init__(self, mode: int, axis: int, eps: float) -> None:
        super().__init__()
        self.mode, self.dims, self.eps = mode, _AXES[axis], eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: PLR0911 - a flat dispatch table
        m, d = self.mode, self.dims
        if -min(d) > x.dim() - 1:
            raise ValueError(f"the reduced axes {list(d)} need an input of rank {-min(d)} or more, "
                             f"got rank {x.dim() - 1}")
        if m == ARGMAX:
            return torch.argmax(x, dim=d[0], keepdim=True).to(x.dtype)
        if m == SUM:
            return torch.sum(x, dim=d, keepdim=True)
        if m == AVG:
            return torch.mean(x, dim=d, keepdim=True)
        if m == PROD:
            return _prod(x, d, True)
        if m == LOGSUM:
            return torch.sum(torch.log(x + self.eps), dim=d, keepdim=True)
        if m == SUMSQUARE:
            return torch.sum(x * x, dim=d, keepdim=True)
        if m == L1:
            return torch.sum(torch.abs(x), dim=d, keepdim=True)
        if m == L2:
            return torch.sqrt(torch.sum(x * x, dim=d, keepdim=True))
        if m == MAX:
            return torch.amax(x, dim=d, keepdim=True)
        return torch.amin(x, dim=d, keepdim=True)


@register("reduce")
def _reduce(p: Any, ctx: BuildContext) -> nn.Module:
    return LegacyReduce(int(p.mode), int(p.axis), float(p.epsilon) or 1e-6)


class ArgExtreme(nn.Module):
    """``argMax`` / ``argMin`` along one axis, as float indices; ``removeDim`` drops the axis."""

    def __init__(self, largest: bool, axis: int, remove: bool) -> None:
        super().__init__()
        self.largest, self.axis, self.remove = largest, axis, remove

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        keep = not self.remove or nd_rank(x) == 1
        fn = torch.argmax if self.largest else torch.argmin
        return fn(x, dim=nd_dim(self.axis, x), keepdim=keep).to(x.dtype)


@register("argMax")
def _argmax(p: Any, ctx: BuildContext) -> nn.Module:
    return ArgExtreme(True, int(p.axis), bool(p.removeDim))


@register("argMin")
def _argmin(p: Any, ctx: BuildContext) -> nn.Module:
    return ArgExtreme(False, int(p.axis), bool(p.removeDim))


class TopK(nn.Module):
    """``topK``: the K largest (or smallest) values along an axis and their float indices."""

    def __init__(self, axis: int, k: int, bottom: bool) -> None:
        super().__init__()
        self.axis, self.k, self.bottom = axis, k, bottom

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return _topk(x, self.k, self.axis, self.bottom)


class DynamicTopK(TopK):
    """``topK`` with K in a second input (the output shape follows the value)."""

    per_example = True
    exportable = False

    def forward(self, x: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        return _topk(x, int(k.reshape(-1)[0]), self.axis, self.bottom)


def _topk(x: torch.Tensor, k: int, axis: int, bottom: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` largest (smallest) values along ``axis``, equal values lower index first.

    Core ML documents no order for ties (coremltools' topK tests compare with ``numpy.argsort``, whose tie order
    depends on the platform's sort). mlupdate puts the lower index first on both executors, as ``argSort`` does:
    a stable sort in torch, and ONNX's TopK, which its definition orders so, in the export.
    """
    d = nd_dim(axis, x)
    if not 0 < k <= int(x.shape[d]):
        raise ValueError(f"K = {k} is not between 1 and the axis size {int(x.shape[d])}")
    if torch.onnx.is_in_onnx_export():
        values, idx = torch.topk(x, k, dim=d, largest=not bottom, sorted=True)
    else:
        values, idx = torch.sort(x, dim=d, descending=not bottom, stable=True)
        values, idx = values.narrow(d, 0, k), idx.narrow(d, 0, k)
    return values, idx.to(x.dtype)


@register("topK")
def _topk_builder(p: Any, ctx: BuildContext) -> nn.Module:
    cls = DynamicTopK if len(ctx.inputs) > 1 else TopK
    return cls(int(p.axis), int(p.K), bool(p.useBottomK))
