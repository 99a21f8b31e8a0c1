"""Dense layers: ``innerProduct``, ``batchedMatmul``, ``embedding`` and ``embeddingND``.

Weights may use any ``WeightParams`` encoding (:mod:`mlupdate.layers.weights`), and
``innerProduct`` / one-input ``batchedMatmul`` also run ``int8DynamicQuantize`` layers
(:class:`Int8Dynamic`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mlupdate.errors import SpecError
from mlupdate.layers import BuildContext, register
from mlupdate.layers.weights import quantization_params, weight_array


def _param(values: np.ndarray) -> nn.Parameter:
    return nn.Parameter(torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32)), requires_grad=False)


def _positive(what: str, **sizes: int) -> None:
    for key, value in sizes.items():
        if value <= 0:
            raise SpecError(f"{what} has {key} = {value}; it must be positive. Re-export the model.")


def _is_tracing() -> bool:
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()


class Int8Dynamic(nn.Module):
    """``int8DynamicQuantize``: ``y = dequant(quant_int8(x) @ W_int8^T)``.

    Documented by NeuralNetwork.proto: at run time the float input is quantized to int8, multiplied
    with the int8 weight matrix held in ``weights.int8RawValue``, and the result dequantized; the
    weights have 8-bit linear quantization with one scale and no bias (``W = W_int8 * scale``).
    The proto's comment asks for ``hasBias == false``, but coremltools' own innerProduct and batchedMatmul
    tests (run on Core ML, no xfail) build these layers with a float bias and expect it added after the
    dequantization; the layers add it (the bias is not part of this module).

    Assumed (the proto gives no formula): the input is quantized symmetrically per tensor, the
    tensor being one example (every Core ML axis, the graph's example axis excluded), with
    ``s_x = max|x| / 127``, ``x_int8 = clamp(round_half_even(x / s_x), -127, 127)`` (an all-zero
    example uses ``s_x = 1``); the product accumulates exactly and is dequantized as
    ``y = (x_int8 @ W_int8^T) * s_x * scale``. Core ML may round or accumulate differently.
    """

    def __init__(self, wp: Any, n_out: int, n_in: int, what: str) -> None:
        super().__init__()
        if len(wp.rawValue) or not len(wp.int8RawValue) or not wp.HasField("quantization"):
            raise SpecError(f"{what} sets int8DynamicQuantize, so its weights must be in int8RawValue (with "
                            "quantization parameters) and rawValue must be empty.")
        nbits, kind = quantization_params(wp, f"{what} weights")
        lq = wp.quantization.linearQuantization
        if nbits != 8 or kind != "linearQuantization" or len(lq.scale) != 1 or len(lq.bias):
            raise SpecError(f"{what} sets int8DynamicQuantize, which needs 8-bit linear quantization with one "
                            f"scale and no bias (got {nbits} bits, {kind}, {len(lq.scale)} scales, "
                            f"{len(lq.bias)} biases).")
        raw = bytes(wp.int8RawValue)
        if len(raw) != n_in * n_out:
            raise SpecError(f"{what} weights hold {len(raw)} int8 values but the declared shape needs "
                            f"{n_in * n_out}. Re-export the model.")
        codes = np.frombuffer(raw, dtype=np.int8).astype(np.float32).reshape(n_out, n_in)
        self.register_buffer("codes", torch.from_numpy(codes.copy()))
        self.scale = float(lq.scale[0])

    def dequantized(self) -> np.ndarray:
        """The float weight matrix ``[out, in]`` the int8 codes stand for."""
        return self.codes.numpy() * np.float32(self.scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: held ``[N, .., in]`` (any rank); returns ``[N, .., out]``."""
        amax = x.abs().reshape(x.shape[0], -1).amax(dim=1)
        s = torch.where(amax > 0, amax / 127.0, torch.ones_like(amax)).reshape((-1,) + (1,) * (x.dim() - 1))
        q = torch.clamp(torch.round(x / s), -127.0, 127.0)
        return F.linear(q, self.codes) * (s * self.scale)

    def encode(self, wp: Any, weight: np.ndarray) -> None:
        """Write float weights back as int8 codes with this layer's scale (``isUpdatable`` kept)."""
        codes = np.clip(np.round(weight / self.scale), -127, 127).astype(np.int8)
        wp.int8RawValue = codes.tobytes()


class InnerProduct(nn.Module):
    """``innerProduct``: ``y = W x + b``, ``W`` stored ``[C_out, C_in]``.

    ND networks follow the proto's rank rules: ranks 1-3 multiply along the last axis (which must
    be ``C_in``); ranks 4 and 5 flatten their last three axes (``C*H*W == C_in``) and give
    ``[.., C_out, 1, 1]``. Legacy networks always flatten the last three axes (C, H, W).
    """

    def __init__(self, p: Any, name: str = "", nd: bool = True) -> None:
        super().__init__()
        n_in, n_out = int(p.inputChannels), int(p.outputChannels)
        what = f"InnerProduct layer '{name}'"
        _positive(what, inputChannels=n_in, outputChannels=n_out)
        self.n_in, self.nd = n_in, nd
        self.int8 = Int8Dynamic(p.weights, n_out, n_in, what) if p.int8DynamicQuantize else None
        if self.int8 is not None:
            w = self.int8.dequantized()
        else:
            w = weight_array(p.weights, n_in * n_out, f"{what} weights", channels=n_out).reshape(n_out, n_in)
        self.weight = _param(w)
        self.bias = _param(weight_array(p.bias, n_out, f"{what} bias", channels=n_out)) if p.hasBias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rank = x.dim() - 1 if self.nd else 5
        if self.nd and not 1 <= rank <= 5:
            raise ValueError(f"innerProduct takes inputs of rank 1 to 5, got rank {rank}")
        flat = rank >= 4 and x.dim() >= 4
        v = x.flatten(-3) if flat else x
        if int(v.shape[-1]) != self.n_in:
            got = "x".join(str(int(d)) for d in x.shape[-3:]) if flat else str(int(x.shape[-1]))
            raise ValueError(f"innerProduct expects {self.n_in} input channels, got {got}")
        if self.int8 is None:
            y = F.linear(v, self.weight, self.bias)
        else:
            y = self.int8(v) if self.bias is None else self.int8(v) + self.bias
        return y[..., None, None] if flat else y


@register("innerProduct")
def _inner_product(p: Any, ctx: BuildContext) -> nn.Module:
    return InnerProduct(p, ctx.name, ctx.nd)


class BatchedMatMul(nn.Module):
    """``batchedMatmul``: ``A @ B`` with optional transposes, or ``A @ W + b`` with constant weights.

    Two inputs: a rank-1 ``a`` becomes ``(1, D)`` and a rank-1 ``b`` becomes ``(D, 1)``, and the
    inserted axes stay (the output rank is ``max(2, rank a, rank b)``, so two vectors give
    ``[1, 1]``). Batch axes broadcast numpy-style aligned at the Core ML ranks (the lower-rank input
    gets unit axes after the graph's example axis). Transposes swap the last two axes and, as in
    coremltools' MIL ``matmul``, do nothing to a rank-1 input.

    One input: the constant ``W`` (``[X1, X2]``) is stored column-major, i.e. as ``W.T`` flattened;
    ``a``'s last axis must be ``X1`` and the output keeps ``a``'s rank with last axis ``X2``.
    """

    def __init__(self, p: Any, name: str = "") -> None:
        super().__init__()
        what = f"BatchedMatMul layer '{name}'"
        self.ta, self.tb = bool(p.transposeA), bool(p.transposeB)
        self.weight = self.bias = self.int8 = None
        n_in, n_out = int(p.weightMatrixFirstDimension), int(p.weightMatrixSecondDimension)
        self.n_in = n_in
        has_weights = bool(n_in or n_out or p.HasField("weights") or p.int8DynamicQuantize)
        if has_weights:
            _positive(what, weightMatrixFirstDimension=n_in, weightMatrixSecondDimension=n_out)
            if p.int8DynamicQuantize:
                self.int8 = Int8Dynamic(p.weights, n_out, n_in, what)
                w = self.int8.dequantized()
            else:
                w = weight_array(p.weights, n_in * n_out, f"{what} weights", channels=n_out).reshape(n_out, n_in)
            self.weight = _param(w.T)
            if p.hasBias:
                self.bias = _param(weight_array(p.bias, n_out, f"{what} bias", channels=n_out))
        elif p.hasBias:
            raise SpecError(f"{what} sets hasBias without a weight matrix; Core ML supports a bias only with "
                            "one input and constant weights.")

    def forward(self, a: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
        if b is None:
            if self.weight is None:
                raise ValueError("batchedMatmul with one input needs a weight matrix (weightMatrixFirstDimension)")
            if a.dim() < 2 or int(a.shape[-1]) != self.n_in:
                raise ValueError(f"batchedMatmul expects a last axis of {self.n_in}, got shape "
                                 f"{list(a.shape[1:])}")
            y = self.int8(a) if self.int8 is not None else torch.matmul(a, self.weight)
            return y + self.bias if self.bias is not None else y
        if self.weight is not None:
            raise ValueError("batchedMatmul with two inputs cannot also have a weight matrix")
        return _matmul(a, b, self.ta, self.tb)


def _matmul(a: torch.Tensor, b: torch.Tensor, ta: bool, tb: bool) -> torch.Tensor:
    ra, rb = a.dim() - 1, b.dim() - 1
    if ra < 1 or rb < 1:
        raise ValueError(f"batchedMatmul inputs need rank >= 1, got ranks {ra} and {rb}")
    if ta and ra >= 2:
        a = a.transpose(-1, -2)
    if tb and rb >= 2:
        b = b.transpose(-1, -2)
    a = a.unsqueeze(1) if ra == 1 else a
    b = b.unsqueeze(-1) if rb == 1 else b
    rank = max(a.dim(), b.dim())
    a = a.reshape((a.shape[0],) + (1,) * (rank - a.dim()) + tuple(a.shape[1:]))
    b = b.reshape((b.shape[0],) + (1,) * (rank - b.dim()) + tuple(b.shape[1:]))
    if int(a.shape[-1]) != int(b.shape[-2]):
        raise ValueError(f"batchedMatmul inner dimensions differ: {int(a.shape[-1])} vs {int(b.shape[-2])} "
                         f"(shapes {list(a.shape[1:])} and {list(b.shape[1:])} after promotion and transposes)")
    if not _is_tracing():
        try:
            torch.broadcast_shapes(a.shape[1:-2], b.shape[1:-2])
        except RuntimeError as exc:
            raise ValueError(f"batchedMatmul batch axes {list(a.shape[1:-2])} and {list(b.shape[1:-2])} do "
                             "not broadcast") from exc
    return torch.matmul(a, b)


@register("batchedMatmul")
def _batched_matmul(p: Any, ctx: BuildContext) -> nn.Module:
    return BatchedMatMul(p, ctx.name)


class Embedding(nn.Module):
    """``embedding`` / ``embeddingND``: look up columns of a ``[out, vocab]`` matrix by (float) index.

    ``embedding`` (legacy) maps ``[.., 1, 1, 1]`` to ``[.., out, 1, 1]``; ``embeddingND`` maps
    Core ML ranks 2 to 5 ``[.., 1]`` to ``[.., out]``. Indices are truncated to integers and must
    lie in ``[0, vocab)`` (checked on torch; onnxruntime's Gather rejects indices past the end).
    """

    def __init__(self, vocab: int, n_out: int, p: Any, what: str, nd: bool) -> None:
        super().__init__()
        _positive(what, **({"vocabSize": vocab, "embeddingSize": n_out} if nd else
                           {"inputDim": vocab, "outputChannels": n_out}))
        w = weight_array(p.weights, vocab * n_out, f"{what} weights", channels=n_out).reshape(n_out, vocab)
        self.weight = _param(w.T)
        self.bias = _param(weight_array(p.bias, n_out, f"{what} bias", channels=n_out)) if p.hasBias else None
        self.nd, self.vocab = nd, vocab

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tail = 1 if self.nd else 3
        if self.nd and not 2 <= x.dim() - 1 <= 5:
            raise ValueError(f"embeddingND takes inputs of rank 2 to 5, got rank {x.dim() - 1}")
        if x.dim() < tail + 1 or any(int(d) != 1 for d in x.shape[-tail:]):
            raise ValueError(f"embedding input must end in {tail} unit axes, got shape {list(x.shape[1:])}")
        idx = x.reshape(x.shape[:-tail]).long()
        if not _is_tracing() and bool(((idx < 0) | (idx >= self.vocab)).any()):
            raise IndexError(f"embedding index out of range [0, {self.vocab - 1}]: {idx.flatten().tolist()[:8]}")
        y = F.embedding(idx, self.weight)
        if self.bias is not None:
            y = y + self.bias
        return y if self.nd else y[..., None, None]


@register("embedding")
def _embedding(p: Any, ctx: BuildContext) -> nn.Module:
    return Embedding(int(p.inputDim), int(p.outputChannels), p, f"Embedding layer '{ctx.name}'", nd=False)


@register("embeddingND")
def _embedding_nd(p: Any, ctx: BuildContext) -> nn.Module:
    return Embedding(int(p.vocabSize), int(p.embeddingSize), p, f"EmbeddingND layer '{ctx.name}'", nd=True)
