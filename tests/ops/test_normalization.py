"""Normalization MIL ops against numpy written from the op definitions (and PyTorch's LocalResponseNorm)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mlupdate.errors import Error
from tests.ops.harness import run_kernel

RNG = np.random.default_rng(6)


def _check(got, want, dtype):
    assert got.dtype == dtype and got.shape == want.shape
    tol = 1e-4 if dtype == np.float32 else 2e-2
    np.testing.assert_allclose(got.astype(np.float64), want, rtol=tol, atol=tol)


def _ch(v, rank):
    return np.asarray(v, np.float64).reshape((-1,) + (1,) * (rank - 2))


@pytest.mark.parametrize("opset", [15, 17])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("shape", [(2, 3), (2, 3, 4), (1, 3, 4, 5), (2, 3, 2, 3, 2)])
@pytest.mark.parametrize("affine", [False, True])
def test_batch_norm(shape, affine, dtype, opset):
    pdtype = np.float32 if opset == 17 else dtype
    x = RNG.uniform(-2, 2, shape).astype(dtype)
    c = shape[1]
    mean, var = RNG.uniform(-1, 1, c).astype(pdtype), RNG.uniform(0.5, 2, c).astype(pdtype)
    inputs = {"x": x, "mean": mean, "variance": var}
    gamma, beta, eps = np.ones(c), np.zeros(c), 1e-5
    if affine:
        gamma, beta, eps = RNG.uniform(0.5, 2, c).astype(pdtype), RNG.uniform(-1, 1, c).astype(pdtype), 0.1
        inputs.update(gamma=gamma, beta=beta, epsilon=np.array(eps, pdtype))
        eps = float(np.array(eps, pdtype))
    r = len(shape)
    want = _ch(gamma, r) * (x - _ch(mean, r)) / np.sqrt(_ch(var, r) + eps) + _ch(beta, r)
    _check(run_kernel("batch_norm", inputs, opset=opset), want, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("shape", [(2, 3, 5), (2, 3, 4, 5), (1, 2, 3, 2, 4)])
@pytest.mark.parametrize("affine", [False, True])
def test_instance_norm(shape, affine, dtype):
    x = RNG.uniform(-2, 2, shape).astype(dtype)
    c, r = shape[1], len(shape)
    inputs, gamma, beta, eps = {"x": x}, np.ones(c), np.zeros(c), 1e-5
    if affine:
        gamma, beta, eps = RNG.uniform(0.5, 2, c).astype(dtype), RNG.uniform(-1, 1, c).astype(dtype), 1e-3
        inputs.update(gamma=gamma, beta=beta, epsilon=np.array(eps, dtype))
    axes = tuple(range(2, r))
    xd = x.astype(np.float64)
    mean, var = xd.mean(axis=axes, keepdims=True), xd.var(axis=axes, keepdims=True)
    want = (xd - mean) / np.sqrt(var + float(np.array(eps, dtype))) * _ch(gamma, r) + _ch(beta, r)
    _check(run_kernel("instance_norm", inputs), want, dtype)


def np_layer_norm(x, axes, gamma=None, beta=None, eps=1e-5):
    """coremltools' op test's reference: gamma and beta reshaped to x's shape on axes, ones elsewhere."""
    rank = x.ndim
    axes = [a + rank if a < 0 else a for a in axes]
    shape = [x.shape[i] if i in axes else 1 for i in range(rank)]
    gamma = np.ones(shape) if gamma is None else np.reshape(gamma, shape)
    beta = np.zeros(shape) if beta is None else np.reshape(beta, shape)
    num = x - np.mean(x, axis=tuple(axes), keepdims=True)
    dem = np.sqrt(np.sum(np.square(num), axis=tuple(axes), keepdims=True) / np.prod(shape) + eps)
    return num / dem * gamma + beta


@pytest.mark.parametrize("opset", [15, 17])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("shape, axes", [((6,), None), ((3, 4), [-1]), ((2, 3, 4), [1, 2]), ((2, 3, 4), [0]),
                                         ((2, 3, 4, 5), [1, 3]), ((2, 3, 2, 2, 3), [-3, -2, -1])])
@pytest.mark.parametrize("affine", [False, True])
def test_layer_norm(shape, axes, affine, dtype, opset):
    x = RNG.uniform(-3, 3, shape).astype(dtype)
    inputs = {"x": x} if axes is None else {"x": x, "axes": np.array(axes, np.int32)}
    dims = list(range(len(shape))) if axes is None else sorted(a % len(shape) for a in axes)
    gamma = beta = None
    eps = 1e-5
    if affine:
        pdtype = np.float32 if opset == 17 else dtype
        pshape = [shape[d] for d in dims]
        gamma, beta = RNG.uniform(0.5, 2, pshape).astype(pdtype), RNG.uniform(-1, 1, pshape).astype(pdtype)
        eps = 1e-2
        inputs.update(gamma=gamma, beta=beta, epsilon=np.array(eps, pdtype))
    want = np_layer_norm(x.astype(np.float64), dims, gamma, beta, float(np.float32(eps)))
    _check(run_kernel("layer_norm", inputs, opset=opset), want, dtype)


