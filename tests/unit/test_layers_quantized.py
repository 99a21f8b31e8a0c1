"""Quantized and half-precision weights, int8 dynamic quantization, and dense-layer rank rules.

Truth comes from coremltools: models are quantized with its ``quantize_weights`` and decoded with
its own dequantizer (``_dequantize_nn_spec``); int8 dynamic layers come from its
``activate_int8_int8_matrix_multiplications`` and are checked against a numpy reference written
from NeuralNetwork.proto (plus the per-tensor rounding the proto leaves open, see
``mlupdate.layers.linear.Int8Dynamic``).
"""

from __future__ import annotations

import copy
import logging

import numpy as np
import pytest

import mlupdate
from mlupdate.layers.weights import unpack_codes, weight_array
from tests.unit.test_layers_base import EXECUTORS, Case, builder, case_test, rand, run, save

logging.getLogger("coremltools").setLevel(logging.ERROR)
ct = pytest.importorskip("coremltools")
from coremltools.models.neural_network import quantization_utils as qu  # noqa: E402

_LINEAR = ct.models._QUANTIZATION_MODE_LINEAR_QUANTIZATION

W_IP, B_IP = rand(5, 6, seed=1), rand(5, seed=2)  # innerProduct [C_out, C_in]
W_MM, B_MM = rand(6, 3, seed=3), rand(3, seed=4)  # batchedMatmul [X1, X2]
W_EMB, B_EMB = rand(4, 7, seed=5), rand(4, seed=6)  # embedding [out, vocab]


