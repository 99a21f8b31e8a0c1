"""The conformance leftovers of issue 19: layer semantics that coremltools' own tests (run against Core ML)
expect and mlupdate computed otherwise.

References are numpy written from NeuralNetwork.proto's comments and coremltools' op definitions:
concatND ``interleave`` (``output[i::n] = in_i``), unary ``log`` with ``epsilon`` (MIL ``log``:
``log(x + epsilon)``), ``tile`` with fewer reps than the rank (ones prepended, ``numpy.tile``), ``splitND``
into ``n`` parts of an axis that ``n`` does not divide (``numpy.array_split``).
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import mlupdate
from tests.unit.test_layers_base import EXECUTORS, Case, builder, case_test, rand, save


def _interleave(*xs: np.ndarray, axis: int) -> np.ndarray:
    """The proto's interleave: output[i::n] along ``axis`` is input i."""
    n = len(xs)
    shape = list(xs[0].shape)
    shape[axis] *= n
    out = np.empty(shape, xs[0].dtype)
    for i, x in enumerate(xs):
        index = [slice(None)] * out.ndim
        index[axis] = slice(i, None, n)
        out[tuple(index)] = x
    return out


def _concat_interleave(b):
    b.add_concat_nd("i0", ["a", "c"], "i0", axis=0, interleave=True)
    b.add_concat_nd("i1", ["a", "c", "a"], "i1", axis=-1, interleave=True)
    b.add_concat_nd("plain", ["a", "c"], "plain", axis=0)


def _proto_example(b):
    b.add_concat_nd("cat", ["in1", "in2"], "out", axis=0, interleave=True)


PROTO_IN1 = np.array([[1, 2], [3, 4], [5, 6]], np.float32)
PROTO_IN2 = np.array([[7, 8], [9, 10], [11, 12]], np.float32)
PROTO_OUT = np.array([[1, 2], [7, 8], [3, 4], [9, 10], [5, 6], [11, 12]], np.float32)  # the proto's example


def _log(b):
    b.add_unary("log", "x", "log", mode="log")  # coremltools' builder writes epsilon = 1e-45 for log
    b.add_unary("log_eps", "x", "log_eps", mode="log", epsilon=0.5)
    b.add_unary("log_shift", "x", "log_shift", mode="log", epsilon=0.25, shift=1.0, scale=2.0)


def _tile_short_reps(b):
    b.add_tile("t1", "x", "t1", reps=[6])
    b.add_tile("t2", "x", "t2", reps=[2, 3])
    b.add_tile("t3", "x", "t3", reps=[1, 2, 6])


def _split_uneven(b):
    b.add_split_nd("s7", "v", ["a", "b", "c"], axis=0, num_splits=3)
    b.add_split_nd("s5", "x", ["d", "e"], axis=-1, num_splits=2)
    b.add_split_nd("s8", "w", ["f", "g", "h"], axis=1, num_splits=3)


CASES = [
    Case("concatND_interleave_proto_example", _proto_example, {"in1": PROTO_IN1, "in2": PROTO_IN2},
         lambda in1, in2: PROTO_OUT, nd=True, batch=1),
    Case("concatND_interleave_axes", _concat_interleave, {"a": rand(3, 2, seed=1), "c": rand(3, 2, seed=2)},
         lambda a, c: (_interleave(a, c, axis=0), _interleave(a, c, a, axis=-1), np.concatenate([a, c], 0)),
         outputs=("i0", "i1", "plain"), nd=True),
    Case("unary_log_adds_epsilon", _log, {"x": rand(2, 3, seed=3, low=0.0, high=0.01)},
         lambda x: (np.log(x + np.float32(1e-45)), np.log(x + 0.5), np.log(2.0 * x + 1.0 + 0.25)),
         outputs=("log", "log_eps", "log_shift"), nd=True, rtol=1e-4),
    Case("tile_fewer_reps_than_rank", _tile_short_reps, {"x": rand(2, 4, 2, seed=4)},
         lambda x: (np.tile(x, 6), np.tile(x, (2, 3)), np.tile(x, (1, 2, 6))),
         outputs=("t1", "t2", "t3"), nd=True),
    Case("splitND_uneven_parts", _split_uneven,
         {"v": rand(7, seed=5), "x": rand(2, 5, seed=6), "w": rand(2, 8, 3, seed=7)},
         lambda v, x, w: (*np.array_split(v, 3, 0), *np.array_split(x, 2, -1), *np.array_split(w, 3, 1)),
         outputs=("a", "b", "c", "d", "e", "f", "g", "h"), nd=True),
]

_TIES = np.array([[3, 7, 7, 1, 7], [2, 2, 5, 5, 0]], np.float32)


def _stable_topk(x, k, bottom):
    """Top-k along the last axis, equal values lower index first (a stable sort)."""
    idx = np.argsort(x if bottom else -x, axis=-1, kind="stable")[..., :k]
    return np.take_along_axis(x, idx, -1), idx.astype(np.float32)