def test_layer_norm_gamma_shape_error_names_the_op():
    with pytest.raises(Error, match="layer_norm_0.*gamma.*\\[4\\]"):
        run_kernel("layer_norm", {"x": np.ones((3, 4), np.float32), "axes": np.array([1], np.int32),
                                  "gamma": np.ones(3, np.float32)})


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("shape", [(3, 4, 5), (2, 3, 4, 5), (2, 2, 2, 3, 4)])
@pytest.mark.parametrize("eps", [None, 0.5])
def test_l2_norm(shape, eps, dtype):
    # coremltools' op test: x / sqrt(sum of squares over the last three axes + eps), leading axes batch
    x = RNG.uniform(-2, 2, shape).astype(dtype)
    inputs = {"x": x} if eps is None else {"x": x, "epsilon": np.array(eps, dtype)}
    flat = x.astype(np.float64).reshape(int(np.prod(shape[:-3])), -1)
    want = (flat / np.sqrt((flat ** 2).sum(axis=1, keepdims=True) + (1e-6 if eps is None else eps))).reshape(shape)
    _check(run_kernel("l2_norm", inputs), want, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("rank", [3, 4, 5])
@pytest.mark.parametrize("size, alpha, beta, k", [(2, 1e-4, 0.75, 1.0), (3, 0.01, 1.0, 2.0), (5, 0.5, 0.75, 1.0)])
def test_local_response_norm(rank, size, alpha, beta, k, dtype):
    x = RNG.uniform(-2, 2, (2, 6, 3, 4, 2)[:rank]).astype(dtype)
    lrn = torch.nn.LocalResponseNorm(size=size, alpha=alpha, beta=beta, k=k)  # what coremltools' op test uses
    want = lrn(torch.from_numpy(x.astype(np.float32))).numpy().astype(np.float64)
    params = {"alpha": np.array(alpha, dtype), "beta": np.array(beta, dtype), "k": np.array(k, dtype)}
    _check(run_kernel("local_response_norm", {"x": x, "size": np.int32(size), **params}), want, dtype)


def test_local_response_norm_defaults():
    x = RNG.uniform(-2, 2, (1, 5, 3)).astype(np.float32)
    sq = np.pad(x.astype(np.float64) ** 2, [(0, 0), (1, 1), (0, 0)])
    window = sq[:, :-2] + sq[:, 1:-1] + sq[:, 2:]  # size 3: one channel either side
    want = x / (1.0 + 1e-4 / 3 * window) ** 0.75  # alpha 1e-4, beta 0.75, k 1
    _check(run_kernel("local_response_norm", {"x": x, "size": np.int32(3)}), want, np.float32)


@pytest.mark.parametrize("op, inputs, match", [
    ("batch_norm", {"x": np.ones((1, 3, 2), np.float32), "mean": np.zeros(2, np.float32),
                    "variance": np.ones(3, np.float32)}, "mean.*\\[3\\]"),
    ("batch_norm", {"x": np.ones((1, 3, 2), np.float32), "mean": np.zeros(3, np.float32)}, "variance"),
    ("instance_norm", {"x": np.ones((3, 2), np.float32)}, "rank 3 to 5"),
    ("l2_norm", {"x": np.ones((3, 2), np.float32)}, "rank 3"),
    ("local_response_norm", {"x": np.ones((1, 3, 2), np.float32)}, "size"),
    ("layer_norm", {"x": np.ones((3, 2), np.float32), "axes": np.array([2], np.int32)}, "out of range"),
])
def test_errors_name_the_op(op, inputs, match):
    with pytest.raises(Error, match=f"{op}_0.*{match}"):
        run_kernel(op, inputs)


@pytest.mark.parametrize("op, inputs", [
    ("l2_norm", {}), ("layer_norm", {}), ("instance_norm", {}), ("local_response_norm", {"size": np.int32(3)})])
def test_fp16_norms_of_large_values_do_not_overflow(op, inputs):
    x = RNG.uniform(-1, 1, (1, 3, 4, 5)) * 2000  # squares far beyond fp16's largest value, results within range
    want = run_kernel(op, {"x": x.astype(np.float32), **inputs})
    got = run_kernel(op, {"x": x.astype(np.float16), **inputs})
    assert got.dtype == np.float16 and np.isfinite(got).all()
    np.testing.assert_allclose(got.astype(np.float64), want, rtol=5e-3, atol=5e-3 * np.abs(want).max())
