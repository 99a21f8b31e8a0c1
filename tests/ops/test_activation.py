"""Activation MIL ops against numpy written from the op definitions (iOS15 and iOS17)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mlupdate.errors import Error
from tests.ops.harness import run_kernel

SHAPES = [(6,), (2, 5), (2, 3, 4), (1, 2, 3, 4), (1, 2, 2, 3, 2)]
RNG = np.random.default_rng(1)
_erf = np.vectorize(math.erf)


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _check(got, want, dtype):
    assert got.dtype == dtype
    tol = 1e-5 if dtype == np.float32 else 4e-3
    np.testing.assert_allclose(got.astype(np.float64), want, rtol=tol, atol=tol)


PLAIN = {
    "relu": lambda x: np.maximum(x, 0),
    "relu6": lambda x: np.minimum(np.maximum(x, 0), 6),
    "sigmoid": _sigmoid,
    "silu": lambda x: x * _sigmoid(x),
    "softplus": lambda x: np.log1p(np.exp(x)),
    "softsign": lambda x: x / (1 + np.abs(x)),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("op", sorted(PLAIN))
def test_plain(op, shape, dtype):
    x = RNG.uniform(-8, 8, shape).astype(dtype)
    _check(run_kernel(op, {"x": x}), PLAIN[op](x.astype(np.float64)), dtype)


# op -> (parameters, numpy reference from the docstring)
WITH_PARAMS = {
    "elu": ({"alpha": 0.7}, lambda x, p: np.where(x > 0, x, p["alpha"] * (np.exp(x) - 1))),
    "leaky_relu": ({"alpha": 0.1}, lambda x, p: np.where(x >= 0, x, p["alpha"] * x)),
    "thresholded_relu": ({"alpha": 0.5}, lambda x, p: np.where(x >= p["alpha"], x, 0)),
    "linear_activation": ({"alpha": -1.5, "beta": 0.25}, lambda x, p: x * p["alpha"] + p["beta"]),
    "scaled_tanh": ({"alpha": 1.7, "beta": 0.6}, lambda x, p: p["alpha"] * np.tanh(p["beta"] * x)),
    "sigmoid_hard": ({"alpha": 0.2, "beta": 0.5}, lambda x, p: np.minimum(np.maximum(p["alpha"] * x + p["beta"],
                                                                                        0), 1)),
    "clamped_relu": ({"alpha": 0.3, "beta": 2.0}, lambda x, p: np.where(x >= 0, np.minimum(p["beta"], x),
                                                                         np.minimum(p["beta"], p["alpha"] * x))),
}


@pytest.mark.parametrize("opset", [15, 17])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("shape", SHAPES[:4])
@pytest.mark.parametrize("op", sorted(WITH_PARAMS))
def test_with_scalar_parameters(op, shape, dtype, opset):
    params, ref = WITH_PARAMS[op]
    x = RNG.uniform(-4, 4, shape).astype(dtype)
    # iOS17 lets the parameters have another dtype than x
    pdtype = (np.float16 if dtype == np.float32 else np.float32) if opset == 17 else dtype
    inputs = {"x": x, **{k: np.array(v, pdtype) for k, v in params.items()}}
    want = ref(x.astype(np.float64), {k: float(np.array(v, pdtype)) for k, v in params.items()})
    _check(run_kernel(op, inputs, opset=opset), want, dtype)


def test_missing_required_parameter_names_the_op():
    with pytest.raises(Error, match="elu_0.*alpha"):
        run_kernel("elu", {"x": np.ones(3, np.float32)})


GELU = {
    "EXACT": lambda x: 0.5 * x * (1 + _erf(x / math.sqrt(2))),
    "TANH_APPROXIMATION": lambda x: 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3))),
    "SIGMOID_APPROXIMATION": lambda x: x * _sigmoid(1.702 * x),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("mode", [None, *GELU])
def test_gelu(mode, dtype):
    x = RNG.uniform(-4, 4, (2, 3, 4)).astype(dtype)
    inputs = {"x": x} if mode is None else {"x": x, "mode": mode}
    _check(run_kernel("gelu", inputs), GELU[mode or "EXACT"](x.astype(np.float64)), dtype)


def test_gelu_unknown_mode():
    with pytest.raises(Error, match="gelu_0.*mode 'ERF'"):
        run_kernel("gelu", {"x": np.ones(3, np.float32), "mode": "ERF"})


def _softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("shape, axis", [((5,), None), ((2, 5), 0), ((2, 3, 4), None), ((2, 3, 4), 1),
                                         ((1, 2, 3, 4), -3), ((1, 2, 2, 3, 2), 4)])
def test_softmax(shape, axis, dtype):
    x = RNG.uniform(-5, 5, shape).astype(dtype)
    inputs = {"x": x} if axis is None else {"x": x, "axis": np.int32(axis)}
    _check(run_kernel("softmax", inputs), _softmax(x.astype(np.float64), -1 if axis is None else axis), dtype)


def test_softmax_bad_axis():
    with pytest.raises(Error, match="softmax_0.*axis 3 is out of range"):
        run_kernel("softmax", {"x": np.ones((2, 3), np.float32), "axis": np.int32(3)})


def _channel(v, rank):
    return v.reshape((-1,) + (1,) * (rank - 2))


@pytest.mark.parametrize("opset", [15, 17])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("shape", [(2, 3, 4), (1, 3, 2, 4), (2, 3, 1, 2, 2)])
def test_prelu(shape, dtype, opset):
    x = RNG.uniform(-3, 3, shape).astype(dtype)
    alpha = RNG.uniform(0, 1, shape[1]).astype(np.float32 if opset == 17 else dtype)
    if len(shape) != 4:  # the definition: rank 3 and 5 take one value for all channels
        alpha[:] = alpha[0]
    want = np.where(x > 0, x, _channel(alpha, x.ndim) * x.astype(np.float64))
    _check(run_kernel("prelu", {"x": x, "alpha": alpha}, opset=opset), want, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("shape", [(2, 3, 4), (1, 3, 2, 4), (2, 3, 1, 2, 2)])
def test_softplus_parametric(shape, dtype):
    x = RNG.uniform(-3, 3, shape).astype(dtype)
    alpha, beta = RNG.uniform(0.5, 2, shape[1]).astype(dtype), RNG.uniform(-2, 2, shape[1]).astype(dtype)
    want = _channel(alpha, x.ndim) * np.log1p(np.exp(_channel(beta, x.ndim) * x.astype(np.float64)))
    _check(run_kernel("softplus_parametric", {"x": x, "alpha": alpha, "beta": beta}), want, dtype)


@pytest.mark.parametrize("op, shape, params", [
    ("prelu", (2, 3), {"alpha": np.ones(3, np.float32)}),
    ("prelu", (1, 3, 4), {"alpha": np.ones(2, np.float32)}),
    ("prelu", (1, 3, 4), {"alpha": np.array([0.1, 0.2, 0.3], np.float32)}),
    ("softplus_parametric", (3, 4), {"alpha": np.ones(4, np.float32), "beta": np.ones(4, np.float32)}),
    ("softplus_parametric", (1, 3, 4), {"alpha": np.ones(3, np.float32), "beta": np.ones(2, np.float32)}),
])
def test_per_channel_shape_errors_name_the_op(op, shape, params):
    with pytest.raises(Error, match=f"{op}_0"):
        run_kernel(op, {"x": np.ones(shape, np.float32), **params})
