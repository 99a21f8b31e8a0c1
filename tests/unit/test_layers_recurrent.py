"""simpleRecurrent, gru, uniDirectionalLSTM and biDirectionalLSTM.

References: torch.nn.RNN / GRU / LSTM (bidirectional too) with the weights mapped from Core ML's
layout into torch's, and numpy written from NeuralNetwork.proto's equations for what torch lacks
(peepholes, coupled gates, cell clip, forget bias, other activations, GRU's reset-before-matmul).

Legacy sequences are declared as rank-5 ``[Seq, 1, C, 1, 1]`` inputs; Core ML returns an
undeclared legacy output as ``[C, H, W]`` for one step and ``[Seq, 1, C, H, W]`` otherwise. ND
networks take ``[Seq, Batch, C, 1, 1]`` and give ``[Seq or 1, Batch, H, 1, 1]`` and ``[1, Batch, H, 1, 1]``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mlupdate
from tests.unit.test_layers_base import Case, builder, case_test, rand, save

REFERENCE = ("torch.nn.RNN / GRU / LSTM (bidirectional too) with weights mapped from Core ML's layout; "
             "numpy written from the proto's equations (peepholes, coupled gates, clip, activations)")

I, H = 3, 4
_rng = np.random.default_rng(7)


def _w(*shape: int) -> np.ndarray:
    return _rng.uniform(-0.6, 0.6, shape).astype(np.float32)


def _gates(n: int, cols: int) -> list[np.ndarray]:
    return [_w(H, cols) for _ in range(n)]


# -- output layouts ------------------------------------------------------------------------------------


def _legacy_seq(y: np.ndarray) -> np.ndarray:
    """[S, 1, H] -> what Core ML returns for an undeclared legacy output."""
    return y.reshape(y.shape[0], 1, -1, 1, 1) if y.shape[0] > 1 else y.reshape(-1, 1, 1)


def _outs(nd: bool, y: np.ndarray, *states: np.ndarray) -> tuple[np.ndarray, ...]:
    """The output sequence [S, b, H] and final states [b, H] as one example's results."""
    if nd:
        return (y.reshape(*y.shape, 1, 1), *(s.reshape(1, *s.shape, 1, 1) for s in states))
    return (_legacy_seq(y), *(s.reshape(-1, 1, 1) for s in states))


def _steps(x: np.ndarray) -> np.ndarray:
    """A declared input ([S, b, C, 1, 1] or [C]) as [S, b, C]."""
    return x.reshape(1, 1, -1) if x.ndim == 1 else x.reshape(x.shape[0], x.shape[1], -1)


def _init(s: np.ndarray | None, b: int) -> np.ndarray:
    """An initial state input as [b, H] (zeros when the network has none)."""
    return np.zeros((b, H), np.float32) if s is None else s.reshape(b, H)


# -- numpy references written from the proto ----------------------------------------------------------

_ACT = {
    "SIGMOID": lambda x: 1 / (1 + np.exp(-x)),
    "TANH": np.tanh,
    "RELU": lambda x: np.maximum(x, 0),
    "LINEAR": lambda x: x,
    # the builder writes an empty scaledTanh; coremltools' MIL LSTM tests (run on Core ML, no xfail) expect plain
    # tanh for it (scaled_tanh's defaults alpha = beta = 1), not the proto's 1.7159 * tanh(2x/3)
    "SCALED_TANH": np.tanh,
    "SIGMOID_HARD": lambda x: np.clip(0.2 * x + 0.5, 0, 1),
}


def _c(v: np.ndarray) -> np.ndarray:
    return np.clip(v, -50, 50)


def np_rnn(x, w, r, b, act, h, reverse=False):
    ys = []
    for t in (range(len(x))[::-1] if reverse else range(len(x))):
        h = _ACT[act](_c(x[t] @ w.T + h @ r.T + b))
        ys.append(h)
    return np.stack(ys), h


def np_gru(x, ws, rs, bs, acts, h, reverse=False):
    (wz, wr, wo), (rz, rr, ro), (bz, br, bo) = ws, rs, bs
    f, g = _ACT[acts[0]], _ACT[acts[1]]
    ys = []
    for t in (range(len(x))[::-1] if reverse else range(len(x))):
        z = f(_c(x[t] @ wz.T + h @ rz.T + bz))
        r = f(_c(x[t] @ wr.T + h @ rr.T + br))
        o = g(_c(x[t] @ wo.T + (h * r) @ ro.T + bo))
        h = (1 - z) * o + z * h
        ys.append(h)
    return np.stack(ys), h


