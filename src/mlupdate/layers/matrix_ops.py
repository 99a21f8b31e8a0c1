"""Masking, one-hot, sorting and index-finding ND layers.

lowerTriangular, upperTriangular, matrixBandPart, oneHot, argSort, whereNonZero.

ND blobs are held as ``[N, *coreml_shape]``; Core ML axis ``a`` is held dim ``nd_dim(a, x)``.
Index outputs are float blobs, as Core ML returns them.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mlupdate.errors import SpecError
from mlupdate.layers import BuildContext, register
from mlupdate.layers.common import check_size, nd_dim, nd_rank


class Band(nn.Module):
    """Zero everything outside a band of each inner-most matrix (last two axes; the rest are batch).

    Row ``m``, column ``n`` is kept when ``m - n <= lower`` and ``n - m <= upper``; ``None`` means no
    limit on that side. ``lowerTriangular(k)`` is ``upper = k``, ``upperTriangular(k)`` is ``lower = -k``.
    """

    def __init__(self, lower: int | None, upper: int | None) -> None:
        super().__init__()
        self.lower, self.upper = lower, upper

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if nd_rank(x) < 2:
            raise ValueError(f"the input must have rank 2 or more, got rank {nd_rank(x)}")
        y = x
        if self.upper is not None:
            y = torch.tril(y, self.upper)
        if self.lower is not None:
            y = torch.triu(y, -self.lower)
        return y


@register("lowerTriangular")
def _lower(p: Any, ctx: BuildContext) -> nn.Module:
    return Band(None, int(p.k))


@register("upperTriangular")
def _upper(p: Any, ctx: BuildContext) -> nn.Module:
    return Band(-int(p.k), None)


@register("matrixBandPart")
def _band(p: Any, ctx: BuildContext) -> nn.Module:
    lower, upper = int(p.numLower), int(p.numUpper)
    return Band(lower if lower >= 0 else None, upper if upper >= 0 else None)


class OneHot(nn.Module):
    """``oneHot``: a new axis ``axis`` (of the output) of ``size`` entries, ``on`` at the index, ``off`` elsewhere.

    Index values are truncated to integers; an index outside ``[0, size)`` (negative ones too) gives
    a vector of ``off`` values.
    """

    def __init__(self, size: int, axis: int, on: float, off: float) -> None:
        super().__init__()
        self.size, self.axis, self.on, self.off = size, axis, on, off

    def depth(self, size: torch.Tensor | None) -> int | torch.Tensor:
        """The vector size: the parameter (this class) or the second input (:class:`OneHotDynamic`)."""
        return self.size

    def forward(self, x: torch.Tensor, size: torch.Tensor | None = None) -> torch.Tensor:
        out_rank = nd_rank(x) + 1
        if not -out_rank <= self.axis < out_rank:
            raise IndexError(f"axis {self.axis} is out of range for the rank-{out_rank} output "
                             f"(allowed: {-out_rank} to {out_rank - 1})")
        d = self.axis % out_rank + 1
        shape = [1] * (out_rank + 1)
        shape[d] = -1
        depth = self.depth(size)
        check_size(x[0].numel() * int(depth), f"a one-hot encoding of {int(depth)} classes")
        classes = torch.arange(depth, device=x.device).reshape(shape)
        hit = x.long().unsqueeze(d) == classes
        on = torch.full((), self.on, dtype=x.dtype, device=x.device)
        off = torch.full((), self.off, dtype=x.dtype, device=x.device)
        return torch.where(hit, on, off)


class OneHotDynamic(OneHot):
    """``oneHot`` with a second input giving the vector size (the parameter is then ignored).

    The output shape depends on that value, so the network runs one example at a time.
    """

    per_example = True

    def depth(self, size: torch.Tensor | None) -> int | torch.Tensor:
        if size is None:
            raise ValueError("oneHot expects a second input with the vector size")
        n = size.reshape(-1)[0].long()
        if not torch.jit.is_tracing() and int(n) < 1:
            raise ValueError(f"the one-hot vector size (second input) must be at least 1, got {int(n)}")
        return n


@register("oneHot")
def _one_hot(p: Any, ctx: BuildContext) -> nn.Module:
    args = (int(p.oneHotVectorSize), int(p.axis), float(p.onValue), float(p.offValue))
    if len(ctx.inputs) > 1:
        return OneHotDynamic(*args)
    if args[0] < 1:
        raise SpecError(f"Layer '{ctx.name}' (oneHot) has oneHotVectorSize 0 and no second input giving it; "
                        "set oneHotVectorSize to the number of classes.")
    return OneHot(*args)


class ArgSort(nn.Module):
    """``argSort``: float indices that sort ``axis`` ascending (or descending).

    Core ML documents no order for equal values; mlupdate keeps them in their input order in both
    directions (a stable sort; ONNX's TopK also puts the lower index first on ties).
    """

    def __init__(self, axis: int, descending: bool) -> None:
        super().__init__()
        self.axis, self.descending = axis, descending

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = nd_dim(self.axis, x)
        if torch.onnx.is_in_onnx_export():
            idx = torch.topk(x, int(x.shape[d]), dim=d, largest=self.descending, sorted=True).indices
        else:
            idx = torch.sort(x, dim=d, descending=self.descending, stable=True).indices
        return idx.to(x.dtype)


@register("argSort")
def _argsort(p: Any, ctx: BuildContext) -> nn.Module:
    if int(p.axis) < 0:
        raise SpecError(f"Layer '{ctx.name}' (argSort) has axis {int(p.axis)}; Core ML requires an axis in "
                        "[0, rank). Use the positive axis.")
    return ArgSort(int(p.axis), bool(p.descending))


class WhereNonZero(nn.Module):
    """``whereNonZero``: ``[K, R]`` float indices of the K non-zero entries of a rank-R input, row-major.

    K depends on the values, so the network runs one example at a time.
    """

    per_example = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = [torch.nonzero(r).to(x.dtype) for r in x.unbind(0)]
        if len({int(r.shape[0]) for r in rows}) > 1:
            raise ValueError("examples with different numbers of non-zero values cannot be stacked")
        return torch.stack(rows)


@register("whereNonZero")
def _where_nonzero(p: Any, ctx: BuildContext) -> nn.Module:
    return WhereNonZero()