def _lut_function(nbits: int, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A custom LUT: 2**nbits quantiles of the weights, each weight mapped to its nearest entry."""
    lut = np.quantile(w.ravel(), np.linspace(0.0, 1.0, 1 << nbits))
    codes = np.abs(w.reshape(-1, 1) - lut[None, :]).argmin(axis=1)
    return lut, codes.reshape(w.shape)


def _quantize(spec, nbits: int, mode: str):
    """(quantized spec, the same spec dequantized by coremltools)."""
    kwargs = {"lut_function": _lut_function} if mode == "custom_lut" else {}
    q = qu.quantize_weights(ct.models.MLModel(copy.deepcopy(spec)), nbits, quantization_mode=mode, **kwargs)
    qspec = q.get_spec()
    deq = copy.deepcopy(qspec)
    qu._dequantize_nn_spec(deq.neuralNetwork)
    return qspec, deq


def _dense_nd():
    b = builder([("x", (1, 6)), ("ids", (1, 3, 1))], ("fc", "mm", "emb"), nd=True)
    b.add_inner_product("fc", W_IP, B_IP, 6, 5, True, "x", "fc")
    b.add_batched_mat_mul("mm", ["x"], "mm", weight_matrix_rows=6, weight_matrix_columns=3, W=W_MM, bias=B_MM)
    b.add_embedding_nd("emb", "ids", "emb", 7, 4, W=W_EMB, b=B_EMB)
    return b


def _conv_legacy():
    b = builder([("img", (3, 5, 5))], ("conv", "deconv"))
    b.add_convolution("conv", 3, 4, 3, 3, 1, 1, "valid", 1, rand(3, 3, 3, 4, seed=7), rand(4, seed=8), True,
                      input_name="img", output_name="conv")
    b.add_convolution("deconv", 3, 2, 2, 2, 1, 1, "valid", 1, rand(2, 2, 3, 2, seed=9), None, False,
                      input_name="img", output_name="deconv", is_deconv=True, output_shape=(6, 6))
    return b


# -- bit packing -------------------------------------------------------------------------------------


@pytest.mark.parametrize("nbits", range(1, 9))
def test_codes_unpack_most_significant_bit_first(nbits):
    codes = np.random.default_rng(nbits).integers(0, 1 << nbits, 37).astype(np.uint8)
    raw = codes.tobytes() if nbits == 8 else qu._convert_array_to_nbit_quantized_bytes(codes, nbits).tobytes()
    np.testing.assert_array_equal(unpack_codes(raw, codes.size, nbits), codes)
    if nbits < 8:
        np.testing.assert_array_equal(qu._unpack_to_bytes(np.frombuffer(raw, np.uint8), codes.size, nbits), codes)


# -- decoded weights vs coremltools' dequantization ----------------------------------------------------

_MODES = [(n, m) for n in range(1, 9) for m in ("linear", "linear_lut", "custom_lut")] + [(8, "linear_symmetric")]


@pytest.mark.parametrize(("nbits", "mode"), _MODES, ids=[f"{m}-{n}" for n, m in _MODES])
def test_decoded_weights_match_coremltools(nbits, mode):
    qspec, deq = _quantize(_dense_nd().spec, nbits, mode)
    for ql, dl in zip(qspec.neuralNetwork.layers, deq.neuralNetwork.layers, strict=True):
        kind = ql.WhichOneof("layer")
        qp, dp = getattr(ql, kind), getattr(dl, kind)
        assert qp.weights.HasField("quantization") and len(qp.weights.rawValue)
        n_out = {"innerProduct": 5, "batchedMatmul": 3, "embeddingND": 4}[kind]
        for field in ("weights", "bias"):
            want = np.asarray(getattr(dp, field).floatValue, np.float32)
            got = weight_array(getattr(qp, field), want.size, f"{ql.name} {field}", channels=n_out)
            np.testing.assert_allclose(got, want, atol=1e-6, err_msg=f"{kind} {field}")

    qspec, deq = _quantize(_conv_legacy().spec, nbits, mode)
    conv, deconv = (layer.convolution for layer in qspec.neuralNetwork.layers)
    dconv, ddeconv = (layer.convolution for layer in deq.neuralNetwork.layers)
    got = weight_array(conv.weights, 4 * 3 * 9, "conv weights", channels=4)
    np.testing.assert_allclose(got, np.asarray(dconv.weights.floatValue), atol=1e-6)
    # deconvolution kernels are [C_in, C_out / groups, kH, kW]; coremltools scales along axis 1
    got = weight_array(deconv.weights, 3 * 2 * 4, "deconv weights", shape=(3, 2, 2, 2), channel_axis=1)
    np.testing.assert_allclose(got, np.asarray(ddeconv.weights.floatValue), atol=1e-6)


def test_float16_and_raw_float32_weights():
    b = _dense_nd()
    ip = b.spec.neuralNetwork.layers[0].innerProduct
    ip.weights.float16Value = W_IP.astype("<f2").tobytes()
    del ip.weights.floatValue[:]
    np.testing.assert_array_equal(weight_array(ip.weights, 30, "w"), W_IP.astype(np.float16).astype(np.float32).ravel())
    ip.weights.Clear()
    ip.weights.rawValue = W_IP.astype("<f4").tobytes()
    np.testing.assert_array_equal(weight_array(ip.weights, 30, "w"), W_IP.ravel())


# -- predictions of quantized models ------------------------------------------------------------------


@pytest.mark.parametrize(("nbits", "mode", "executor"), [
    (1, "linear", "torch"), (2, "custom_lut", "torch"), (3, "linear", "torch"), (4, "linear", "onnxruntime"),
    (4, "custom_lut", "onnxruntime"), (5, "linear_lut", "torch"), (7, "linear", "torch"), (8, "linear", "torch"),
])
def test_quantized_predictions_match_dequantized_numpy(tmp_path, nbits, mode, executor):
    qspec, deq = _quantize(_dense_nd().spec, nbits, mode)
    path = tmp_path / "q.mlmodel"
    ct.utils.save_spec(qspec, str(path))
    ip, mm, emb = (getattr(layer, layer.WhichOneof("layer")) for layer in deq.neuralNetwork.layers)
    w_ip = np.asarray(ip.weights.floatValue, np.float32).reshape(5, 6)
    w_mm = np.asarray(mm.weights.floatValue, np.float32).reshape(3, 6).T
    w_emb = np.asarray(emb.weights.floatValue, np.float32).reshape(4, 7)
    b_ip, b_mm, b_emb = (np.asarray(p.bias.floatValue, np.float32) for p in (ip, mm, emb))
    x = rand(1, 6, seed=10)
    ids = np.array([[[6.0], [0.0], [3.0]]], np.float32)
    got = run(path, executor, [{"x": x, "ids": ids}, {"x": -x, "ids": ids[:, ::-1].copy()}])
    for ex, res in zip((x, -x), got, strict=True):
        np.testing.assert_allclose(res["fc"], ex @ w_ip.T + b_ip, atol=1e-5)
        np.testing.assert_allclose(res["mm"], ex @ w_mm + b_mm, atol=1e-5)
    np.testing.assert_allclose(got[0]["emb"], w_emb.T[[6, 0, 3]][None] + b_emb, atol=1e-6)
    if nbits == 8:  # sanity: 8-bit weights stay close to the float model
        np.testing.assert_allclose(got[0]["fc"], x @ W_IP.T + B_IP, atol=0.05)


@pytest.mark.parametrize("executor", EXECUTORS)
def test_quantized_legacy_convolution_predictions(tmp_path, executor):
    b = builder([("img", (3, 5, 5))], ("conv",))
    w, bias = rand(3, 3, 3, 4, seed=7), rand(4, seed=8)
    b.add_convolution("conv", 3, 4, 3, 3, 1, 1, "valid", 1, w, bias, True, input_name="img", output_name="conv")
    qspec, deq = _quantize(b.spec, 4, "linear")
    path = tmp_path / "c.mlmodel"
    ct.utils.save_spec(qspec, str(path))
    p = deq.neuralNetwork.layers[0].convolution
    k = np.asarray(p.weights.floatValue, np.float32).reshape(4, 3, 3, 3)
    bq = np.asarray(p.bias.floatValue, np.float32)
    img = rand(3, 5, 5, seed=11)
    win = np.lib.stride_tricks.sliding_window_view(img, (3, 3), axis=(1, 2))  # [C, 3, 3, kh, kw]
    want = np.einsum("chwij,ocij->ohw", win, k) + bq[:, None, None]
    np.testing.assert_allclose(run(path, executor, [{"img": img}])[0]["conv"], want, atol=1e-5)


# -- int8 dynamic quantization -------------------------------------------------------------------------


def _int8_reference(x: np.ndarray, codes: np.ndarray, scale: float) -> np.ndarray:
    """Per-tensor symmetric int8 input quantization (assumed), exact int product, dequantized."""
    x = x.astype(np.float32)
    amax = np.float32(np.abs(x).max())
    s = amax / np.float32(127.0) if amax > 0 else np.float32(1.0)
    q = np.clip(np.rint(x / s), -127, 127)
    return ((q.astype(np.float64) @ codes.astype(np.float64).T) * (float(s) * scale)).astype(np.float32)


def _int8_model(tmp_path, nd: bool):
    if nd:
        b = builder([("x", (1, 3, 8))], ("fc", "mm"), nd=True)
        b.add_inner_product("fc", rand(5, 8, seed=12), None, 8, 5, False, "x", "fc")
        b.add_batched_mat_mul("mm", ["x"], "mm", weight_matrix_rows=8, weight_matrix_columns=4, W=rand(8, 4, seed=13))
    else:
        b = builder([("x", (8, 1, 1))], ("fc",))
        b.add_inner_product("fc", rand(5, 8, seed=12), None, 8, 5, False, "x", "fc")
    spec = qu.activate_int8_int8_matrix_multiplications(copy.deepcopy(b.spec))
    path = tmp_path / "i8.mlmodel"
    ct.utils.save_spec(spec, str(path))
    return spec, path


@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize("nd", [True, False], ids=["nd", "legacy"])
def test_int8_dynamic_quantize(tmp_path, executor, nd):
    spec, path = _int8_model(tmp_path, nd)
    layers = {layer.name: getattr(layer, layer.WhichOneof("layer")) for layer in spec.neuralNetwork.layers}
    for p in layers.values():
        assert p.int8DynamicQuantize and len(p.weights.int8RawValue) and not len(p.weights.floatValue)
    examples = [{"x": rand(*((1, 3, 8) if nd else (8, 1, 1)), seed=14 + i) * (i + 1)} for i in range(3)]
    examples.append({"x": np.zeros_like(examples[0]["x"])})
    got = run(path, executor, examples)
    for ex, res in zip(examples, got, strict=True):
        x = ex["x"] if nd else ex["x"].reshape(8)
        for name, p in layers.items():
            codes = np.frombuffer(p.weights.int8RawValue, np.int8)
            scale = float(p.weights.quantization.linearQuantization.scale[0])
            if name == "fc":
                want = _int8_reference(x, codes.reshape(5, 8), scale)
                want = want if nd else want.reshape(5, 1, 1)
            else:  # batchedMatmul weights are stored column-major: [X2, X1]
                want = _int8_reference(x, codes.reshape(4, 8), scale)
            np.testing.assert_allclose(res[name], want, atol=1e-5, rtol=1e-5, err_msg=name)
            w = codes.astype(np.float32).reshape(want.shape[-3 if not nd else -1], 8) * scale
            flt = (x @ w.T).reshape(want.shape)  # the documented intent: close to the float product
            np.testing.assert_allclose(res[name], flt, atol=0.05 * (np.abs(x).max() + 1e-6) * 8)


def _int8_codes(w: np.ndarray) -> tuple[np.ndarray, float]:
    """int8 codes and scale as coremltools' dynamic-quantization tests make them (truncated toward zero)."""
    w_max = float(np.abs(w).max())
    return (127.0 * w / w_max).astype(np.int8), w_max / 127.0


@pytest.mark.parametrize("executor", EXECUTORS)
def test_int8_dynamic_quantize_adds_a_float_bias(tmp_path, executor):
    # coremltools' test_inner_product/batched_mat_mul_dynamic_quantization build these with a bias and expect
    # x @ W_dequantized + b on Core ML (no xfail), although the proto's comment asks for hasBias == false
    w_ip, w_mm = rand(5, 8, seed=30) * 4, rand(8, 4, seed=31) * 4
    b_ip, b_mm = rand(5, seed=32) * 3, rand(4, seed=33) * 3
    (c_ip, s_ip), (c_mm, s_mm) = _int8_codes(w_ip), _int8_codes(w_mm)
    b = builder([("x", (3, 8))], ("fc", "mm"), nd=True)
    b.add_inner_product("fc", c_ip.tobytes(), b_ip, 8, 5, True, "x", "fc", int_8_dynamic_quantize=True,
                        is_quantized_weight=True, quantization_type="linear", nbits=8, quant_scale=np.array([s_ip]))
    b.add_batched_mat_mul("mm", ["x"], "mm", weight_matrix_rows=8, weight_matrix_columns=4, W=c_mm.tobytes(),
                          bias=b_mm, int_8_dynamic_quantize=True, is_quantized_weight=True,
                          quantization_type="linear", nbits=8, quant_scale=np.array([s_mm]))
    x = rand(3, 8, seed=34) * 2
    got = run(save(b, tmp_path), executor, [{"x": x}])[0]
    np.testing.assert_allclose(got["fc"], _int8_reference(x, c_ip, s_ip) + b_ip, atol=1e-4, rtol=1e-5)
    np.testing.assert_allclose(got["mm"], _int8_reference(x, c_mm.T, s_mm) + b_mm, atol=1e-4, rtol=1e-5)
    for name, want in (("fc", x @ (c_ip * s_ip).T + b_ip), ("mm", x @ (c_mm * s_mm) + b_mm)):
        snr = 10 * np.log10(np.sum(want**2) / np.sum((got[name] - want) ** 2))
        assert snr > 40, (name, snr)  # coremltools' own criterion against the float product


# -- build-time validation -------------------------------------------------------------------------------


def _q4(wp, n):
    wp.quantization.numberOfBits = 4
    wp.quantization.linearQuantization.scale.append(0.1)
    wp.quantization.linearQuantization.bias.append(-0.5)
    del wp.floatValue[:]
    wp.rawValue = bytes((n * 4 + 7) // 8)


def _set(path, value):
    def apply(p):
        obj = p
        for part in path[:-1]:
            obj = getattr(obj, part)
        setattr(obj, path[-1], value)
    return apply


_BAD = {
    "zero-input-channels": (lambda p: setattr(p, "inputChannels", 0), "inputChannels"),
    "weight-count": (lambda p: p.weights.floatValue.pop(), "30"),
    "bias-count": (lambda p: p.bias.floatValue.pop(), "bias"),
    "two-value-fields": (lambda p: setattr(p.weights, "float16Value", b"\0\0"), "more than one"),
    "quantized-too-few-bytes": (lambda p: (_q4(p.weights, 30), setattr(p.weights, "rawValue", bytes(14))), "bytes"),
    "nbits-0": (lambda p: (_q4(p.weights, 30), _set(("weights", "quantization", "numberOfBits"), 0)(p)), "1 to 8"),
    "nbits-9": (lambda p: (_q4(p.weights, 30), _set(("weights", "quantization", "numberOfBits"), 9)(p)), "1 to 8"),
    "scale-count": (lambda p: (_q4(p.weights, 30), p.weights.quantization.linearQuantization.scale.append(1.0),
                               p.weights.quantization.linearQuantization.bias.append(1.0)), "scales"),
    "bias-vs-scale": (lambda p: (_q4(p.weights, 30), p.weights.quantization.linearQuantization.bias.append(1.0)),
                      "biases"),
    "lut-size": (lambda p: (_q4(p.weights, 30), p.weights.quantization.lookupTableQuantization.floatValue.extend(
        [0.0] * 15)), "lookup table"),
}


@pytest.mark.parametrize("case", sorted(_BAD))
def test_invalid_weights_are_spec_errors_naming_the_layer(tmp_path, case):
    mutate, words = _BAD[case]
    b = builder([("x", (1, 6))], ("out",), nd=True)
    b.add_inner_product("dense_7", W_IP, B_IP, 6, 5, True, "x", "out")
    b.spec.specificationVersion = 5
    mutate(b.spec.neuralNetwork.layers[0].innerProduct)
    path = tmp_path / "bad.mlmodel"
    path.write_bytes(b.spec.SerializeToString())
    with pytest.raises(mlupdate.SpecError, match="dense_7") as err:
        mlupdate.load(path)
    assert words in str(err.value)


@pytest.mark.parametrize("case", ["embedding-zero-vocab", "matmul-weight-count", "matmul-zero-columns"])
def test_other_dense_layers_validate_sizes(tmp_path, case):
    b = builder([("x", (1, 6)), ("ids", (1, 3, 1))], ("mm", "emb"), nd=True)
    b.add_batched_mat_mul("mm_9", ["x"], "mm", weight_matrix_rows=6, weight_matrix_columns=3, W=W_MM, bias=B_MM)
    b.add_embedding_nd("emb_9", "ids", "emb", 7, 4, W=W_EMB, b=B_EMB)
    mm, emb = (getattr(layer, layer.WhichOneof("layer")) for layer in b.spec.neuralNetwork.layers)
    name = {"embedding-zero-vocab": "emb_9"}.get(case, "mm_9")
    if case == "embedding-zero-vocab":
        emb.vocabSize = 0
    elif case == "matmul-weight-count":
        mm.weights.floatValue.pop()
    else:
        mm.weightMatrixSecondDimension = 0
    path = tmp_path / "bad.mlmodel"
    path.write_bytes(b.spec.SerializeToString())
    with pytest.raises(mlupdate.SpecError, match=name):
        mlupdate.load(path)


# -- rank rules as reference cases -----------------------------------------------------------------------


def _mm(a, b, ta=False, tb=False):
    """Core ML's two-input batchedMatmul: transposes skip rank 1, inserted unit axes are kept."""
    a = np.swapaxes(a, -1, -2) if ta and a.ndim > 1 else a
    b = np.swapaxes(b, -1, -2) if tb and b.ndim > 1 else b
    return np.matmul(a.reshape(1, -1) if a.ndim == 1 else a, b.reshape(-1, 1) if b.ndim == 1 else b)


def _mm_case(cid, sa, sb, ta=False, tb=False):
    return Case(cid, lambda bl: bl.add_batched_mat_mul("mm", ["a", "b"], "out", transpose_a=ta, transpose_b=tb),
                {"a": rand(*sa, seed=20), "b": rand(*sb, seed=21)}, lambda a, b: _mm(a, b, ta, tb), nd=True, batch=3)


def _ip_case(cid, shape):
    def ref(x):
        if x.ndim <= 3:
            return x @ W_IP.T + B_IP
        y = x.reshape(*x.shape[:-3], 6) @ W_IP.T + B_IP
        return y[..., None, None]
    return Case(cid, lambda bl: bl.add_inner_product("fc", W_IP, B_IP, 6, 5, True, "x", "out"),
                {"x": rand(*shape, seed=22)}, ref, nd=True, batch=2)


def _emb_nd_case(cid, shape):
    ids = np.random.default_rng(23).integers(0, 7, shape).astype(np.float32)
    return Case(cid, lambda bl: bl.add_embedding_nd("emb", "ids", "out", 7, 4, W=W_EMB, b=B_EMB), {"ids": ids},
                lambda i: W_EMB.T[i[..., 0].astype(int)] + B_EMB, nd=True, batch=2)


def _quantized_ip(bl):
    bl.add_inner_product("fc", W_IP, B_IP, 6, 5, True, "x", "out")
    bl.spec.specificationVersion = max(bl.spec.specificationVersion, 3)
    qu._quantize_wp_field(bl.nn_spec.layers[-1].innerProduct.weights, 4, _LINEAR, shape=(5, 6))


def _dequantized_ip_weights():
    wp = copy.deepcopy(_dense_nd().spec.neuralNetwork.layers[0].innerProduct.weights)
    qu._quantize_wp_field(wp, 4, _LINEAR, shape=(5, 6))
    qu._dequantize_wp(wp, (5, 6))
    return np.asarray(wp.floatValue, np.float32).reshape(5, 6)


W_IP4 = _dequantized_ip_weights()

CASES = [
    _mm_case("mm-1d-1d", (4,), (4,)),
    _mm_case("mm-1d-3d", (4,), (2, 4, 3)),
    _mm_case("mm-3d-1d", (2, 3, 4), (4,)),
    _mm_case("mm-broadcast-4d-3d", (2, 1, 3, 4), (5, 4, 2)),
    _mm_case("mm-broadcast-2d-4d", (3, 4), (2, 2, 4, 5)),
    _mm_case("mm-transpose-1d-ignored", (4,), (3, 4), ta=True, tb=True),
    _mm_case("mm-transpose-both", (2, 4, 3), (2, 5, 4), ta=True, tb=True),
    Case("mm-weights-rank1", lambda bl: bl.add_batched_mat_mul("mm", ["x"], "out", weight_matrix_rows=6,
                                                               weight_matrix_columns=3, W=W_MM, bias=B_MM),
         {"x": rand(6, seed=24)}, lambda x: x @ W_MM + B_MM, nd=True, batch=2),
    Case("mm-weights-rank3", lambda bl: bl.add_batched_mat_mul("mm", ["x"], "out", weight_matrix_rows=6,
                                                               weight_matrix_columns=3, W=W_MM),
         {"x": rand(2, 2, 6, seed=25)}, lambda x: x @ W_MM, nd=True, batch=2),
    _ip_case("ip-rank1", (6,)),
    _ip_case("ip-rank3", (2, 3, 6)),
    _ip_case("ip-rank4-flattens-chw", (2, 3, 2, 1)),
    _ip_case("ip-rank5-flattens-chw", (2, 2, 1, 2, 3)),
    _emb_nd_case("embnd-rank2", (3, 1)),
    _emb_nd_case("embnd-rank4", (2, 2, 3, 1)),
    Case("emb-legacy", lambda bl: bl.add_embedding("emb", W_EMB, B_EMB, 7, 4, True, "ids", "out"),
         {"ids": np.array([5.0], np.float32)}, lambda i: (W_EMB[:, int(i[0])] + B_EMB).reshape(4, 1, 1), batch=1),
    Case("ip-4bit-linear", _quantized_ip, {"x": rand(1, 6, seed=26)}, lambda x: x @ W_IP4.T + B_IP, nd=True,
         batch=2),
]

test_cases = case_test(CASES)

REFERENCE = "coremltools' quantization_utils (quantize_weights and its dequantization) with numpy matmul"
