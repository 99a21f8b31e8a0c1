"""Reduction MIL ops against numpy written from the op definitions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mlupdate.errors import Error
from mlupdate.ops import OpContext, kernel_for
from tests.ops.harness import run_kernel

RNG = np.random.default_rng(2)


def _lse(x, axis, keepdims):
    m = np.max(x, axis=axis, keepdims=True)
    out = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return out if keepdims else np.squeeze(out, axis=axis)


REDUCE = {
    "reduce_sum": np.sum, "reduce_mean": np.mean, "reduce_prod": np.prod, "reduce_max": np.max,
    "reduce_min": np.min,
    "reduce_l1_norm": lambda x, axis, keepdims: np.sum(np.abs(x), axis=axis, keepdims=keepdims),
    "reduce_l2_norm": lambda x, axis, keepdims: np.sqrt(np.sum(x * x, axis=axis, keepdims=keepdims)),
    "reduce_sum_square": lambda x, axis, keepdims: np.sum(x * x, axis=axis, keepdims=keepdims),
    "reduce_log_sum": lambda x, axis, keepdims: np.log(np.sum(x, axis=axis, keepdims=keepdims)),
    "reduce_log_sum_exp": _lse,
}
CASES = [((5,), None), ((5,), [0]), ((2, 3), [1]), ((2, 3, 4), [0, 2]), ((2, 3, 4), [-1]),
         ((2, 3, 2, 4), None), ((2, 3, 2, 4), [1, -1]), ((1, 2, 3, 2, 2), [2, 3, 4])]


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("keep", [None, False, True])
@pytest.mark.parametrize("shape, axes", CASES)
@pytest.mark.parametrize("op", sorted(REDUCE))
def test_reduce(op, shape, axes, keep, dtype):
    x = RNG.uniform(0.5, 1.5, shape).astype(dtype)
    inputs = {"x": x}
    if axes is not None:
        inputs["axes"] = np.array(axes, np.int32)
    if keep is not None:
        inputs["keep_dims"] = np.bool_(keep)
    axis = tuple(range(len(shape))) if axes is None else tuple(axes)
    want = REDUCE[op](x.astype(np.float64), axis=axis, keepdims=bool(keep))
    got = run_kernel(op, inputs)
    assert got.dtype == dtype and got.shape == np.shape(want)
    tol = 1e-5 if dtype == np.float32 else 6e-3
    np.testing.assert_allclose(got.astype(np.float64), want, rtol=tol, atol=tol)


@pytest.mark.parametrize("op", sorted(REDUCE))
def test_reduce_int32(op):
    x = RNG.integers(1, 4, (2, 3, 4)).astype(np.int32)
    got = run_kernel(op, {"x": x, "axes": np.array([1], np.int32)})
    # coremltools' value inference: the numpy result cast back to the input dtype
    want = REDUCE[op](x.astype(np.float64), axis=(1,), keepdims=False).astype(np.int32)
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, want)


def test_reduce_empty_axes_reduces_nothing():
    x = RNG.uniform(0.5, 1.5, (2, 3)).astype(np.float32)
    np.testing.assert_allclose(run_kernel("reduce_l2_norm", {"x": x, "axes": np.array([], np.int32)}), np.abs(x))


@pytest.mark.parametrize("axes, match", [([3], "axes.*out of range"), ([1, -1], "twice")])
def test_reduce_bad_axes_name_the_op(axes, match):
    with pytest.raises(Error, match=f"reduce_sum_0.*{match}"):
        run_kernel("reduce_sum", {"x": np.ones((2, 3), np.float32), "axes": np.array(axes, np.int32)})


def test_reduce_scalar_input_is_refused():
    ctx = OpContext("reduce_mean", name="reduce_mean_0")  # the harness makes numpy scalars rank 1
    with pytest.raises(Error, match="reduce_mean_0.*rank 1"):
        kernel_for("reduce_mean", 15)(ctx, {"x": torch.tensor(2.0)})


@pytest.mark.parametrize("opset", [15, 17])
@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.int32])
@pytest.mark.parametrize("shape, axis", [((7,), None), ((3, 5), 0), ((2, 3, 4), None), ((2, 3, 4), 1),
                                         ((2, 2, 3, 4), -3)])
@pytest.mark.parametrize("keep", [False, True])
@pytest.mark.parametrize("op, ref", [("reduce_argmax", np.argmax), ("reduce_argmin", np.argmin)])
def test_arg_reductions(op, ref, shape, axis, keep, dtype, opset):
    x = RNG.permutation(np.prod(shape)).reshape(shape).astype(dtype)  # distinct values: no ties
    inputs = {"x": x, "keep_dims": np.bool_(keep)}
    if axis is not None:
        inputs["axis"] = np.int32(axis)
    got = run_kernel(op, inputs, opset=opset)
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, ref(x, axis=-1 if axis is None else axis, keepdims=keep))


def test_arg_reduction_iOS17_output_dtype():
    x = RNG.uniform(0, 1, (3, 4)).astype(np.float32)
    got = run_kernel("reduce_argmax", {"x": x, "output_dtype": "uint16"}, opset=17)
    assert got.dtype == np.uint16
    np.testing.assert_array_equal(got, np.argmax(x, axis=-1))
    with pytest.raises(Error, match="reduce_argmax_0.*output_dtype 'int8'"):
        run_kernel("reduce_argmax", {"x": x, "output_dtype": "int8"}, opset=17)


def test_arg_reduction_bad_axis():
    with pytest.raises(Error, match="reduce_argmin_0.*axis -4"):
        run_kernel("reduce_argmin", {"x": np.ones((2, 3, 4), np.float32), "axis": np.int32(-4)})


def test_fp16_reduce_l2_norm_of_large_values_does_not_overflow():
    x = np.full((2, 8), 1000, np.float16)  # squares overflow fp16, the norm (2828) does not
    got = run_kernel("reduce_l2_norm", {"x": x, "axes": np.array([1], np.int32)})
    assert got.dtype == np.float16
    np.testing.assert_allclose(got.astype(np.float64), [np.sqrt(8) * 1000] * 2, rtol=1e-3)
