"""Elementwise MIL ops against numpy written from the op definitions (iOS15 and iOS17)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mlupdate.errors import Error
from tests.ops.harness import run_kernel

SHAPES = [(5,), (2, 3), (2, 3, 4), (1, 2, 3, 2, 2)]
RNG = np.random.default_rng(0)
TOL = {np.float32: 1e-5, np.float16: 2e-3}


def _close(got, want, dtype, rtol=None):
    assert got.dtype == dtype
    tol = rtol or TOL.get(dtype, 0)
    np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64), rtol=tol, atol=tol)


# (op, numpy reference written from the docstring, input low, high)
UNARY = [
    ("abs", np.abs, -3, 3), ("acos", np.arccos, -0.9, 0.9), ("asin", np.arcsin, -0.9, 0.9),
    ("atan", np.arctan, -3, 3), ("atanh", np.arctanh, -0.9, 0.9), ("ceil", np.ceil, -3, 3),
    ("cos", np.cos, -3, 3), ("cosh", np.cosh, -3, 3), ("erf", np.vectorize(math.erf), -2, 2),
    ("exp", np.exp, -3, 3), ("exp2", np.exp2, -3, 3), ("floor", np.floor, -3, 3),
    ("round", np.round, -3, 3), ("sign", np.sign, -3, 3), ("sin", np.sin, -3, 3), ("sinh", np.sinh, -3, 3),
    ("sqrt", np.sqrt, 0.1, 4), ("square", np.square, -3, 3), ("tan", np.tan, -1.2, 1.2),
    ("tanh", np.tanh, -3, 3),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("op, ref, lo, hi", UNARY, ids=[u[0] for u in UNARY])
def test_unary(op, ref, lo, hi, shape, dtype):
    x = RNG.uniform(lo, hi, shape).astype(dtype)
    want = ref(x.astype(np.float64))
    _close(run_kernel(op, {"x": x}), want, dtype, 5e-3 if dtype == np.float16 else None)


@pytest.mark.parametrize("op, ref", [("sinh", np.sinh), ("cosh", np.cosh)])
def test_hyperbolic_fp16_up_to_the_largest_finite_value(op, ref):
    x = np.array([-11.5, -11, 0, 11, 11.5], np.float16)  # e^11.5 overflows fp16, sinh(11.5) does not
    got = run_kernel(op, {"x": x})
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got.astype(np.float64), ref(x.astype(np.float64)), rtol=1e-3)


def test_round_half_to_even_and_ceil_floor_exact():
    x = np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5], np.float32)
    np.testing.assert_array_equal(run_kernel("round", {"x": x}), [-2, -2, -0, 0, 2, 2])  # "0.5 is rounded to 0"
    np.testing.assert_array_equal(run_kernel("sign", {"x": np.array([-2, 0, 3], np.float32)}), [-1, 0, 1])


@pytest.mark.parametrize("op, ref", [("abs", np.abs), ("sign", np.sign), ("square", np.square),
                                     ("exp2", lambda x: (2 ** x.astype(np.int64)))])
def test_unary_int32(op, ref):
    x = RNG.integers(0 if op == "exp2" else -5, 6, (3, 4)).astype(np.int32)
    got = run_kernel(op, {"x": x})
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, ref(x))


@pytest.mark.parametrize("opset", [15, 17])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("op, default, ref", [
    ("inverse", 1e-4, lambda x, e: 1 / (x + e)), ("log", 1e-45, lambda x, e: np.log(x + e)),
    ("rsqrt", 1e-12, lambda x, e: 1 / np.sqrt(x + e))])
def test_epsilon_ops(op, default, ref, dtype, opset):
    x = RNG.uniform(0.5, 3, (2, 3, 4)).astype(dtype)
    _close(run_kernel(op, {"x": x}, opset=opset), ref(x.astype(np.float64), default), dtype)
    # an explicit epsilon; from iOS17 on it may be of another dtype than x
    eps = np.array(0.25, np.float32 if opset == 17 else dtype)
    _close(run_kernel(op, {"x": x, "epsilon": eps}, opset=opset), ref(x.astype(np.float64), 0.25), dtype)


def test_inverse_default_epsilon_is_used():
    got = run_kernel("inverse", {"x": np.zeros(2, np.float32)})
    np.testing.assert_allclose(got, [1e4, 1e4], rtol=1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.int32])
def test_threshold(dtype):
    x = RNG.uniform(-4, 4, (3, 5)).astype(dtype)
    got = run_kernel("threshold", {"x": x, "alpha": np.array(1, dtype)})
    assert got.dtype == dtype
    np.testing.assert_array_equal(got, np.maximum(x, dtype(1)))


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_clip(dtype):
    x = RNG.uniform(-4, 4, (2, 3, 4)).astype(dtype)
    bounds = {"alpha": np.array(-1, dtype), "beta": np.array(2, dtype)}
    for opset in (15, 17):
        got = run_kernel("clip", {"x": x, **bounds}, opset=opset)
        np.testing.assert_array_equal(got, np.minimum(np.maximum(x, dtype(-1)), dtype(2)))


def test_clip_alpha_above_beta_iOS15_value_inference_and_iOS17_refusal():
    x = np.linspace(-3, 3, 7, dtype=np.float32)
    bounds = {"alpha": np.float32(2), "beta": np.float32(1)}
    np.testing.assert_array_equal(run_kernel("clip", {"x": x, **bounds}), np.minimum(np.maximum(x, 2), 1))
    with pytest.raises(Error, match="clip_0.*alpha"):
        run_kernel("clip", {"x": x, **bounds}, opset=17)


@pytest.mark.parametrize("src", [np.float32, np.float16, np.int32, np.bool_])
@pytest.mark.parametrize("dst, np_dst", [("fp32", np.float32), ("fp16", np.float16), ("int32", np.int32),
                                         ("bool", np.bool_)])
def test_cast(src, dst, np_dst):
    x = (RNG.uniform(-5, 5, (2, 3, 2)) if src != np.bool_ else RNG.uniform(-1, 1, (2, 3, 2)) > 0).astype(src)
    got = run_kernel("cast", {"x": x, "dtype": dst})
    assert got.dtype == np_dst
    np.testing.assert_array_equal(got, x.astype(np_dst))  # float to int truncates, as numpy's astype


@pytest.mark.parametrize("dst, np_dst", [("int8", np.int8), ("uint8", np.uint8), ("int16", np.int16),
                                         ("uint16", np.uint16)])
def test_cast_iOS17_small_ints(dst, np_dst):
    x = np.array([[0, 1.7, 7.2], [100.9, 3, 42]], np.float32)
    got = run_kernel("cast", {"x": x, "dtype": dst}, opset=17)
    assert got.dtype == np_dst
    np.testing.assert_array_equal(got, x.astype(np_dst))
    with pytest.raises(Error, match=f"cast_0.*'{dst}'"):
        run_kernel("cast", {"x": x, "dtype": dst}, opset=15)


def test_logical_not():
    x = RNG.uniform(-1, 1, (3, 4)) > 0
    np.testing.assert_array_equal(run_kernel("logical_not", {"x": x}), ~x)


BINARY = {
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "real_div": np.divide, "floor_div": np.floor_divide,
    "mod": np.mod, "pow": np.power, "maximum": np.maximum, "minimum": np.minimum,
}
COMPARE = {"equal": np.equal, "not_equal": np.not_equal, "greater": np.greater, "greater_equal": np.greater_equal,
           "less": np.less, "less_equal": np.less_equal}
BROADCAST = [((4,), (4,)), ((2, 3), (1, 3)), ((2, 1, 4), (3, 1)), ((2, 3, 1, 2, 2), (2, 2)), ((1,), (2, 3))]


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("xs, ys", BROADCAST)
@pytest.mark.parametrize("op", sorted(BINARY))
def test_binary(op, xs, ys, dtype):
    x = RNG.uniform(0.5, 3, xs).astype(dtype)
    y = RNG.uniform(-3, 3, ys).astype(dtype) if op != "pow" else RNG.uniform(-2, 2, ys).astype(dtype)
    y = np.where(np.abs(y) < 0.3, 1, y).astype(dtype)
    if op in ("sub", "mul", "maximum", "minimum", "mod", "floor_div"):
        x = (x - 1.75).astype(dtype)
    want = BINARY[op](x.astype(np.float64), y.astype(np.float64))
    got = run_kernel(op, {"x": x, "y": y}, consts=[])
    if op == "floor_div" and dtype == np.float16:  # a quotient rounded in fp16 may cross an integer
        want = np.floor((x / y).astype(np.float16))
    _close(got, want, dtype, 1e-2 if dtype == np.float16 and op in ("pow", "mod") else None)


def test_binary_ops_smoke_values_of_coremltools_op_test():
    x = np.array([[10, 20, 30], [40, 50, 60]], np.float32)
    y = np.array([[11, 12, 13], [14, 15, 16]], np.float32)
    np.testing.assert_array_equal(run_kernel("floor_div", {"x": x, "y": y}, consts=[]), [[0, 1, 2], [2, 3, 3]])
    np.testing.assert_array_equal(run_kernel("mod", {"x": x, "y": y}, consts=[]), [[10, 8, 4], [12, 5, 12]])


@pytest.mark.parametrize("op", sorted(BINARY))
def test_binary_int32(op):
    x = RNG.integers(-9, 10, (2, 3, 4)).astype(np.int32)
    if op in ("real_div", "floor_div", "mod"):  # int32 extremes stay exact (the kernels divide in float64)
        x[0, 0, :2] = [2**31 - 1, -(2**31)]
    y = RNG.integers(1, 4, (3, 1)).astype(np.int32) * RNG.choice([-1, 1], (3, 1)).astype(np.int32)
    if op == "pow":
        y = np.abs(y)
    got = run_kernel(op, {"x": x, "y": y}, consts=[])
    want = np.trunc(x / y) if op == "real_div" else BINARY[op](x, y)  # int real_div: x / y cast to int32
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, want.astype(np.int32))


@pytest.mark.parametrize("op", ["real_div", "floor_div", "mod"])
def test_int32_division_by_zero_does_not_stop_the_process(op):
    got = run_kernel(op, {"x": np.array([5, -5, 7], np.int32), "y": np.array([0, 0, 2], np.int32)}, consts=[])
    assert got.dtype == np.int32 and got[2] == {"real_div": 3, "floor_div": 3, "mod": 1}[op]


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.int32])
@pytest.mark.parametrize("op", sorted(COMPARE))
def test_compare(op, dtype):
    x = RNG.integers(-2, 3, (2, 3, 4)).astype(dtype)
    y = RNG.integers(-2, 3, (3, 1)).astype(dtype)
    got = run_kernel(op, {"x": x, "y": y}, consts=[])
    assert got.dtype == np.bool_
    np.testing.assert_array_equal(got, COMPARE[op](x, y))


@pytest.mark.parametrize("op, ref", [("logical_and", np.logical_and), ("logical_or", np.logical_or),
                                     ("logical_xor", np.logical_xor)])
def test_logical(op, ref):
    x, y = RNG.uniform(-1, 1, (2, 3, 4)) > 0, RNG.uniform(-1, 1, (4,)) > 0
    np.testing.assert_array_equal(run_kernel(op, {"x": x, "y": y}, consts=[]), ref(x, y))


def test_binary_shapes_that_do_not_broadcast_name_the_op():
    with pytest.raises(Error, match="add_0.*broadcast"):
        run_kernel("add", {"x": np.ones((2, 3), np.float32), "y": np.ones((4,), np.float32)}, consts=[])


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.int32, np.bool_])
def test_select(dtype):
    cond = RNG.uniform(-1, 1, (2, 1, 4)) > 0
    a, b = RNG.integers(0, 9, (3, 4)).astype(dtype), RNG.integers(0, 9, (2, 3, 1)).astype(dtype)
    got = run_kernel("select", {"cond": cond, "a": a, "b": b}, consts=[])
    np.testing.assert_array_equal(got, np.where(cond, a, b))


def test_select_without_branches_is_refused_by_name():
    with pytest.raises(Error, match="select_0.*a and b"):
        run_kernel("select", {"cond": np.ones(3, bool)}, consts=[])


def test_expected_values_of_coremltools_unary_op_tests():
    # ops/tests/iOS14/test_elementwise_unary.py, which runs against Core ML
    val = np.array([[-1.2, 2, -3.6], [4.5, -5, 6.7]], np.float32)
    np.testing.assert_array_equal(run_kernel("cast", {"x": val, "dtype": "int32"}), [[-1, 2, -3], [4, -5, 6]])
    val = np.array([[-1.2, 2, -3.4], [4.5, -5, 6.7]], np.float32)
    np.testing.assert_array_equal(run_kernel("ceil", {"x": val}), [[-1, 2, -3], [5, -5, 7]])
    np.testing.assert_array_equal(run_kernel("floor", {"x": val}), [[-2, 2, -4], [4, -5, 6]])
    np.testing.assert_array_equal(run_kernel("clip", {"x": val, "alpha": np.float32(0), "beta": np.float32(5)}),
                                  np.array([[0, 2, 0], [4.5, 0, 5]], np.float32))
    np.testing.assert_array_equal(run_kernel("threshold", {"x": val, "alpha": np.float32(1)}),
                                  np.array([[1.0, 2, 1.0], [4.5, 1.0, 6.7]], np.float32))
    exp2 = run_kernel("exp2", {"x": np.array([[-1, 2, -3], [4, -5, 6]], np.float32)})
    np.testing.assert_array_equal(exp2, [[0.5, 4.0, 0.125], [16, 0.03125, 64]])