CASES += [
    Case("topK_ties_lower_index_first",
         lambda b: (b.add_topk("top", ["x"], ["v", "i"], k=3, axis=-1),
                    b.add_topk("bot", ["x"], ["bv", "bi"], k=2, axis=1, use_bottom_k=True)),
         {"x": _TIES}, lambda x: (*_stable_topk(x, 3, False), *_stable_topk(x, 2, True)),
         outputs=("v", "i", "bv", "bi"), nd=True, batch=1),
]

test_cases = case_test(CASES)

REFERENCE = "numpy from the proto's comments and coremltools' ops: interleave, log(x + eps), numpy.tile, array_split"



# -- image inputs added by coremltools' helpers --------------------------------------------------------


def _image_model(tmp_path, shape, image_format, transpose, rename=None):
    """coremltools' test_model.py networks: an array input made an image by make_image_input, then renamed."""
    import coremltools as ct
    from coremltools.models import MLModel
    from coremltools.models.neural_network.utils import make_image_input

    b = builder([("data", shape)], ("out",), nd=True)
    src = "data"
    if transpose:  # the NHWC network's own transpose, which make_image_input removes
        b.add_transpose("transpose", [2, 0, 1], "data", "transpose")
        src = "transpose"
    b.add_activation("linear", "LINEAR", src, "out")
    b.spec.description.output[0].type.multiArrayType.shape.extend(shape)
    spec = make_image_input(MLModel(b.spec), "data", red_bias=-5, green_bias=-6, blue_bias=-2.5, scale=10.0,
                            image_format=image_format).get_spec()
    if rename:
        ct.utils.rename_feature(spec, "data", rename)
    path = tmp_path / "img.mlmodel"
    ct.utils.save_spec(spec, str(path))
    return path


RGB = np.array([4, 2, 5], np.uint8).reshape(1, 1, 3)
# the proto's NeuralNetworkImageScaler on an RGB image: channelScale * X[c] + (red, green, blue)Bias
SCALED = 10.0 * np.array([4, 2, 5], np.float32) + np.array([-5, -6, -2.5], np.float32)


@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize(("shape", "image_format", "transpose"),
                         [((3, 1, 1), "NCHW", False), ((1, 1, 3), "NHWC", True), ((1, 1, 3), "NHWC", False)],
                         ids=["nchw", "nhwc-transpose-removed", "nhwc-transpose-added"])
def test_image_input_made_by_make_image_input(tmp_path, executor, shape, image_format, transpose):
    path = _image_model(tmp_path, shape, image_format, transpose)
    y = mlupdate.load(path, executor=executor).predict({"data": Image.fromarray(RGB)})["out"]
    assert y.shape == shape  # coremltools' test_multiarray_to_image_input_util*: Core ML gives the declared shape
    np.testing.assert_allclose(y.ravel(), SCALED)


@pytest.mark.parametrize("executor", EXECUTORS)
def test_renamed_image_input(tmp_path, executor):
    path = _image_model(tmp_path, (3, 1, 1), "NCHW", False, rename="new_input_name")
    y = mlupdate.load(path, executor=executor).predict({"new_input_name": Image.fromarray(RGB)})["out"]
    np.testing.assert_array_equal(y, SCALED.reshape(3, 1, 1))


def test_transpose_with_fewer_axes_needs_unit_leading_axes(tmp_path):
    b = builder([("x", (2, 3, 4))], ("out",), nd=True)
    b.add_transpose("tr", [1, 0], "x", "out")
    with pytest.raises(mlupdate.LayerError, match="tr"):
        mlupdate.load(save(b, tmp_path), executor="torch")


# -- a fixed-length sequence through flatten (coremltools' test_fixed_seq_len) ------------------------


def _fixed_seq_len_model(tmp_path, rng):
    """embedding -> permute [3, 1, 2, 0] -> flatten -> innerProduct on an input declared [1, 1, 1]."""
    b = builder([("data", (1, 1, 1))], ("output",))
    emb, dense = rng.random((32, 10)), rng.random((2, 480))  # the proto's [outputChannels, inputDim], [out, in]
    b.add_embedding("embed", W=emb, b=None, input_dim=10, output_channels=32, has_bias=0, input_name="data",
                    output_name="embed")
    b.add_permute("permute", dim=[3, 1, 2, 0], input_name="embed", output_name="permute")
    b.add_flatten("flatten", mode=0, input_name="permute", output_name="flatten")
    b.add_inner_product("dense", W=dense, b=None, input_channels=480, output_channels=2, has_bias=0,
                        input_name="flatten", output_name="output")
    return save(b, tmp_path), emb, dense


