"""Random MIL ops: shapes, dtypes, the documented distributions (statistically), and the seed rule."""

from __future__ import annotations

import numpy as np
import pytest

from mlupdate.errors import Error
from mlupdate.ops import kernel_for
from tests.ops.harness import run_kernel

N = 200_000


def _draw(op, params, shape=(N,), **kw):
    return run_kernel(op, {"shape": np.array(shape, np.int32), **params}, **kw)


@pytest.mark.parametrize("params, mean, std", [({}, 0.0, 1.0), ({"mean": np.float32(3), "stddev": np.float32(0.5)},
                                                                 3.0, 0.5)])
def test_random_normal_moments(params, mean, std):
    v = _draw("random_normal", params).astype(np.float64)
    assert abs(v.mean() - mean) < 5 * std / np.sqrt(N)
    assert abs(v.std() - std) < 0.01 * std


@pytest.mark.parametrize("params, low, high", [({}, 0.0, 1.0), ({"low": np.float32(-2), "high": np.float32(6)},
                                                                 -2.0, 6.0)])
def test_random_uniform_bounds_and_mean(params, low, high):
    v = _draw("random_uniform", params).astype(np.float64)
    assert v.min() >= low and v.max() < high  # the half-open interval [low, high)
    assert abs(v.mean() - (low + high) / 2) < 5 * (high - low) / np.sqrt(12 * N)
    flat = _draw("random_uniform", {"low": np.float32(2), "high": np.float32(2)}, shape=(10,))
    np.testing.assert_array_equal(flat, np.full(10, 2.0, np.float32))  # high == low gives low


@pytest.mark.parametrize("prob", [None, 0.2, 0.0, 1.0])
def test_random_bernoulli_frequency(prob):
    v = _draw("random_bernoulli", {} if prob is None else {"prob": np.float32(prob)})
    p = 0.5 if prob is None else prob
    assert set(np.unique(v)) <= {0.0, 1.0}
    assert abs(v.mean() - p) < 5 * np.sqrt(p * (1 - p) / N) + 1e-12


@pytest.mark.parametrize("op", ["random_normal", "random_uniform", "random_bernoulli"])
@pytest.mark.parametrize("shape", [(7,), (2, 3), (2, 3, 4), (1, 2, 3, 2, 2)])
def test_fill_shapes_dtypes_and_seed_rule(op, shape):
    seeded = _draw(op, {"seed": np.int32(7)}, shape=shape)
    assert seeded.shape == shape and seeded.dtype == np.float32
    np.testing.assert_array_equal(seeded, _draw(op, {"seed": np.int32(7)}, shape=shape))  # same seed, same values
    if op != "random_bernoulli" or np.prod(shape) > 20:
        assert not np.array_equal(seeded, _draw(op, {"seed": np.int32(8)}, shape=shape))
        assert not np.array_equal(_draw(op, {}, shape=shape), _draw(op, {}, shape=shape))  # seed -1: fresh draws
    half = _draw(op, {"seed": np.int32(7)}, shape=shape, out_types=(("fp16", shape),))
    assert half.dtype == np.float16


def test_fill_dtype_follows_fp16_parameters_and_runtime_shape():
    v = _draw("random_normal", {"mean": np.float16(1), "stddev": np.float16(2)}, shape=(3, 2))
    assert v.dtype == np.float16 and v.shape == (3, 2)
    dynamic = run_kernel("random_uniform", {"shape": np.array([4, 5], np.int32)}, consts=[])  # computed shape
    assert dynamic.shape == (4, 5)


def test_random_kernels_are_marked_not_exportable():
    for op in ("random_normal", "random_uniform", "random_bernoulli", "random_categorical"):
        assert kernel_for(op, 15).exportable is False


@pytest.mark.parametrize("op, params, match", [
    ("random_normal", {"stddev": np.float32(-1)}, "stddev"),
    ("random_uniform", {"low": np.float32(2), "high": np.float32(1)}, "low 2.0 is above high"),
    ("random_bernoulli", {"prob": np.float32(1.5)}, "prob"),
])
def test_fill_parameter_errors_name_the_op(op, params, match):
    with pytest.raises(Error, match=f"{op}_0.*{match}"):
        _draw(op, params, shape=(3,))


@pytest.mark.parametrize("shape", [(0, 3), (2, -1)])
def test_fill_bad_shape(shape):
    with pytest.raises(Error, match="random_normal_0.*shape"):
        _draw("random_normal", {}, shape=shape)


def test_fill_over_the_array_limit_is_refused_before_allocating():
    with pytest.raises(Error, match="random_uniform_0.*limit"):
        _draw("random_uniform", {}, shape=(100_000, 100_000, 100))


@pytest.mark.parametrize("mode", [None, "logits", "probs"])
def test_random_categorical_frequencies(mode):
    p = np.array([[0.1, 0.6, 0.3, 0.0], [0.25, 0.25, 0.25, 0.25]])
    x = (p if mode == "probs" else np.log(p + 1e-30)).astype(np.float32)
    inputs = {"x": x, "size": np.int32(50_000), "seed": np.int32(3)}
    if mode is not None:
        inputs["mode"] = mode
    got = run_kernel("random_categorical", inputs)
    assert got.shape == (2, 50_000) and got.dtype == np.float32
    for row in range(2):
        freq = np.bincount(got[row].astype(int), minlength=4) / 50_000
        np.testing.assert_allclose(freq, p[row], atol=0.01)
    assert not (got[0] == 3).any()  # a zero probability is never drawn
    np.testing.assert_array_equal(got, run_kernel("random_categorical", inputs))  # seeded: repeatable


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("shape", [(5,), (2, 5), (2, 3, 5)])
def test_random_categorical_shapes_and_default_size(shape, dtype):
    got = run_kernel("random_categorical", {"x": np.zeros(shape, dtype)})
    assert got.shape == shape[:-1] + (1,) and got.dtype == dtype
    assert ((got >= 0) & (got < shape[-1])).all()


@pytest.mark.parametrize("inputs, match", [
    ({"x": np.array([[0.5, -0.5]], np.float32), "mode": "probs"}, "cannot draw"),
    ({"x": np.zeros((2, 3), np.float32), "mode": "softmax"}, "mode 'softmax'"),
    ({"x": np.zeros((2, 3), np.float32), "size": np.int32(0)}, "size 0"),
])
def test_random_categorical_errors_name_the_op(inputs, match):
    with pytest.raises(Error, match=f"random_categorical_0.*{match}"):
        run_kernel("random_categorical", inputs)