def np_lstm(x, ws, rs, bs, h, c, acts=("SIGMOID", "TANH", "TANH"), peep=None, forget_bias=False, coupled=False,
            clip=50000.0, reverse=False):
    """ws, rs, bs in the builder's order [i, f, o, z]; peep [p_i, p_f, p_o]."""
    f_, g_, h_ = (_ACT[a] for a in acts)
    (wi, wf, wo, wz), (ri, rf, ro, rz), (bi, bf, bo, bz) = ws, rs, bs
    pi, pf, po = peep if peep is not None else (0, 0, 0)
    bf = bf + 1 if forget_bias else bf
    ys = []
    for t in (range(len(x))[::-1] if reverse else range(len(x))):
        i = f_(_c(x[t] @ wi.T + h @ ri.T + pi * c + bi))
        f = f_(_c(x[t] @ wf.T + h @ rf.T + pf * c + bf))
        z = g_(_c(x[t] @ wz.T + h @ rz.T + bz))
        c = c * (1 - i) + i * z if coupled else c * f + i * z
        c = np.clip(c, -clip, clip)
        o = f_(_c(x[t] @ wo.T + h @ ro.T + po * c + bo))
        h = h_(c) * o
        ys.append(h)
    return np.stack(ys), h, c


# -- torch references ---------------------------------------------------------------------------------


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


def torch_rnn(x, w, r, b, act, h0, reverse=False):
    rnn = torch.nn.RNN(I, H, nonlinearity=act.lower())
    with torch.no_grad():
        rnn.weight_ih_l0.copy_(_t(w))
        rnn.weight_hh_l0.copy_(_t(r))
        rnn.bias_ih_l0.copy_(_t(b))
        rnn.bias_hh_l0.zero_()
        y, hn = rnn(_t(x[::-1] if reverse else x), _t(h0[None]))
    return y.numpy(), hn[0].numpy()


def torch_gru(x, ws, ro_diag, bs, h0):
    """Core ML's GRU applies the reset gate before R_o; with a diagonal R_o that equals torch's after."""
    (wz, wr, wo), (rz, rr), (bz, br, bo) = ws[:3], ws[3:], bs
    gru = torch.nn.GRU(I, H)
    with torch.no_grad():  # torch's gate order: reset, update, new
        gru.weight_ih_l0.copy_(_t(np.concatenate([wr, wz, wo])))
        gru.weight_hh_l0.copy_(_t(np.concatenate([rr, rz, np.diag(ro_diag)])))
        gru.bias_ih_l0.copy_(_t(np.concatenate([br, bz, bo])))
        gru.bias_hh_l0.zero_()
        y, hn = gru(_t(x), _t(h0[None]))
    return y.numpy(), hn[0].numpy()


def _torch_order(m: list[np.ndarray]) -> np.ndarray:
    """Core ML builder order [i, f, o, z] -> torch's [i, f, g, o]."""
    return np.concatenate([m[0], m[1], m[3], m[2]])


def torch_lstm(x, dirs, h0, c0, bidirectional=False):
    """``dirs``: one (ws, rs, bs) per direction in the builder's order; h0, c0: [D, b, H]."""
    lstm = torch.nn.LSTM(I, H, bidirectional=bidirectional)
    with torch.no_grad():
        for k, (ws, rs, bs) in enumerate(dirs):
            sfx = "_l0_reverse" if k else "_l0"
            getattr(lstm, "weight_ih" + sfx).copy_(_t(_torch_order(ws)))
            getattr(lstm, "weight_hh" + sfx).copy_(_t(_torch_order(rs)))
            getattr(lstm, "bias_ih" + sfx).copy_(_t(_torch_order(bs)))
            getattr(lstm, "bias_hh" + sfx).zero_()
        y, (hn, cn) = lstm(_t(x), (_t(h0), _t(c0)))
    return y.numpy(), hn.numpy(), cn.numpy()


# -- simpleRecurrent ------------------------------------------------------------------------------------

RW, RR, RB = _w(H, I), _w(H, H), _w(H)