def test_fixed_length_sequence_through_permute_and_flatten(tmp_path):
    rng = np.random.default_rng(0)
    path, emb, dense = _fixed_seq_len_model(tmp_path, rng)
    model = mlupdate.load(path)  # Seq = 1 (the declared shape) would give 32 channels: not checked at load
    xs = [rng.integers(0, 10, 15).reshape(15, 1, 1, 1, 1).astype(np.float32) for _ in range(2)]
    got = model.predict_batch([{"data": x} for x in xs])
    for x, res in zip(xs, got, strict=True):
        e = emb[:, x.ravel().astype(int)]  # embedding: [C = 32] per step, i.e. [Seq = 15, 32, 1, 1]
        # permute [Seq, C, H, W] -> [W, C, H, Seq] = [1, 32, 1, 15]; flatten (channel first) over C, H, W
        want = dense @ e.reshape(-1)
        np.testing.assert_allclose(np.asarray(res["output"]).ravel(), want, rtol=1e-5)
    with pytest.raises(mlupdate.LayerError, match="dense"):  # another length: 32 x 7 channels, not 480
        model.predict({"data": np.zeros((7, 1, 1, 1, 1), np.float32)})
    with pytest.raises(mlupdate.FeatureError, match=r"\[Seq, 1, 1, 1, 1\]"):  # Core ML's batch axis is not 1
        model.predict({"data": np.zeros((15, 2, 1, 1, 1), np.float32)})


# -- size limits apply to what is allocated --------------------------------------------------------------


def test_random_like_on_a_range_with_a_huge_maximum_fills_the_actual_shape(tmp_path):
    from coremltools.models.neural_network import flexible_shape_utils

    b = builder([("t", (4, 5))], ("out",), nd=True)
    b.add_random_normal_like("r", "t", "out", mean=2.0, stddev=0.5, seed=42)
    flexible_shape_utils.set_multiarray_ndshape_range(b.spec, "t", lower_bounds=[1, 1],
                                                      upper_bounds=[-1, 10**9])  # 10^9+ values at most
    model = mlupdate.load(save(b, tmp_path))
    out = model.predict({"t": np.zeros((300, 70), np.float32)})["out"]
    assert out.shape == (300, 70)  # the input's shape, as randomNormalLike's proto comment says
    assert abs(out.mean() - 2.0) < 0.02 and abs(out.std() - 0.5) < 0.02  # N(2, 0.5): 21,000 draws


# -- an LSTM with scaled_tanh activations, as coremltools' converter writes it ------------------------------


def test_lstm_scaled_tanh_from_the_mil_converter_is_tanh(tmp_path):
    # MIL's lstm with activation "scaled_tanh" becomes an empty ActivationScaledTanh in the NN backend; coremltools'
    # MIL LSTM tests (run on Core ML) expect tanh for it: scaled_tanh's defaults alpha = beta = 1
    import coremltools as ct
    from coremltools.converters.mil.mil import Builder as mb

    t, i, h = 4, 3, 5
    rng = np.random.default_rng(0)
    w_ih, w_hh = rng.uniform(-1, 1, (4 * h, i)).astype(np.float32), rng.uniform(-1, 1, (4 * h, h)).astype(np.float32)
    bias = rng.uniform(-1, 1, 4 * h).astype(np.float32)

    @mb.program(input_specs=[mb.TensorSpec(shape=(t, 1, i))], opset_version=ct.target.iOS14)
    def prog(x):
        zeros = np.zeros((1, h), np.float32)
        y, _, _ = mb.lstm(x=x, initial_h=zeros, initial_c=zeros, weight_ih=w_ih, weight_hh=w_hh, bias=bias,
                          direction="forward", output_sequence=True, recurrent_activation="sigmoid",
                          cell_activation="scaled_tanh", activation="scaled_tanh")
        return y

    spec = ct.convert(prog, convert_to="neuralnetwork").get_spec()
    lstm = next(layer.uniDirectionalLSTM for layer in spec.neuralNetwork.layers
                if layer.WhichOneof("layer") == "uniDirectionalLSTM")
    assert [a.WhichOneof("NonlinearityType") for a in lstm.activations] == ["sigmoid", "scaledTanh", "scaledTanh"]
    assert (lstm.activations[1].scaledTanh.alpha, lstm.activations[1].scaledTanh.beta) == (0.0, 0.0)
    path = tmp_path / "lstm.mlmodel"
    ct.utils.save_spec(spec, str(path))
    x = rng.uniform(-2, 2, (t, 1, i)).astype(np.float32)
    got = mlupdate.load(path).predict({spec.description.input[0].name: x})[spec.description.output[0].name]

    def sig(v):
        return 1 / (1 + np.exp(-v))

    hs, hh, cc = [], np.zeros(h), np.zeros(h)
    for step in x[:, 0]:  # the MIL op's equations, gates [input, forget, output, cell]
        g = w_ih @ step + w_hh @ hh + bias
        gi, gf, go, gz = sig(g[:h]), sig(g[h:2 * h]), sig(g[2 * h:3 * h]), np.tanh(g[3 * h:])
        cc = gf * cc + gi * gz
        hh = go * np.tanh(cc)
        hs.append(hh)
    np.testing.assert_allclose(np.asarray(got).reshape(t, h), np.stack(hs), atol=1e-5)
