"""rnn, gru, lstm against PyTorch on the same weights and numpy from coremltools' op tests' equations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mlupdate.errors import Error
from tests.ops.harness import assert_exports, run_kernel

RNG = np.random.default_rng(4)
S, B, I, H = 4, 3, 5, 6
PARAMS = ["weight_ih", "weight_hh", "bias", "direction", "output_sequence", "activation", "recurrent_activation",
          "cell_activation", "peephole", "clip", "weight_ih_back", "weight_hh_back", "bias_back", "reset_after",
          "input_bias"]


def t2n(t):
    return t.detach().numpy().astype(np.float32)


def run(op, inputs, opset=15):
    return run_kernel(op, inputs, consts=[k for k in inputs if k in PARAMS], opset=opset)


def check(outs, refs, tol=1e-5):
    assert len(outs) == len(refs)
    for o, r in zip(outs, refs, strict=True):
        np.testing.assert_allclose(o, r, atol=tol, rtol=tol)


@pytest.mark.parametrize("direction", ["forward", "reverse"])
@pytest.mark.parametrize("output_sequence", [True, False])
@pytest.mark.parametrize("act", ["tanh", "relu"])
def test_rnn_matches_pytorch(direction, output_sequence, act):
    torch.manual_seed(0)
    rnn = torch.nn.RNN(I, H, nonlinearity=act)
    x, h0 = torch.randn(S, B, I), torch.randn(1, B, H)
    seq, hn = rnn(x.flip(0) if direction == "reverse" else x, h0)  # coremltools' test: reverse = flipped input
    out = seq if output_sequence else seq[-1:]
    bias = t2n(rnn.bias_ih_l0 + rnn.bias_hh_l0)
    res = run("rnn", {"x": t2n(x), "initial_h": t2n(h0[0]), "weight_ih": t2n(rnn.weight_ih_l0),
                      "weight_hh": t2n(rnn.weight_hh_l0), "bias": bias, "direction": direction,
                      "output_sequence": output_sequence, "activation": act})
    check(res, [t2n(out), t2n(hn[0])])


def np_gru(x, h, w_ih, w_hh, b, reverse, seq_out):
    """coremltools' own GRU reference (tests/iOS14/test_recurrent.py): o = tanh(W_o x + R_o (h * r) + b_o)."""
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    (w_r, w_o, w_z), (r_r, r_o, r_z), (b_r, b_o, b_z) = (np.split(a, 3) for a in (w_ih, w_hh, b))
    outs = []
    for xt in (x[::-1] if reverse else x):
        z = sig(xt @ w_z.T + h @ r_z.T + b_z)
        r = sig(xt @ w_r.T + h @ r_r.T + b_r)
        o = np.tanh(xt @ w_o.T + (h * r) @ r_o.T + b_o)
        h = (1 - z) * o + z * h
        outs.append(h)
    return np.stack(outs) if seq_out else outs[-1][None], h


@pytest.mark.parametrize("dtype,opset", [(np.float32, 15), (np.float16, 17)])
@pytest.mark.parametrize("direction", ["forward", "reverse"])
@pytest.mark.parametrize("output_sequence", [True, False])
def test_gru_matches_coremltools_reference(dtype, opset, direction, output_sequence):
    x, h = RNG.standard_normal((S, B, I)), RNG.standard_normal((B, H))
    w_ih, w_hh, b = RNG.standard_normal((3 * H, I)), RNG.standard_normal((3 * H, H)), RNG.standard_normal(3 * H)
    ref = np_gru(x, h, w_ih, w_hh, b, direction == "reverse", output_sequence)
    res = run("gru", {"x": x.astype(dtype), "initial_h": h.astype(dtype), "weight_ih": w_ih.astype(dtype),
                      "weight_hh": w_hh.astype(dtype), "bias": b.astype(dtype), "direction": direction,
                      "output_sequence": output_sequence}, opset=opset)
    assert res[0].dtype == dtype
    check(res, ref, tol=1e-5 if dtype == np.float32 else 2e-2)