def _rnn_case(cid, seq, act, *, output_all=True, state=True, reverse=False, nd=False, batch=1, ref="torch"):
    x_shape = (seq, batch, I, 1, 1) if (seq > 1 or nd) else (I,)
    inputs = {"x": rand(*x_shape, seed=seq)}
    if state:
        inputs["h0"] = rand(*((1, batch, H, 1, 1) if nd else (H,)), seed=11)
    names = list(inputs)

    def add(b):
        b.add_simple_rnn("rnn", RR, RW, RB, H, I, act, names, ["out", "h"], output_all=output_all,
                         reverse_input=reverse)

    def reference(x, h0=None):
        xs = _steps(x)
        h = _init(h0, xs.shape[1])
        if ref == "torch":
            y, hn = torch_rnn(xs, RW, RR, RB, act, h, reverse)
        else:
            y, hn = np_rnn(xs.astype(np.float64), RW, RR, RB, act, h, reverse)
        return _outs(nd, y if output_all else y[-1:], hn)

    return Case(cid, add, inputs, reference, nd=nd, outputs=("out", "h"))


RNN_CASES = [
    _rnn_case("rnn_tanh_seq4_state", 4, "TANH"),
    _rnn_case("rnn_relu_last_no_state", 3, "RELU", output_all=False, state=False),
    _rnn_case("rnn_one_step_rank1", 1, "TANH"),
    _rnn_case("rnn_reverse", 4, "TANH", reverse=True),
    _rnn_case("rnn_nd_batch2", 3, "TANH", nd=True, batch=2),
    _rnn_case("rnn_scaled_tanh_numpy", 3, "SCALED_TANH", ref="numpy"),
    _rnn_case("rnn_sigmoid_hard_numpy", 3, "SIGMOID_HARD", ref="numpy", output_all=False),
    _rnn_case("rnn_linear_numpy_reverse", 3, "LINEAR", ref="numpy", reverse=True),
]

# -- gru ------------------------------------------------------------------------------------------------

GW, GR, GB = _gates(3, I), _gates(3, H), [_w(H) for _ in range(3)]
RO_DIAG = _w(H)


def _gru_case(cid, seq, *, diag=True, acts=("SIGMOID", "TANH"), output_all=True, state=True, reverse=False,
              nd=False, batch=1, ref="torch"):
    x_shape = (seq, batch, I, 1, 1) if (seq > 1 or nd) else (I,)
    inputs = {"x": rand(*x_shape, seed=20 + seq)}
    if state:
        inputs["h0"] = rand(*((1, batch, H, 1, 1) if nd else (H,)), seed=21)
    names = list(inputs)
    rs = [GR[0], GR[1], np.diag(RO_DIAG).astype(np.float32) if diag else GR[2]]

    def add(b):
        b.add_gru("gru", rs, GW, GB, H, I, names, ["out", "h"], activation=acts[1], inner_activation=acts[0],
                  output_all=output_all, reverse_input=reverse)

    def reference(x, h0=None):
        xs = _steps(x)
        h = _init(h0, xs.shape[1])
        if ref == "torch":
            y, hn = torch_gru(xs, [*GW, rs[0], rs[1]], RO_DIAG if diag else None, GB, h)
        else:
            y, hn = np_gru(xs.astype(np.float64), GW, rs, GB, acts, h, reverse)
        return _outs(nd, y if output_all else y[-1:], hn)

    return Case(cid, add, inputs, reference, nd=nd, outputs=("out", "h"))


GRU_CASES = [
    _gru_case("gru_torch_seq4_state", 4),
    _gru_case("gru_torch_one_step_rank1", 1),
    _gru_case("gru_torch_nd_batch2_last", 3, nd=True, batch=2, output_all=False),
    _gru_case("gru_numpy_full_ro", 4, diag=False, ref="numpy"),
    _gru_case("gru_numpy_hard_sigmoid_reverse_last", 3, diag=False, acts=("SIGMOID_HARD", "TANH"), ref="numpy",
              reverse=True, output_all=False, state=False),
]

# -- uniDirectionalLSTM ---------------------------------------------------------------------------------

LW, LR, LB, LP = _gates(4, I), _gates(4, H), [_w(H) for _ in range(4)], [_w(H) for _ in range(3)]
ZEROS4 = [np.zeros(H, np.float32) for _ in range(4)]


