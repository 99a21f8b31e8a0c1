"""Layers that read or write a tensor at positions given by an index tensor.

gatherND, scatter, scatterND, scatterAlongAxis.

ND blobs are held as ``[N, *coreml_shape]`` (Core ML axis ``a`` is held dim ``nd_dim(a, x)``); the
index and update inputs are held with the same leading example axis, so every example scatters
into or gathers from its own tensor. Index inputs arrive as float blobs and are cast to integers;
negative indices count from the end of their axis, as the proto allows. The scatter layers
accumulate with the proto's ``ScatterMode`` (UPDATE, ADD, SUB, MUL, DIV, MAX, MIN); when several
updates hit the same position in UPDATE mode, which one is kept is not specified (Core ML does
not document an order either).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mlupdate.errors import SpecError
from mlupdate.layers import BuildContext, register
from mlupdate.layers.common import nd_dim, nd_rank

MODES = ("UPDATE", "ADD", "SUB", "MUL", "DIV", "MAX", "MIN")  # ScatterMode values 0..6


def _mode(value: int, ctx: BuildContext) -> str:
    if not 0 <= int(value) < len(MODES):
        raise SpecError(
            f"Layer '{ctx.name}' has scatter mode {int(value)}; Core ML defines 0 to {len(MODES) - 1} "
            f"({', '.join(MODES)}). Fix the layer's mode."
        )
    return MODES[int(value)]


def _wrap(idx: torch.Tensor, size: int | torch.Tensor, what: str) -> torch.Tensor:
    """Negative indices counted from the end; out-of-range ones raise (outside tracing)."""
    if not torch.jit.is_tracing():
        bad = (idx < -size) | (idx >= size)
        if bool(bad.any()):
            raise IndexError(f"{what} {int(idx[bad].reshape(-1)[0])} is out of range for size {size}")
    return torch.where(idx < 0, idx + size, idx)


def scatter_into(base: torch.Tensor, dim: int, index: torch.Tensor, src: torch.Tensor, mode: str) -> torch.Tensor:
    """``base`` with ``src`` accumulated at ``index`` along ``dim`` (``torch.scatter`` layout) by ``mode``."""
    src = src.to(base.dtype)
    if mode == "UPDATE":
        return base.scatter(dim, index, src)
    if mode == "ADD":
        return base.scatter_add(dim, index, src)
    if mode == "SUB":
        return base.scatter_add(dim, index, -src)
    if mode == "MUL":
        return base.scatter_reduce(dim, index, src, "prod")
    if mode == "DIV":
        return base / torch.ones_like(base).scatter_reduce(dim, index, src, "prod")
    return base.scatter_reduce(dim, index, src, "amax" if mode == "MAX" else "amin")


def _product(dims: Any) -> int:
    n = 1
    for d in dims:
        n *= int(d)
    return n


def _linear_index(indices: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Held multi-indices ``[N, *I, K]`` into the leading ``K`` axes of ``shape`` as flat offsets ``[N, M]``."""
    k = int(indices.shape[-1])
    if k > len(shape):
        raise ValueError(f"indices address {k} axes but the data has rank {len(shape)}")
    lead = shape[:k]
    idx = indices.long().reshape(indices.shape[0], -1, k)
    if k == 0:
        return idx.sum(-1)
    sizes = torch.tensor(lead, dtype=torch.long, device=idx.device)
    if not torch.jit.is_tracing():
        bad = (idx < -sizes) | (idx >= sizes)
        if bool(bad.any()):
            raise IndexError(f"a multi-index is out of range for the leading axes {list(lead)} of the data")
    idx = torch.where(idx < 0, idx + sizes, idx)
    strides = [_product(lead[i + 1:]) for i in range(k)]
    return (idx * torch.tensor(strides, dtype=torch.long, device=idx.device)).sum(-1)