def test_gru_ios18_reset_after_matches_pytorch():
    torch.manual_seed(1)
    gru = torch.nn.GRU(I, H)
    x, h0 = torch.randn(S, B, I), torch.randn(1, B, H)
    seq, hn = gru(x, h0)

    def rzn_to_roz(t):
        r, z, n = t2n(t).reshape(3, H, -1)
        return np.concatenate([r, n, z]).reshape(t.shape)

    res = run("gru", {"x": t2n(x), "initial_h": t2n(h0[0]), "weight_ih": rzn_to_roz(gru.weight_ih_l0),
                      "weight_hh": rzn_to_roz(gru.weight_hh_l0), "bias": rzn_to_roz(gru.bias_hh_l0),
                      "input_bias": rzn_to_roz(gru.bias_ih_l0), "reset_after": True, "output_sequence": True},
              opset=18)
    check(res, [t2n(seq), t2n(hn[0])])


def ifgo_to_ifoz(t):
    i, f, g, o = t2n(t).reshape(4, H, -1)
    return np.concatenate([i, f, o, g]).reshape(t.shape)


@pytest.mark.parametrize("direction", ["forward", "reverse"])
@pytest.mark.parametrize("output_sequence", [True, False])
def test_lstm_matches_pytorch(direction, output_sequence):
    torch.manual_seed(2)
    lstm = torch.nn.LSTM(I, H)
    x, h0, c0 = torch.randn(S, B, I), torch.randn(1, B, H), torch.randn(1, B, H)
    seq, (hn, cn) = lstm(x.flip(0) if direction == "reverse" else x, (h0, c0))
    res = run("lstm", {"x": t2n(x), "initial_h": t2n(h0[0]), "initial_c": t2n(c0[0]),
                       "weight_ih": ifgo_to_ifoz(lstm.weight_ih_l0), "weight_hh": ifgo_to_ifoz(lstm.weight_hh_l0),
                       "bias": ifgo_to_ifoz(lstm.bias_ih_l0 + lstm.bias_hh_l0), "direction": direction,
                       "output_sequence": output_sequence})
    check(res, [t2n(seq if output_sequence else seq[-1:]), t2n(hn[0]), t2n(cn[0])])


@pytest.mark.parametrize("output_sequence", [True, False])
def test_bidirectional_lstm_matches_pytorch(output_sequence):
    torch.manual_seed(3)
    lstm = torch.nn.LSTM(I, H, bidirectional=True)
    x, h0, c0 = torch.randn(S, B, I), torch.randn(2, B, H), torch.randn(2, B, H)
    seq, (hn, cn) = lstm(x, (h0, c0))
    if not output_sequence:  # coremltools' test: forward's last step, backward's step at position 0
        seq = torch.cat([seq[-1:, :, :H], seq[:1, :, H:]], -1)
    res = run("lstm", {"x": t2n(x), "initial_h": t2n(torch.cat([h0[0], h0[1]], -1)),
                       "initial_c": t2n(torch.cat([c0[0], c0[1]], -1)), "direction": "bidirectional",
                       "weight_ih": ifgo_to_ifoz(lstm.weight_ih_l0), "weight_hh": ifgo_to_ifoz(lstm.weight_hh_l0),
                       "bias": ifgo_to_ifoz(lstm.bias_ih_l0 + lstm.bias_hh_l0),
                       "weight_ih_back": ifgo_to_ifoz(lstm.weight_ih_l0_reverse),
                       "weight_hh_back": ifgo_to_ifoz(lstm.weight_hh_l0_reverse),
                       "bias_back": ifgo_to_ifoz(lstm.bias_ih_l0_reverse + lstm.bias_hh_l0_reverse),
                       "output_sequence": output_sequence})
    check(res, [t2n(seq), t2n(torch.cat([hn[0], hn[1]], -1)), t2n(torch.cat([cn[0], cn[1]], -1))])


