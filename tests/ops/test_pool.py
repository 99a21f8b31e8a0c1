"""avg_pool, max_pool and l2_pool MIL ops against numpy loops written from the definition, and PyTorch."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mlupdate.errors import Error
from tests.ops.harness import run_kernel

RNG = np.random.default_rng(5)


def np_pool(x, kind, k, s, pads, ceil=False, exclude=False):
    """The definition: windows over the padded input, cut at its end; average over the counted positions."""
    n = x.ndim - 2
    sizes = x.shape[2:]
    outs = []
    for i in range(n):
        span = sizes[i] + pads[i][0] + pads[i][1]
        if ceil:
            o = math.ceil((span - k[i]) / s[i]) + 1
            if (o - 1) * s[i] >= sizes[i] + pads[i][0] and sum(pads[i]) > 0:
                o -= 1
        else:
            o = (span - k[i]) // s[i] + 1
        outs.append(o)
    y = np.zeros(x.shape[:2] + tuple(outs))
    for pos in itertools.product(*[range(o) for o in outs]):
        idx, counted = [], 1
        for i, p in enumerate(pos):
            lo, hi = p * s[i] - pads[i][0], p * s[i] - pads[i][0] + k[i]   # window in input coordinates
            hi = min(hi, sizes[i] + pads[i][1])                            # cut at the padded extent
            counted *= (min(hi, sizes[i]) - max(lo, 0)) if exclude else (hi - lo)
            idx.append(slice(max(lo, 0), min(hi, sizes[i])))
        window = x[(slice(None), slice(None), *idx)].reshape(x.shape[0], x.shape[1], -1).astype(np.float64)
        if kind == "max_pool":
            y[(slice(None), slice(None), *pos)] = window.max(axis=-1)
        elif kind == "avg_pool":
            y[(slice(None), slice(None), *pos)] = window.sum(axis=-1) / counted
        else:
            y[(slice(None), slice(None), *pos)] = np.sqrt((window ** 2).sum(axis=-1))
    return y


def same_pads(sizes, k, s, lower):
    pads = []
    for size, kk, st in zip(sizes, k, s, strict=True):
        total = max((math.ceil(size / st) - 1) * st + kk - size, 0)
        pads.append((total - total // 2, total // 2) if lower else (total // 2, total - total // 2))
    return pads


CONFIGS = [((7,), (3,), (2,)), ((6, 7), (2, 3), (2, 1)), ((5, 6), (3, 3), (2, 2)), ((4, 5, 6), (2, 3, 2), (2, 1, 2))]


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("pad_type", [None, "valid", "same", "same_lower", "custom"])
@pytest.mark.parametrize("kind, sizes, k, s", [(kind, *c) for kind in ("max_pool", "avg_pool", "l2_pool")
                                                for c in CONFIGS if kind != "l2_pool" or len(c[0]) < 3])
def test_pool(kind, sizes, k, s, pad_type, dtype):
    x = RNG.uniform(-2, 2, (2, 3, *sizes)).astype(dtype)
    inputs = {"x": x, "kernel_sizes": np.array(k, np.int32), "strides": np.array(s, np.int32)}
    pads = [(0, 0)] * len(sizes)
    if pad_type is not None:
        inputs["pad_type"] = pad_type
    if pad_type in ("same", "same_lower"):
        pads = same_pads(sizes, k, s, pad_type == "same_lower")
    if pad_type == "custom":
        pads = [(1, 0), (0, 1), (1, 1)][:len(sizes)]
        inputs["pad"] = np.array([p for ba in pads for p in ba], np.int32)
    got = run_kernel(kind, inputs, opset=16)  # same_lower: iOS16 on
    want = np_pool(x, kind, k, s, pads)
    assert got.dtype == dtype and got.shape == want.shape
    tol = 1e-5 if dtype == np.float32 else 3e-3
    np.testing.assert_allclose(got.astype(np.float64), want, rtol=tol, atol=tol)


@pytest.mark.parametrize("exclude", [False, True])
@pytest.mark.parametrize("kind", ["avg_pool", "max_pool", "l2_pool"])
@pytest.mark.parametrize("sizes, k, s, pads", [((8,), (3,), (2,), [(1, 1)]), ((7, 6), (2, 3), (2, 2), [(1, 1), (0, 0)]),
                                               ((5, 4), (3, 2), (3, 3), [(1, 1), (1, 1)])])
def test_pool_ceil_mode_and_exclude_padding(kind, sizes, k, s, pads, exclude):
    x = RNG.uniform(-2, 2, (1, 2, *sizes)).astype(np.float32)
    inputs = {"x": x, "kernel_sizes": np.array(k, np.int32), "strides": np.array(s, np.int32), "pad_type": "custom",
              "pad": np.array([p for ba in pads for p in ba], np.int32), "ceil_mode": np.bool_(True)}
    if kind == "avg_pool":
        inputs["exclude_padding_from_average"] = np.bool_(exclude)
    want = np_pool(x, kind, k, s, pads, ceil=True, exclude=exclude and kind == "avg_pool")
    np.testing.assert_allclose(run_kernel(kind, inputs), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("x_shape, extra", [((1, 1, 4, 4, 4), {}), ((1, 1, 6), {"pad_type": "same"}),
                                            ((1, 1, 6), {"pad_type": "custom", "pad": np.array([1, 0], np.int32)})])
def test_pool_ceil_mode_outside_the_definition_is_refused(x_shape, extra):
    n = len(x_shape) - 2
    inputs = {"x": np.ones(x_shape, np.float32), "kernel_sizes": np.array([2] * n, np.int32),
              "ceil_mode": np.bool_(True), **extra}
    with pytest.raises(Error, match="avg_pool_0.*ceil_mode"):
        run_kernel("avg_pool", inputs)


@pytest.mark.parametrize("exclude", [False, True])
@pytest.mark.parametrize("dim, ceil", [(1, False), (2, False), (3, False), (1, True), (2, True)])
def test_pool_matches_pytorch_symmetric_padding(dim, ceil, exclude):
    # coremltools' op tests compare against PyTorch's pools ("ceil_mode: same as PyTorch's")
    x = torch.randn(2, 3, *(9, 8, 7)[:dim])
    k, s, p = (3, 2, 3)[:dim], (2, 2, 2)[:dim], (1, 1, 1)[:dim]
    avg = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[dim]
    mx = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[dim]
    common = {"x": x.numpy(), "kernel_sizes": np.array(k, np.int32), "strides": np.array(s, np.int32),
              "pad_type": "custom", "pad": np.array([v for q in p for v in (q, q)], np.int32),
              "ceil_mode": np.bool_(ceil)}
    got = run_kernel("avg_pool", {**common, "exclude_padding_from_average": np.bool_(exclude)})
    want = avg(x, k, s, p, ceil_mode=ceil, count_include_pad=not exclude).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(run_kernel("max_pool", common), mx(x, k, s, p, ceil_mode=ceil).numpy(), rtol=1e-6)


def test_l2_pool_refuses_3d():
    with pytest.raises(Error, match="l2_pool_0.*rank 3 to 4"):
        run_kernel("l2_pool", {"x": np.ones((1, 1, 2, 2, 2), np.float32), "kernel_sizes": np.array([1, 1, 1])})


@pytest.mark.parametrize("inputs, match", [
    ({"x": np.ones((1, 2, 4), np.float32)}, "kernel_sizes"),
    ({"x": np.ones((1, 2, 4), np.float32), "kernel_sizes": np.array([2, 2], np.int32)}, "one value per spatial"),
    ({"x": np.ones((1, 2, 4), np.float32), "kernel_sizes": np.array([5], np.int32)}, "smaller than the kernel"),
    ({"x": np.ones((1, 2, 4), np.float32), "kernel_sizes": np.array([2], np.int32),
      "strides": np.array([0], np.int32)}, "positive"),
    ({"x": np.ones((2, 4), np.float32), "kernel_sizes": np.array([2], np.int32)}, "rank 3 to 5"),
])
def test_pool_errors_name_the_op(inputs, match):
    with pytest.raises(Error, match=f"max_pool_0.*{match}"):
        run_kernel("max_pool", inputs)


# Expected values of coremltools' own pool op tests (ops/tests/iOS14/test_pool.py), which run against Core ML
X1 = np.array([[[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]]], np.float32)
X2 = np.array([[[[-10.80291205, -6.42076184], [-7.07910997, 9.1913279]],
                [[-3.18181497, 0.9132147], [11.9785544, 7.92449539]]]], np.float32)
X3 = np.array([[[[[-1, -5, -1], [-3, -3, 8], [2, 6, 2]], [[-4, 7, -4], [4, 6, 7], [4, 4, 8]],
                 [[5, -3, 5], [0, -5, 8], [1, 7, 2]]]],
               [[[[7, -3, -5], [5, 4, 7], [-2, -4, -3]], [[-4, 3, -1], [6, -4, 4], [3, 6, 2]],
                 [[-1, 4, -4], [-2, -1, -2], [3, 2, 8]]]]], np.float32)
SMOKE = {  # (x, valid output of kernel [1, 2, 3][:n] strides [2, 1, 3][:n], same output of the last n of them)
    ("avg_pool", 1): (X1, [[[1.0, 3.0, 5.0, 7.0]]], [[[1.5, 4.0, 6.5]]]),
    ("avg_pool", 2): (X2, [[[[-8.611837]], [[-1.1343001]]]], [[[[-3.7778642], [1.056109]], [[4.4086123], [9.951525]]]]),
    ("avg_pool", 3): (X3, [[[[[-0.8333334], [2.0]], [[1.6666667], [2.1666667]]]],
                           [[[[2.5], [1.1666667]], [[-1.0], [1.3333334]]]]],
                      [[[[[-0.8333334], [2.0], [3.3333335]], [[1.6666667], [2.1666667], [3.3333335]]]],
                       [[[[2.5], [1.1666667], [-3.0]], [[-1.0], [1.3333334], [4.3333335]]]]]),
    ("max_pool", 1): (X1, [[[1.0, 3.0, 5.0, 7.0]]], [[[2.0, 5.0, 7.0]]]),
    ("max_pool", 2): (X2, [[[[-6.42076184]], [[0.9132147]]]], [[[[9.191328], [9.191328]], [[11.978555], [11.978555]]]]),
    ("max_pool", 3): (X3, [[[[[8.0], [8.0]], [[8.0], [8.0]]]], [[[[7.0], [7.0]], [[4.0], [8.0]]]]],
                      [[[[[8.0], [8.0], [6.0]], [[8.0], [8.0], [7.0]]]],
                       [[[[7.0], [7.0], [-2.0]], [[4.0], [8.0], [8.0]]]]]),
}


@pytest.mark.parametrize("kind, n", sorted(SMOKE))
def test_pool_expected_values_of_coremltools_op_tests(kind, n):
    x, valid, same = SMOKE[(kind, n)]
    k, s = [1, 2, 3], [2, 1, 3]
    got = run_kernel(kind, {"x": x, "kernel_sizes": np.array(k[:n], np.int32), "strides": np.array(s[:n], np.int32),
                            "pad_type": "valid"})
    np.testing.assert_allclose(got, np.array(valid, np.float32), rtol=1e-5, atol=1e-5)
    extra = {"exclude_padding_from_average": np.bool_(True)} if kind == "avg_pool" else {}
    got = run_kernel(kind, {"x": x, "kernel_sizes": np.array(k[-n:], np.int32), "strides": np.array(s[-n:], np.int32),
                            "pad_type": "same", **extra})
    np.testing.assert_allclose(got, np.array(same, np.float32), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind, expected", [("avg_pool", {2: [0.25, 0.75, 1, 2.5],
                                                          3: [0.125, 0.375, 0.5, 1.25, 0.75, 1.75, 2, 4.5]}),
                                            ("max_pool", {2: [1, 2, 3, 4], 3: [1, 2, 3, 4, 5, 6, 7, 8]})])
@pytest.mark.parametrize("n", [2, 3])
def test_pool_same_lower_expected_values_of_coremltools_op_tests(kind, expected, n):
    shape = (1, 1) + (2,) * n
    x = np.arange(1, np.prod(shape) + 1, dtype=np.float32).reshape(shape)
    inputs = {"x": x, "kernel_sizes": np.array([2] * n, np.int32), "pad_type": "same_lower"}
    got = run_kernel(kind, inputs, opset=16)  # coremltools' test skips iOS15, which refuses same_lower
    np.testing.assert_allclose(got, np.array(expected[n], np.float32).reshape(shape), rtol=1e-6)
    with pytest.raises(Error, match=f"{kind}_0.*same_lower"):
        run_kernel(kind, inputs)