class GatherND(nn.Module):
    """``gatherND``: ``out[i..j, ...] = params[indices[i..j, :], ...]``; shape ``I[:-1] + P[I[-1]:]``."""

    def forward(self, params: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        n, shape = params.shape[0], tuple(int(d) for d in params.shape[1:])
        if nd_rank(indices) < 1:
            raise ValueError("indices must have rank 1 or more")
        k = int(indices.shape[-1])
        lin = _linear_index(indices, shape)
        rest = shape[k:] if k <= len(shape) else ()
        flat = params.reshape((n, _product(shape[:k]), *rest))
        m = int(lin.shape[1])
        idx = lin.reshape((n, m) + (1,) * len(rest)).expand((n, m, *rest))
        out_shape = (*(int(d) for d in indices.shape[1:-1]), *rest)
        return torch.gather(flat, 1, idx).reshape((n, *(out_shape or (1,))))


@register("gatherND")
def _gather_nd(p: Any, ctx: BuildContext) -> nn.Module:
    return GatherND()


class Scatter(nn.Module):
    """``scatter``: ``out[.., indices[i..j], ..] (op)= updates[.., i..j, ..]`` along ``axis``.

    ``updates`` has shape ``C[:axis] + I + C[axis + 1:]`` for container shape ``C`` and indices shape ``I``.
    """

    def __init__(self, axis: int, mode: str) -> None:
        super().__init__()
        self.axis, self.mode = axis, mode

    def forward(self, container: torch.Tensor, indices: torch.Tensor, updates: torch.Tensor) -> torch.Tensor:
        d = nd_dim(self.axis, container)
        shape = tuple(int(s) for s in container.shape)
        n, before, after = container.shape[0], shape[1:d], shape[d + 1:]  # n stays symbolic when traced
        idx = _wrap(indices.long().reshape(n, -1), shape[d], "index")
        m = int(idx.shape[1])
        src = updates.reshape((n, *before, m, *after))
        idx = idx.reshape((n,) + (1,) * len(before) + (m,) + (1,) * len(after)).expand(src.shape)
        return scatter_into(container, d, idx, src, self.mode)


@register("scatter")
def _scatter(p: Any, ctx: BuildContext) -> nn.Module:
    return Scatter(int(p.axis), _mode(p.mode, ctx))


class ScatterND(nn.Module):
    """``scatterND``: ``out[indices[i..j, :], ...] (op)= updates[i..j, ...]``."""

    def __init__(self, mode: str) -> None:
        super().__init__()
        self.mode = mode

    def forward(self, container: torch.Tensor, indices: torch.Tensor, updates: torch.Tensor) -> torch.Tensor:
        n, shape = container.shape[0], tuple(int(d) for d in container.shape[1:])
        if nd_rank(indices) < 1:
            raise ValueError("indices must have rank 1 or more")
        k = int(indices.shape[-1])
        lin = _linear_index(indices, shape)
        rest = shape[k:]
        flat = container.reshape((n, _product(shape[:k]), *rest))
        m = int(lin.shape[1])
        src = updates.reshape((n, m, *rest))
        idx = lin.reshape((n, m) + (1,) * len(rest)).expand(src.shape)
        return scatter_into(flat, 1, idx, src, self.mode).reshape(container.shape)


@register("scatterND")
def _scatter_nd(p: Any, ctx: BuildContext) -> nn.Module:
    return ScatterND(_mode(p.mode, ctx))


class ScatterAlongAxis(nn.Module):
    """``scatterAlongAxis``: ``numpy.put_along_axis`` with accumulation ``mode``."""

    def __init__(self, axis: int, mode: str) -> None:
        super().__init__()
        self.axis, self.mode = axis, mode

    def forward(self, container: torch.Tensor, indices: torch.Tensor, updates: torch.Tensor) -> torch.Tensor:
        d = nd_dim(self.axis, container)
        if indices.dim() != container.dim() or updates.shape != indices.shape:
            raise ValueError(
                f"indices {list(indices.shape[1:])} and updates {list(updates.shape[1:])} must have the same shape "
                f"and the container's rank {nd_rank(container)}"
            )
        idx = _wrap(indices.long(), int(container.shape[d]), "index")
        return scatter_into(container, d, idx, updates, self.mode)


@register("scatterAlongAxis")
def _scatter_along_axis(p: Any, ctx: BuildContext) -> nn.Module:
    return ScatterAlongAxis(int(p.axis), _mode(p.mode, ctx))
