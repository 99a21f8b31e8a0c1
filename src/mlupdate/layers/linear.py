"""Dense layers: ``innerProduct``, ``batchedMatmul``, ``embedding`` and ``embeddingND``."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mlupdate.layers import BuildContext, register
from mlupdate.layers.weights import set_weights, weight_array


class InnerProduct(nn.Module):
    """``innerProduct``: ``y = W x + b``.

    Per the proto, rank 1-3 inputs multiply along the last axis; rank 4 and 5 inputs flatten
    their last three axes (``C*H*W == inputChannels``) and give ``[.., C_out, 1, 1]``.
    """

    def __init__(self, p: Any, name: str = "") -> None:
        super().__init__()
        n_in, n_out = int(p.inputChannels), int(p.outputChannels)
        what = f"InnerProduct layer '{name}'"
        w = weight_array(p.weights, n_in * n_out, f"{what} weights").reshape(n_out, n_in)
        self.weight = nn.Parameter(torch.from_numpy(w.copy()), requires_grad=False)
        self.bias = None
        if p.hasBias:
            self.bias = nn.Parameter(torch.from_numpy(weight_array(p.bias, n_out, f"{what} bias").copy()),
                                     requires_grad=False)
        self.n_in = n_in

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() >= 4:
            y = F.linear(x.flatten(-3), self.weight, self.bias)
            return y[..., None, None]
        return F.linear(x, self.weight, self.bias)

    def write_back(self, p: Any) -> None:
        """Copy the current weights into the layer's protobuf parameters."""
        set_weights(p.weights, self.weight.detach().cpu().numpy())
        if self.bias is not None:
            set_weights(p.bias, self.bias.detach().cpu().numpy())


@register("innerProduct")
def _inner_product(p: Any, ctx: BuildContext) -> nn.Module:
    return InnerProduct(p, ctx.name)


class BatchedMatMul(nn.Module):
    """``batchedMatmul``: ``A @ B`` with optional transposes, or ``A @ W + b`` with constant weights.

    The constant ``W`` (``[X1, X2]``) is stored column-major, i.e. as ``W.T`` flattened.
    """

    def __init__(self, p: Any, name: str = "") -> None:
        super().__init__()
        self.ta, self.tb = bool(p.transposeA), bool(p.transposeB)
        self.weight = None
        self.bias = None
        if p.weightMatrixFirstDimension:
            n_in, n_out = int(p.weightMatrixFirstDimension), int(p.weightMatrixSecondDimension)
            what = f"BatchedMatMul layer '{name}'"
            w = weight_array(p.weights, n_in * n_out, f"{what} weights").reshape(n_out, n_in).T
            self.weight = nn.Parameter(torch.from_numpy(np.ascontiguousarray(w)), requires_grad=False)
            if p.hasBias:
                b = weight_array(p.bias, n_out, f"{what} bias")
                self.bias = nn.Parameter(torch.from_numpy(b.copy()), requires_grad=False)

    def forward(self, a: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
        if b is None:
            y = torch.matmul(a, self.weight)
            return y + self.bias if self.bias is not None else y
        if self.ta:
            a = a.transpose(-1, -2) if a.dim() > 1 else a
        if self.tb:
            b = b.transpose(-1, -2) if b.dim() > 1 else b
        return torch.matmul(a, b)


@register("batchedMatmul")
def _batched_matmul(p: Any, ctx: BuildContext) -> nn.Module:
    return BatchedMatMul(p, ctx.name)


class Embedding(nn.Module):
    """``embedding`` / ``embeddingND``: look up rows of a ``[out, vocab]`` matrix by (float) index.

    ``embedding`` maps ``[.., 1, 1, 1]`` to ``[.., out, 1, 1]``; ``embeddingND`` maps ``[.., 1]``
    to ``[.., out]``.
    """

    def __init__(self, vocab: int, n_out: int, p: Any, name: str, nd: bool) -> None:
        super().__init__()
        what = f"Embedding layer '{name}'"
        w = weight_array(p.weights, vocab * n_out, f"{what} weights").reshape(n_out, vocab)
        self.weight = nn.Parameter(torch.from_numpy(np.ascontiguousarray(w.T)), requires_grad=False)
        self.bias = None
        if p.hasBias:
            self.bias = nn.Parameter(torch.from_numpy(weight_array(p.bias, n_out, f"{what} bias").copy()),
                                     requires_grad=False)
        self.nd = nd

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        idx = x[..., 0] if self.nd else x[..., 0, 0, 0]
        y = F.embedding(idx.long(), self.weight)
        if self.bias is not None:
            y = y + self.bias
        return y if self.nd else y[..., None, None]


@register("embedding")
def _embedding(p: Any, ctx: BuildContext) -> nn.Module:
    return Embedding(int(p.inputDim), int(p.outputChannels), p, ctx.name, nd=False)


@register("embeddingND")
def _embedding_nd(p: Any, ctx: BuildContext) -> nn.Module:
    return Embedding(int(p.vocabSize), int(p.embeddingSize), p, ctx.name, nd=True)