def _lstm_case(cid, seq, *, output_all=True, states=2, bias=True, nd=False, batch=1, ref="torch", acts=None,
               peep=False, forget_bias=False, coupled=False, clip=None, reverse=False):
    x_shape = (seq, batch, I, 1, 1) if (seq > 1 or nd) else (I,)
    inputs = {"x": rand(*x_shape, seed=30 + seq)}
    for k, n in enumerate(("h0", "c0")[:states]):
        inputs[n] = rand(*((1, batch, H, 1, 1) if nd else (H,)), seed=31 + k)
    names = list(inputs)
    acts = acts or ("SIGMOID", "TANH", "TANH")
    opts = {"peep": LP if peep else None, "forget_bias": forget_bias, "coupled_input_forget_gate": coupled,
            "reverse_input": reverse}
    if clip is not None:
        opts["cell_clip_threshold"] = clip

    def add(b):
        b.add_unilstm("lstm", LR, LW, LB if bias else None, H, I, names, ["out", "h", "c"], inner_activation=acts[0],
                      cell_state_update_activation=acts[1], output_activation=acts[2], output_all=output_all, **opts)

    def reference(x, h0=None, c0=None):
        xs = _steps(x)
        b = xs.shape[1]
        h, c = _init(h0, b), _init(c0, b)
        bs = LB if bias else ZEROS4
        if ref == "torch":
            y, hn, cn = torch_lstm(xs[::-1] if reverse else xs, [(LW, LR, bs)], h[None], c[None])
            hn, cn = hn[0], cn[0]
        else:
            y, hn, cn = np_lstm(xs.astype(np.float64), LW, LR, bs, h, c, acts, LP if peep else None, forget_bias,
                                coupled, 50000.0 if clip is None else clip, reverse)
        return _outs(nd, y if output_all else y[-1:], hn, cn)

    return Case(cid, add, inputs, reference, nd=nd, outputs=("out", "h", "c"))


LSTM_CASES = [
    _lstm_case("lstm_torch_seq4_states", 4),
    _lstm_case("lstm_torch_last_no_states", 3, output_all=False, states=0),
    _lstm_case("lstm_torch_one_step_rank1_h_only", 1, states=1),
    _lstm_case("lstm_torch_no_bias", 3, bias=False),
    _lstm_case("lstm_torch_reverse", 4, reverse=True),
    _lstm_case("lstm_torch_nd_batch2", 3, nd=True, batch=2),
    _lstm_case("lstm_numpy_peephole_forget_bias", 4, ref="numpy", peep=True, forget_bias=True),
    _lstm_case("lstm_numpy_coupled_clip", 4, ref="numpy", coupled=True, clip=0.3, peep=True),
    _lstm_case("lstm_numpy_activations_reverse", 3, ref="numpy", acts=("SIGMOID_HARD", "RELU", "SCALED_TANH"),
               reverse=True, output_all=False),
    _lstm_case("lstm_numpy_linear_tanh", 3, ref="numpy", acts=("SIGMOID", "LINEAR", "TANH"), nd=True, batch=2),
]

# -- biDirectionalLSTM ----------------------------------------------------------------------------------

BW, BR, BB, BP = _gates(4, I), _gates(4, H), [_w(H) for _ in range(4)], [_w(H) for _ in range(3)]
_BI_OUT = ("out", "h", "c", "hb", "cb")


def _bi_case(cid, seq, *, output_all=True, states=4, nd=False, batch=1, ref="torch", peep=False, coupled=False,
             forget_bias=False, clip=None):
    x_shape = (seq, batch, I, 1, 1) if (seq > 1 or nd) else (I,)
    inputs = {"x": rand(*x_shape, seed=40 + seq)}
    for k, n in enumerate(("h0", "c0", "hb0", "cb0")[:states]):
        inputs[n] = rand(*((1, batch, H, 1, 1) if nd else (H,)), seed=41 + k)
    names = list(inputs)
    opts = {"peep": LP if peep else None, "peep_back": BP if peep else None, "forget_bias": forget_bias,
            "coupled_input_forget_gate": coupled}
    if clip is not None:
        opts["cell_clip_threshold"] = clip

    def add(b):
        b.add_bidirlstm("bilstm", LR, LW, LB, BR, BW, BB, H, I, names, list(_BI_OUT), output_all=output_all, **opts)

    def reference(x, *st):
        xs = _steps(x)
        b = xs.shape[1]
        h0, c0, hb0, cb0 = (_init(s, b) for s in (*st, *[None] * (4 - len(st))))
        if ref == "torch":
            y, hn, cn = torch_lstm(xs, [(LW, LR, LB), (BW, BR, BB)], np.stack([h0, hb0]), np.stack([c0, cb0]), True)
            hf, cf, hb, cb = hn[0], cn[0], hn[1], cn[1]
        else:
            kw = {"forget_bias": forget_bias, "coupled": coupled, "clip": 50000.0 if clip is None else clip}
            x64 = xs.astype(np.float64)
            yf, hf, cf = np_lstm(x64, LW, LR, LB, h0, c0, peep=LP if peep else None, **kw)
            yb, hb, cb = np_lstm(x64, BW, BR, BB, hb0, cb0, peep=BP if peep else None, reverse=True, **kw)
            y = np.concatenate([yf, yb[::-1]], axis=-1)  # the backward outputs aligned with the input steps
        y = y if output_all else np.concatenate([hf, hb], axis=-1)[None]
        return _outs(nd, y, hf, cf, hb, cb)

    return Case(cid, add, inputs, reference, nd=nd, outputs=_BI_OUT)


