"""Recurrent layers: ``simpleRecurrent``, ``gru``, ``uniDirectionalLSTM`` and ``biDirectionalLSTM``.

Core ML's input is ``[Seq, Batch, inputVectorSize, 1, 1]`` plus optional initial states
``[1, Batch, hiddenSize, 1, 1]`` (zeros when absent). Outputs are the output sequence (every step
when ``sequenceOutput``, else the last step) and the final states. Blobs as held here:

* Legacy networks: the input is ``[N, C, 1, 1]`` (``Seq == 1``) or ``[N, Seq, C, 1, 1]``; the
  output sequence is ``[N, Seq, H, 1, 1]``, or ``[N, H, 1, 1]`` for one step; states are ``[N, H, 1, 1]``.
* ND networks: the rank-5 Core ML tensors carry the graph's example axis in front
  (``[N, Seq, Batch, C, 1, 1]``); ``N`` and ``Batch`` are folded together for the recurrence.

Every gate's pre-activation is clipped to ``[-50, 50]`` as the proto's equations say. The
recurrence is a Python loop over ``Seq``, so the ONNX export unrolls it for the traced ``Seq``.

``reverseInput`` processes the sequence from its end, and the output sequence comes in processing
order (coremltools' own LSTM tests compare it with a forward torch LSTM run on the flipped input).
The backward LSTM of ``biDirectionalLSTM`` is instead aligned with the input positions, as the
proto's example shows, and its final state is the one after reading the whole sequence backwards.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mlupdate.errors import SpecError
from mlupdate.layers import BuildContext, register
from mlupdate.layers.common import as_sequence
from mlupdate.layers.weights import weight_array

GATE_CLIP = 50.0  # clip() in the proto's equations
DEFAULT_CELL_CLIP = 50.0  # LSTMParams.cellClipThreshold when 0
_KINDS = ("linear", "sigmoid", "tanh", "ReLU", "scaledTanh", "sigmoidHard")
# Parameters used when a message leaves both at 0, as coremltools' builder and converter write them (an empty
# message). These are the MIL ops' defaults (linear 1, 0; scaled_tanh 1, 1; sigmoid_hard 0.2, 0.5), which
# coremltools' LSTM tests, run on Core ML, expect: an empty scaledTanh is plain tanh, not the proto's
# 1.7159 * tanh(2x/3) (docs/differences.md).
_DEFAULTS = {"linear": (1.0, 0.0), "scaledTanh": (1.0, 1.0), "sigmoidHard": (0.2, 0.5)}


class RecurrentActivation(nn.Module):
    """One of the activations recurrent layers allow: linear, sigmoid, tanh, ReLU, scaled tanh, hard sigmoid."""

    def __init__(self, p: Any, what: str) -> None:
        super().__init__()
        kind = p.WhichOneof("NonlinearityType")
        if kind not in _KINDS:
            raise SpecError(f"{what} uses activation '{kind}'; Core ML recurrent layers allow only "
                            f"{', '.join(_KINDS)}. Re-export the model with a supported activation.")
        self.kind = kind
        alpha, beta = 0.0, 0.0
        if kind in _DEFAULTS:
            q = getattr(p, kind)
            alpha, beta = float(q.alpha), float(q.beta)
            if alpha == 0.0 and beta == 0.0:
                alpha, beta = _DEFAULTS[kind]
        self.alpha, self.beta = alpha, beta

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: PLR0911 - a flat dispatch table
        k = self.kind
        if k == "sigmoid":
            return torch.sigmoid(x)
        if k == "tanh":
            return torch.tanh(x)
        if k == "ReLU":
            return F.relu(x)
        if k == "linear":
            return self.alpha * x + self.beta
        if k == "scaledTanh":
            return self.alpha * torch.tanh(self.beta * x)
        return torch.clamp(self.alpha * x + self.beta, 0.0, 1.0)


def _activations(msgs: Any, count: int, what: str) -> nn.ModuleList:
    if len(msgs) != count:
        raise SpecError(f"{what} lists {len(msgs)} activations; it needs exactly {count}. Fix the layer's "
                        "activations.")
    return nn.ModuleList(RecurrentActivation(m, what) for m in msgs)


def _sizes(p: Any, what: str) -> tuple[int, int]:
    n_in, n_out = int(p.inputVectorSize), int(p.outputVectorSize)
    if n_in <= 0 or n_out <= 0:
        raise SpecError(f"{what} has inputVectorSize {n_in} and outputVectorSize {n_out}; both must be positive.")
    return n_in, n_out


def _param(values: np.ndarray) -> nn.Parameter:
    return nn.Parameter(torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32)), requires_grad=False)


def _stack(wps: list[Any], size: int, what: str, names: list[str]) -> np.ndarray:
    """Decode one WeightParams per gate, each of ``size`` values, into a ``[gates * size]`` array."""
    return np.concatenate([weight_array(wp, size, f"{what} {n}") for wp, n in zip(wps, names, strict=True)])


class _Recurrent(nn.Module):
    """Blob layout shared by the recurrent layers: held blobs to time-major ``[Seq, M, size]`` and back."""

    def __init__(self, nd: bool, n_in: int, hidden: int, sequence_output: bool) -> None:
        super().__init__()
        self.nd, self.n_in, self.hidden, self.sequence_output = nd, n_in, hidden, sequence_output

    def steps(self, x: torch.Tensor) -> torch.Tensor:
        """The input as ``[Seq, M, inputVectorSize]``, ``M`` running over examples (and Core ML's batch)."""
        if self.nd:
            if x.dim() < 4:
                raise ValueError(f"the input has rank {x.dim() - 1}; recurrent layers take a rank-5 "
                                 "[Seq, Batch, C, 1, 1] input")
            seq, batch = int(x.shape[1]), int(x.shape[2])
            if int(np.prod(x.shape[3:])) != self.n_in:
                raise ValueError(f"the input has {list(x.shape[3:])} values per step and batch entry; the layer's "
                                 f"inputVectorSize is {self.n_in}")
            return x.reshape(-1, seq, batch, self.n_in).permute(1, 0, 2, 3).reshape(seq, -1, self.n_in)
        s = as_sequence(x)
        if s.dim() != 5 or int(np.prod(s.shape[2:])) != self.n_in:
            raise ValueError(f"the input holds {list(s.shape[2:])} per step; the layer's inputVectorSize is "
                             f"{self.n_in}")
        return s.reshape(-1, int(s.shape[1]), self.n_in).transpose(0, 1)

    def state(self, s: torch.Tensor | None, xs: torch.Tensor) -> torch.Tensor:
        """An initial state input as ``[M, hidden]`` (zeros when absent)."""
        if s is None:
            return xs.new_zeros((xs.shape[1], self.hidden))
        per = int(np.prod(s.shape[1:]))
        rows = int(xs.shape[1]) // max(int(s.shape[0]), 1)
        if per != rows * self.hidden:
            raise ValueError(f"an initial state holds {list(s.shape[1:])} per example; it must hold "
                             f"{rows} x {self.hidden} values ([1, Batch, {self.hidden}, 1, 1])")
        return s.reshape(-1, self.hidden)

    def sequence(self, ys: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """The output sequence (or its last step) as a held blob."""
        y = torch.stack(ys) if self.sequence_output else ys[-1].unsqueeze(0)
        seq, size = int(y.shape[0]), int(y.shape[2])
        if self.nd:
            batch = int(x.shape[2])
            y = y.reshape(seq, -1, batch, size).permute(1, 0, 2, 3)
            return y.reshape(-1, seq, batch, size, *([1] * (x.dim() - 4)))
        if seq == 1:
            return y[0].reshape(-1, size, 1, 1)
        return y.transpose(0, 1).reshape(-1, seq, size, 1, 1)

    def final(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """A final state ``[M, hidden]`` as a held blob."""
        if self.nd:
            return h.reshape(-1, 1, int(x.shape[2]), self.hidden, *([1] * (x.dim() - 4)))
        return h.reshape(-1, self.hidden, 1, 1)


def _order(seq: int, reverse: bool) -> range:
    return range(seq - 1, -1, -1) if reverse else range(seq)


def _gate(v: torch.Tensor) -> torch.Tensor:
    return torch.clamp(v, -GATE_CLIP, GATE_CLIP)


class SimpleRecurrent(_Recurrent):
    """``simpleRecurrent``: ``y_t = f(clip(W x_t + R y_(t-1) + b))``; outputs ``(y, y_final)``."""

    def __init__(self, p: Any, nd: bool, name: str) -> None:
        what = f"SimpleRecurrent layer '{name}'"
        n_in, hidden = _sizes(p, what)
        super().__init__(nd, n_in, hidden, bool(p.sequenceOutput))
        self.weight = _param(weight_array(p.weightMatrix, hidden * n_in, f"{what} weightMatrix").reshape(hidden, n_in))
        r = weight_array(p.recursionMatrix, hidden * hidden, f"{what} recursionMatrix")
        self.recursion = _param(r.reshape(hidden, hidden))
        b = weight_array(p.biasVector, hidden, f"{what} biasVector") if p.hasBiasVector else np.zeros(hidden)
        self.bias = _param(b)
        self.act = RecurrentActivation(p.activation, what)
        self.reverse = bool(p.reverseInput)

    def forward(self, x: torch.Tensor, h0: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        xs = self.steps(x)
        xw = F.linear(xs, self.weight, self.bias)
        h = self.state(h0, xs)
        ys = []
        for t in _order(int(xs.shape[0]), self.reverse):
            h = self.act(_gate(xw[t] + F.linear(h, self.recursion)))
            ys.append(h)
        return self.sequence(ys, x), self.final(h, x)


class GRU(_Recurrent):
    """``gru``: update gate z, reset gate r, output ``o = g(W_o x + R_o (r * y) + b_o)``, ``y = (1-z) o + z y``.

    The reset gate multiplies the previous output before ``R_o`` (torch's GRU applies it after).
    """

    def __init__(self, p: Any, nd: bool, name: str) -> None:
        what = f"GRU layer '{name}'"
        n_in, hidden = _sizes(p, what)
        super().__init__(nd, n_in, hidden, bool(p.sequenceOutput))
        gates = ["updateGate", "resetGate", "outputGate"]
        w = _stack([getattr(p, f"{g}WeightMatrix") for g in gates], hidden * n_in, what,
                    [f"{g}WeightMatrix" for g in gates])
        r = _stack([getattr(p, f"{g}RecursionMatrix") for g in gates], hidden * hidden, what,
                   [f"{g}RecursionMatrix" for g in gates])
        b = (_stack([getattr(p, f"{g}BiasVector") for g in gates], hidden, what, [f"{g}BiasVector" for g in gates])
             if p.hasBiasVectors else np.zeros(3 * hidden))
        self.weight = _param(w.reshape(3 * hidden, n_in))
        self.recursion = _param(r.reshape(3 * hidden, hidden))
        self.bias = _param(b)
        self.f, self.g = _activations(p.activations, 2, what)
        self.reverse = bool(p.reverseInput)

    def forward(self, x: torch.Tensor, h0: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        xs = self.steps(x)
        n = self.hidden
        xw = F.linear(xs, self.weight, self.bias)
        rz, rr, ro = self.recursion[:n], self.recursion[n:2 * n], self.recursion[2 * n:]
        h = self.state(h0, xs)
        ys = []
        for t in _order(int(xs.shape[0]), self.reverse):
            a = xw[t]
            z = self.f(_gate(a[:, :n] + F.linear(h, rz)))
            r = self.f(_gate(a[:, n:2 * n] + F.linear(h, rr)))
            o = self.g(_gate(a[:, 2 * n:] + F.linear(h * r, ro)))
            h = (1 - z) * o + z * h
            ys.append(h)
        return self.sequence(ys, x), self.final(h, x)


_LSTM_GATES = ("inputGate", "forgetGate", "blockInput", "outputGate")  # rows of W, R, b: i, f, z, o
_PEEPHOLES = ("inputGate", "forgetGate", "outputGate")


class LSTMDirection(nn.Module):
    """One direction of an LSTM (``LSTMWeightParams`` plus the shared ``LSTMParams``)."""

    def __init__(self, wp: Any, lp: Any, acts: Any, n_in: int, hidden: int, what: str) -> None:
        super().__init__()
        self.hidden = hidden
        w = _stack([getattr(wp, f"{g}WeightMatrix") for g in _LSTM_GATES], hidden * n_in, what,
                    [f"{g}WeightMatrix" for g in _LSTM_GATES])
        r = _stack([getattr(wp, f"{g}RecursionMatrix") for g in _LSTM_GATES], hidden * hidden, what,
                   [f"{g}RecursionMatrix" for g in _LSTM_GATES])
        b = (_stack([getattr(wp, f"{g}BiasVector") for g in _LSTM_GATES], hidden, what,
                    [f"{g}BiasVector" for g in _LSTM_GATES]) if lp.hasBiasVectors else np.zeros(4 * hidden, np.float32))
        if lp.forgetBias:
            b = b.copy()
            b[hidden:2 * hidden] += 1.0
        self.weight = _param(w.reshape(4 * hidden, n_in))
        self.recursion = _param(r.reshape(4 * hidden, hidden))
        self.bias = _param(b)
        self.peephole = None
        if lp.hasPeepholeVectors:
            pv = _stack([getattr(wp, f"{g}PeepholeVector") for g in _PEEPHOLES], hidden, what,
                        [f"{g}PeepholeVector" for g in _PEEPHOLES])
            self.peephole = _param(pv.reshape(3, hidden))
        self.f, self.g, self.h = _activations(acts, 3, what)
        self.coupled = bool(lp.coupledInputAndForgetGate)
        self.cell_clip = float(lp.cellClipThreshold) or DEFAULT_CELL_CLIP

    def run(self, xs: torch.Tensor, h: torch.Tensor, c: torch.Tensor, reverse: bool
            ) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """Run over ``xs`` ``[Seq, M, I]`` from states ``[M, H]``; outputs in processing order."""
        n = self.hidden
        xw = F.linear(xs, self.weight, self.bias)
        p = self.peephole
        ys = []
        for t in _order(int(xs.shape[0]), reverse):
            a = xw[t] + F.linear(h, self.recursion)
            ai, af, az, ao = a[:, :n], a[:, n:2 * n], a[:, 2 * n:3 * n], a[:, 3 * n:]
            if p is not None:
                ai, af = ai + p[0] * c, af + p[1] * c
            i = self.f(_gate(ai))
            z = self.g(_gate(az))
            keep = 1 - i if self.coupled else self.f(_gate(af))
            c = torch.clamp(c * keep + i * z, -self.cell_clip, self.cell_clip)
            if p is not None:
                ao = ao + p[2] * c
            h = self.h(c) * self.f(_gate(ao))
            ys.append(h)
        return ys, h, c


class UniLSTM(_Recurrent):
    """``uniDirectionalLSTM``: inputs ``(x, h0?, c0?)``, outputs ``(y, h, c)``."""

    def __init__(self, p: Any, nd: bool, name: str) -> None:
        what = f"UniDirectionalLSTM layer '{name}'"
        n_in, hidden = _sizes(p, what)
        super().__init__(nd, n_in, hidden, bool(p.params.sequenceOutput))
        self.cell = LSTMDirection(p.weightParams, p.params, p.activations, n_in, hidden, what)
        self.reverse = bool(p.reverseInput)

    def forward(self, x: torch.Tensor, h0: torch.Tensor | None = None, c0: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        xs = self.steps(x)
        ys, h, c = self.cell.run(xs, self.state(h0, xs), self.state(c0, xs), self.reverse)
        return self.sequence(ys, x), self.final(h, x), self.final(c, x)


class BiLSTM(_Recurrent):
    """``biDirectionalLSTM``: inputs ``(x, h0?, c0?, h0_back?, c0_back?)``, outputs ``(y, h, c, h_back, c_back)``.

    ``y`` concatenates the forward and backward outputs along C (``2 * outputVectorSize``).
    """

    def __init__(self, p: Any, nd: bool, name: str) -> None:
        what = f"BiDirectionalLSTM layer '{name}'"
        n_in, hidden = _sizes(p, what)
        super().__init__(nd, n_in, hidden, bool(p.params.sequenceOutput))
        if len(p.weightParams) != 2:
            raise SpecError(f"{what} holds {len(p.weightParams)} weightParams; it needs 2 (forward, backward).")
        back_acts = p.activationsBackwardLSTM if len(p.activationsBackwardLSTM) else p.activationsForwardLSTM
        self.forward_cell = LSTMDirection(p.weightParams[0], p.params, p.activationsForwardLSTM, n_in, hidden,
                                          f"{what} (forward)")
        self.backward_cell = LSTMDirection(p.weightParams[1], p.params, back_acts, n_in, hidden, f"{what} (backward)")

    def forward(self, x: torch.Tensor, h0: torch.Tensor | None = None, c0: torch.Tensor | None = None,
                hb0: torch.Tensor | None = None, cb0: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        xs = self.steps(x)
        yf, hf, cf = self.forward_cell.run(xs, self.state(h0, xs), self.state(c0, xs), False)
        yb, hb, cb = self.backward_cell.run(xs, self.state(hb0, xs), self.state(cb0, xs), True)
        if self.sequence_output:
            ys = [torch.cat([f, b], dim=1) for f, b in zip(yf, reversed(yb), strict=True)]
        else:
            ys = [torch.cat([hf, hb], dim=1)]
        return self.sequence(ys, x), self.final(hf, x), self.final(cf, x), self.final(hb, x), self.final(cb, x)


@register("simpleRecurrent")
def _simple(p: Any, ctx: BuildContext) -> nn.Module:
    return SimpleRecurrent(p, ctx.nd, ctx.name)


@register("gru")
def _gru(p: Any, ctx: BuildContext) -> nn.Module:
    return GRU(p, ctx.nd, ctx.name)


@register("uniDirectionalLSTM")
def _uni_lstm(p: Any, ctx: BuildContext) -> nn.Module:
    return UniLSTM(p, ctx.nd, ctx.name)


@register("biDirectionalLSTM")
def _bi_lstm(p: Any, ctx: BuildContext) -> nn.Module:
    return BiLSTM(p, ctx.nd, ctx.name)