def test_lstm_peephole_clip_and_activations_against_numpy():
    x, h0, c0 = RNG.standard_normal((S, B, I)), RNG.standard_normal((B, H)), RNG.standard_normal((B, H)) * 3
    w_ih, w_hh = RNG.standard_normal((4 * H, I)), RNG.standard_normal((4 * H, H))
    b, peep = RNG.standard_normal(4 * H), RNG.standard_normal(3 * H)
    hard = lambda v: np.clip(0.2 * v + 0.5, 0, 1)  # noqa: E731 - hard sigmoid, the proto's alpha/beta
    h, c, outs = h0, c0, []
    for xt in x:  # the definition's equations, peepholes on c_{t-1} (i, f) and c_t (o)
        g_i, g_f, g_o, g_z = np.split(xt @ w_ih.T + h @ w_hh.T + b, 4, -1)
        i, f = hard(g_i + peep[:H] * c), hard(g_f + peep[H:2 * H] * c)
        c = np.clip(f * c + i * np.maximum(g_z, 0), -1.5, 1.5)
        h = hard(g_o + peep[2 * H:] * c) * 1.71 * np.tanh(c * 2 / 3)
        outs.append(h)
    res = run("lstm", {"x": x.astype(np.float32), "initial_h": h0.astype(np.float32),
                       "initial_c": c0.astype(np.float32), "weight_ih": w_ih.astype(np.float32),
                       "weight_hh": w_hh.astype(np.float32), "bias": b.astype(np.float32),
                       "peephole": peep.astype(np.float32), "clip": np.float32(1.5), "output_sequence": True,
                       "recurrent_activation": "hard_sigmoid", "cell_activation": "relu",
                       "activation": "scaled_tanh"})
    check(res, [np.stack(outs), h, c], tol=1e-4)


def test_recurrent_errors_name_the_op():
    x = np.zeros((S, B, I), np.float32)
    with pytest.raises(Error, match="gru"):
        run("gru", {"x": x, "initial_h": np.zeros((B, H), np.float32), "weight_ih": np.zeros((2 * H, I), np.float32),
                    "weight_hh": np.zeros((3 * H, H), np.float32)})
    with pytest.raises(Error, match="lstm"):
        run("lstm", {"x": x, "initial_h": np.zeros((B, 2 * H), np.float32), "initial_c": np.zeros((B, 2 * H),
                                                                                                   np.float32),
                     "weight_ih": np.zeros((4 * H, I), np.float32), "weight_hh": np.zeros((4 * H, H), np.float32),
                     "direction": "bidirectional"})
    with pytest.raises(Error, match="rnn"):
        run("rnn", {"x": x, "initial_h": np.zeros((B, H), np.float32), "weight_ih": np.zeros((H, I), np.float32),
                    "weight_hh": np.zeros((H, H), np.float32), "activation": "softplus"})


F32 = [RNG.standard_normal(s).astype(np.float32) for s in [(3, 2, 4), (2, 10), (2, 10), (20, 4), (20, 5), (15, 4),
                                                           (15, 5), (5, 4), (5, 5), (2, 5)]]
EXPORTS = [
    ("lstm", {"x": F32[0], "initial_h": F32[1], "initial_c": F32[2], "weight_ih": F32[3], "weight_hh": F32[4],
              "weight_ih_back": F32[3] * 2, "weight_hh_back": F32[4] * 2, "direction": "bidirectional",
              "output_sequence": True}, ["x", "initial_h", "initial_c"], 15),
    ("gru", {"x": F32[0], "initial_h": F32[9], "weight_ih": F32[5], "weight_hh": F32[6]}, ["x", "initial_h"], 15),
    ("rnn", {"x": F32[0], "initial_h": F32[9], "weight_ih": F32[7], "weight_hh": F32[8], "direction": "reverse"},
     ["x", "initial_h"], 15),
]


@pytest.mark.parametrize("case", range(len(EXPORTS)))
def test_exports_to_onnx(case):
    assert_exports(*EXPORTS[case])


@pytest.mark.parametrize("op", ["rnn", "gru", "lstm"])
def test_batch_independence_and_repeatability(op):
    gates = {"rnn": 1, "gru": 3, "lstm": 4}[op]
    x, h = RNG.standard_normal((S, B, I)).astype(np.float32), RNG.standard_normal((B, H)).astype(np.float32)
    inputs = {"x": x, "initial_h": h, "weight_ih": RNG.standard_normal((gates * H, I)).astype(np.float32),
              "weight_hh": RNG.standard_normal((gates * H, H)).astype(np.float32), "output_sequence": True}
    if op == "lstm":
        inputs["initial_c"] = RNG.standard_normal((B, H)).astype(np.float32)
    together = run(op, inputs)
    np.testing.assert_array_equal(together[0], run(op, inputs)[0])
    for b in range(B):
        alone = run(op, {**inputs, "x": x[:, b:b + 1], "initial_h": h[b:b + 1],
                         **({"initial_c": inputs["initial_c"][b:b + 1]} if op == "lstm" else {})})
        np.testing.assert_allclose(alone[0][:, 0], together[0][:, b], rtol=1e-5, atol=1e-6)