BI_CASES = [
    _bi_case("bilstm_torch_seq4_states", 4),
    _bi_case("bilstm_torch_last_no_states", 3, output_all=False, states=0),
    _bi_case("bilstm_torch_one_step_rank1", 1, states=2),
    _bi_case("bilstm_torch_nd_batch2", 3, nd=True, batch=2),
    _bi_case("bilstm_numpy_peephole_coupled_clip", 4, ref="numpy", peep=True, coupled=True, clip=0.4),
    _bi_case("bilstm_numpy_forget_bias_last", 3, ref="numpy", forget_bias=True, output_all=False),
]

CASES = RNN_CASES + GRU_CASES + LSTM_CASES + BI_CASES
test_cases = case_test(CASES)


# -- errors ---------------------------------------------------------------------------------------------


def test_wrong_activation_count_is_a_spec_error(tmp_path):
    b = builder([("x", (I,))], ("out", "h"))
    b.add_gru("gru", GR, GW, GB, H, I, ["x"], ["out", "h"])
    del b.spec.neuralNetwork.layers[0].gru.activations[-1]
    path = tmp_path / "bad.mlmodel"
    path.write_bytes(b.spec.SerializeToString())
    with pytest.raises(mlupdate.SpecError, match="gru"):
        mlupdate.load(path)


def test_unsupported_recurrent_activation_is_a_spec_error(tmp_path):
    b = builder([("x", (I,))], ("out", "h"))
    b.add_simple_rnn("rnn", RR, RW, RB, H, I, "TANH", ["x"], ["out", "h"])
    b.spec.neuralNetwork.layers[0].simpleRecurrent.activation.ELU.alpha = 1.0
    path = tmp_path / "bad.mlmodel"
    path.write_bytes(b.spec.SerializeToString())
    with pytest.raises(mlupdate.SpecError, match="ELU"):
        mlupdate.load(path)


def test_explicit_activation_parameters_are_used(tmp_path):
    b = builder([("x", (3, 1, I, 1, 1))], ("out", "h"))
    b.add_simple_rnn("rnn", RR, RW, RB, H, I, "SCALED_TANH", ["x"], ["out", "h"], output_all=True)
    act = b.spec.neuralNetwork.layers[0].simpleRecurrent.activation.scaledTanh
    act.alpha, act.beta = 0.5, 2.0
    x = rand(3, 1, I, 1, 1, seed=5)
    got = mlupdate.load(save(b, tmp_path), executor="torch").predict({"x": x})
    h = np.zeros((1, H))
    want = []
    for t in range(3):
        h = 0.5 * np.tanh(2.0 * _c(x[t, 0, :, 0, 0] @ RW.T + h @ RR.T + RB))
        want.append(h)
    np.testing.assert_allclose(got["out"], _legacy_seq(np.stack(want)), atol=1e-5)


def test_input_size_mismatch_names_the_layer(tmp_path):
    b = builder([("x", (3, 1, I + 1, 1, 1))], ("out", "h"))
    b.add_simple_rnn("my_rnn", RR, RW, RB, H, I, "TANH", ["x"], ["out", "h"])
    with pytest.raises(mlupdate.LayerError, match="my_rnn"):  # found when the model loads
        mlupdate.load(save(b, tmp_path), executor="torch")
