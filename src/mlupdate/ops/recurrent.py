"""lstm, gru, rnn (MIL recurrent.py).

``x`` is ``[s, b, I]``; the outputs are the hidden states (every step with ``output_sequence``, else the last
one, ``[1, b, H]``) and the final states ``[b, H]``. As coremltools' op tests (run against Core ML) show:
``direction="reverse"`` reads the sequence from its end and returns the steps in processing order; the
backward half of a bidirectional LSTM is aligned with the input positions (PyTorch's layout), its last-step
output being its state after reading position 0. A GRU's candidate gate applies the reset gate to the hidden
state before the recurrent product (``W_ho (r * h)``) unless iOS18's ``reset_after`` (then
``r * (W_ho h + b_ho)``, PyTorch's GRU). The recurrence is a Python loop, unrolled by an ONNX export.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from mlupdate.ops import OpContext
from mlupdate.ops.tensor import flag, kernel, op_error

Activation = Callable[[torch.Tensor], torch.Tensor]

#: The activations the recurrent ops allow. The two parametric ones take the parameters the neural-network
#: proto documents for them (MIL gives none): scaled tanh 1.71 * tanh(2/3 x), hard sigmoid clip(0.2 x + 0.5).
_ACTIVATIONS: dict[str, Activation] = {
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "relu": F.relu,
    "linear": lambda x: x,
    "scaled_tanh": lambda x: 1.71 * torch.tanh(x * (2.0 / 3.0)),
    "hard_sigmoid": lambda x: torch.clamp(0.2 * x + 0.5, 0.0, 1.0),
    "sigmoid_hard": lambda x: torch.clamp(0.2 * x + 0.5, 0.0, 1.0),
}


def _activation(ctx: OpContext, param: str, default: str) -> Activation:
    name = str(flag(ctx, param, default)).lower()
    if name not in _ACTIVATIONS:
        raise op_error(ctx, f"{param} '{name}' is not one of {', '.join(_ACTIVATIONS)}")
    return _ACTIVATIONS[name]


def _check(ctx: OpContext, x: torch.Tensor, h0: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor,
           gates: int, directions: int = 1) -> int:
    """Validate the shapes; returns the hidden size ``H``."""
    if x.dim() != 3 or h0.dim() != 2 or w_ih.dim() != 2 or w_hh.dim() != 2:
        raise op_error(ctx, f"x must be [s, b, I] and initial_h [b, H], got {list(x.shape)} and {list(h0.shape)}")
    hidden = int(w_hh.shape[1])
    want = {"weight_ih": (gates * hidden, int(x.shape[2])), "weight_hh": (gates * hidden, hidden),
            "initial_h": (int(x.shape[1]), directions * hidden)}
    for name, t in (("weight_ih", w_ih), ("weight_hh", w_hh), ("initial_h", h0)):
        if tuple(int(d) for d in t.shape) != want[name]:
            raise op_error(ctx, f"{name} has shape {list(t.shape)}, expected {list(want[name])}")
    return hidden


def _vector(ctx: OpContext, inputs: dict[str, Any], param: str, size: int, like: torch.Tensor) -> torch.Tensor:
    v = inputs.get(param)
    if v is None:
        return torch.zeros(size, dtype=like.dtype, device=like.device)
    if v.numel() != size:
        raise op_error(ctx, f"{param} has {v.numel()} values, expected {size}")
    return v.reshape(size).to(like.dtype)


def _direction(ctx: OpContext, allowed: tuple[str, ...]) -> str:
    direction = str(flag(ctx, "direction", "forward")).lower()
    if direction not in allowed:
        raise op_error(ctx, f"direction '{direction}' is not one of {', '.join(allowed)}")
    return direction


def _outputs(ctx: OpContext, steps: list[torch.Tensor]) -> torch.Tensor:
    return torch.stack(steps) if bool(flag(ctx, "output_sequence", False)) else steps[-1][None]


@kernel("rnn")
@kernel("rnn", since=17)
def _rnn(ctx: OpContext, inputs: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    x, h = inputs["x"], inputs["initial_h"]
    w_ih, w_hh = inputs["weight_ih"].to(x.dtype), inputs["weight_hh"].to(x.dtype)
    hidden = _check(ctx, x, h, w_ih, w_hh, 1)
    bias = _vector(ctx, inputs, "bias", hidden, x)
    act = _activation(ctx, "activation", "tanh")
    seq = x.flip(0) if _direction(ctx, ("forward", "reverse")) == "reverse" else x
    pre = seq @ w_ih.t() + bias
    steps = []
    for t in range(int(seq.shape[0])):
        h = act(pre[t] + h @ w_hh.t())
        steps.append(h)
    return _outputs(ctx, steps), h


@kernel("gru")
@kernel("gru", since=17)
@kernel("gru", since=18)
def _gru(ctx: OpContext, inputs: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    x, h = inputs["x"], inputs["initial_h"]
    w_ih, w_hh = inputs["weight_ih"].to(x.dtype), inputs["weight_hh"].to(x.dtype)
    hidden = _check(ctx, x, h, w_ih, w_hh, 3)
    bias = _vector(ctx, inputs, "bias", 3 * hidden, x)
    in_bias = _vector(ctx, inputs, "input_bias", 3 * hidden, x) if ctx.opset >= 18 else torch.zeros_like(bias)
    after = ctx.opset >= 18 and bool(flag(ctx, "reset_after", False))
    gate, act = _activation(ctx, "recurrent_activation", "sigmoid"), _activation(ctx, "activation", "tanh")
    seq = x.flip(0) if _direction(ctx, ("forward", "reverse")) == "reverse" else x
    pre = seq @ w_ih.t() + in_bias + (0 if after else bias)  # [s, b, 3H]: r, o, z
    w_r, w_o, w_z = w_hh.split(hidden)
    b_r, b_o, b_z = bias.split(hidden) if after else (0, 0, 0)
    steps = []
    for t in range(int(seq.shape[0])):
        p_r, p_o, p_z = pre[t].split(hidden, -1)
        r = gate(p_r + h @ w_r.t() + b_r)
        z = gate(p_z + h @ w_z.t() + b_z)
        o = act(p_o + r * (h @ w_o.t() + b_o)) if after else act(p_o + (r * h) @ w_o.t())
        h = (1 - z) * o + z * h
        steps.append(h)
    return _outputs(ctx, steps), h


def _lstm_pass(seq: torch.Tensor, h: torch.Tensor, c: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor,
               bias: torch.Tensor, peep: torch.Tensor, acts: tuple[Activation, ...],
               clip: float | None) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
    """One direction over ``seq`` (in processing order); gates ``[i, f, o, z]``, peepholes ``[i, f, o]``."""
    gate, cell_act, act = acts
    hidden = int(h.shape[-1])
    p_i, p_f, p_o = peep.split(hidden)
    pre = seq @ w_ih.t() + bias
    steps = []
    for t in range(int(seq.shape[0])):
        g_i, g_f, g_o, g_z = (pre[t] + h @ w_hh.t()).split(hidden, -1)
        i, f = gate(g_i + p_i * c), gate(g_f + p_f * c)
        c = f * c + i * cell_act(g_z)
        if clip is not None:
            c = c.clamp(-clip, clip)
        h = gate(g_o + p_o * c) * act(c)
        steps.append(h)
    return steps, h, c


@kernel("lstm")
@kernel("lstm", since=17)
def _lstm(ctx: OpContext, inputs: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    x, h, c = inputs["x"], inputs["initial_h"], inputs["initial_c"]
    direction = _direction(ctx, ("forward", "reverse", "bidirectional"))
    dirs = 2 if direction == "bidirectional" else 1
    w_ih, w_hh = inputs["weight_ih"].to(x.dtype), inputs["weight_hh"].to(x.dtype)
    hidden = _check(ctx, x, h, w_ih, w_hh, 4, dirs)
    if tuple(c.shape) != tuple(h.shape):
        raise op_error(ctx, f"initial_c {list(c.shape)} must have the shape of initial_h {list(h.shape)}")
    acts = (_activation(ctx, "recurrent_activation", "sigmoid"), _activation(ctx, "cell_activation", "tanh"),
            _activation(ctx, "activation", "tanh"))
    clip = flag(ctx, "clip", None)
    clip = None if clip is None else float(clip)
    bias, peep = _vector(ctx, inputs, "bias", 4 * hidden, x), _vector(ctx, inputs, "peephole", 3 * hidden, x)
    seq = x.flip(0) if direction == "reverse" else x
    steps, h_f, c_f = _lstm_pass(seq, h[:, :hidden], c[:, :hidden], w_ih, w_hh, bias, peep, acts, clip)
    if dirs == 1:
        return _outputs(ctx, steps), h_f, c_f
    if "weight_ih_back" not in inputs or "weight_hh_back" not in inputs:
        raise op_error(ctx, "a bidirectional lstm needs weight_ih_back and weight_hh_back")
    w_ih_b, w_hh_b = inputs["weight_ih_back"].to(x.dtype), inputs["weight_hh_back"].to(x.dtype)
    _check(ctx, x, h[:, hidden:], w_ih_b, w_hh_b, 4)
    back, h_b, c_b = _lstm_pass(x.flip(0), h[:, hidden:], c[:, hidden:], w_ih_b, w_hh_b,
                                _vector(ctx, inputs, "bias_back", 4 * hidden, x),
                                _vector(ctx, inputs, "peephole_back", 3 * hidden, x), acts, clip)
    back = back[::-1]  # aligned with the input positions
    if bool(flag(ctx, "output_sequence", False)):
        out = torch.cat([torch.stack(steps), torch.stack(back)], -1)
    else:
        out = torch.cat([steps[-1], back[0]], -1)[None]
    return out, torch.cat([h_f, h_b], -1), torch.cat([c_f, c_b], -1)
