"""scatter_gather ops against numpy written from the op definitions' docstrings (tf.gather semantics)."""

from __future__ import annotations

import numpy as np
import pytest

from mlupdate.errors import Error
from tests.ops.harness import assert_exports, run_kernel

RNG = np.random.default_rng(2)
DTYPES = [np.float32, np.float16, np.int32]
NP_MODES = {"update": lambda a, b: b, "add": np.add, "sub": np.subtract, "mul": np.multiply,
            "div": np.divide, "max": np.maximum, "min": np.minimum}


def rand(shape, dtype=np.float32):
    return (RNG.uniform(0.5, 4, shape) * RNG.choice([-1, 1], shape)).astype(dtype)


def idx(low, high, shape):
    return RNG.integers(low, high, shape).astype(np.int32)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,ishape,axis", [((5,), (3,), 0), ((4, 5), (2, 3), 1), ((3, 4, 5), (6,), -2),
                                               ((3, 4, 5), (2, 2), 0)])
def test_gather(dtype, shape, ishape, axis):
    x = rand(shape, dtype)
    n = shape[axis]
    i = idx(-n, n, ishape)
    ref = np.take(x, i, axis=axis)  # np.take wraps negatives as the iOS15 definition allows
    np.testing.assert_array_equal(run_kernel("gather", {"x": x, "indices": i, "axis": np.int32(axis)},
                                             consts=["axis"]), ref)
    i = np.abs(i) % n
    out = run_kernel("gather", {"x": x, "indices": i, "axis": np.int32(axis), "validate_indices": True},
                     consts=["axis", "validate_indices"], opset=17)
    np.testing.assert_array_equal(out, np.take(x, i, axis=axis))


@pytest.mark.parametrize("axis,bd", [(1, 1), (2, 1), (2, 2)])
def test_gather_batch_dims_ios16(axis, bd):
    x = rand((2, 3, 4, 5))
    ishape = (2, 3, 6)[:bd] + (6, 2)
    i = idx(0, x.shape[axis], ishape)
    ref = np.zeros(x.shape[:axis] + ishape[bd:] + x.shape[axis + 1:], np.float32)
    for b in np.ndindex(*x.shape[:bd]):  # tf.gather(batch_dims): each batch gathers with its own indices
        ref[b] = np.take(x[b], i[b], axis=axis - bd)
    out = run_kernel("gather", {"x": x, "indices": i, "axis": np.int32(axis), "batch_dims": np.int32(bd)},
                     consts=["axis", "batch_dims"], opset=16)
    np.testing.assert_array_equal(out, ref)


def test_gather_out_of_range_is_an_error_naming_the_op():
    x = rand((4, 3))
    with pytest.raises(Error, match="gather"):
        run_kernel("gather", {"x": x, "indices": np.array([4], np.int32)}, consts=[])
    with pytest.raises(Error, match="iOS17"):
        run_kernel("gather", {"x": x, "indices": np.array([-1], np.int32)}, consts=[], opset=17)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_gather_along_axis(dtype, axis):
    x = rand((3, 4, 5), dtype)
    shape = list(x.shape)
    shape[axis] = 6
    i = idx(0, x.shape[axis], shape)
    out = run_kernel("gather_along_axis", {"x": x, "indices": i, "axis": np.int32(axis)}, consts=["axis"])
    np.testing.assert_array_equal(out, np.take_along_axis(x, i, axis))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ishape", [(4, 1), (2, 3, 2), (5, 3)])
def test_gather_nd(dtype, ishape):
    x = rand((3, 4, 5), dtype)
    k = ishape[-1]
    i = np.stack([idx(0, x.shape[j], ishape[:-1]) for j in range(k)], -1)
    ref = np.stack([x[tuple(v)] for v in i.reshape(-1, k)]).reshape(ishape[:-1] + x.shape[k:])
    np.testing.assert_array_equal(run_kernel("gather_nd", {"x": x, "indices": i}, consts=[]), ref)


def test_gather_nd_batch_dims_ios16():
    x = rand((2, 4, 5, 3))
    i = np.stack([idx(0, 4, (2, 6)), idx(0, 5, (2, 6))], -1)
    ref = np.stack([np.stack([x[b, r, c] for r, c in i[b]]) for b in range(2)])
    out = run_kernel("gather_nd", {"x": x, "indices": i, "batch_dims": np.int32(1)}, consts=["batch_dims"],
                     opset=16)
    np.testing.assert_array_equal(out, ref)


@pytest.mark.parametrize("mode", list(NP_MODES))
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_scatter(mode, axis):
    data = rand((3, 4, 5))
    n = data.shape[axis]
    i = RNG.permutation(n)[:2].astype(np.int32)  # distinct: the definition leaves repeated updates' order open
    ushape = list(data.shape)
    ushape[axis] = 2
    upd = rand(ushape)
    ref = np.moveaxis(data.copy(), axis, 0)
    u = np.moveaxis(upd, axis, 0)
    for j, at in enumerate(i):
        ref[at] = NP_MODES[mode](ref[at], u[j])
    out = run_kernel("scatter", {"data": data, "indices": i, "updates": upd, "axis": np.int32(axis), "mode": mode},
                     consts=["axis", "mode"])
    np.testing.assert_allclose(out, np.moveaxis(ref, 0, axis), rtol=1e-6)


def test_scatter_docstring_example_and_default_mode():
    data = np.array([[1, 2, 3], [4, 5, 6]], np.float32)
    upd = np.array([[5, 6, 7], [8, 9, 10]], np.float32)
    out = run_kernel("scatter", {"data": data, "indices": np.array([1, 0], np.int32), "updates": upd}, consts=[])
    np.testing.assert_array_equal(out, [[9, 11, 13], [9, 11, 13]])


def test_scatter_add_accumulates_repeated_indices_fp16():
    data = np.zeros((4, 2), np.float16)
    upd = np.ones((3, 2), np.float16)
    out = run_kernel("scatter", {"data": data, "indices": np.array([1, 1, 3], np.int32), "updates": upd,
                                 "mode": "add"}, consts=["mode"])
    np.testing.assert_array_equal(out, [[0, 0], [2, 2], [0, 0], [1, 1]])
    assert out.dtype == np.float16


@pytest.mark.parametrize("mode", list(NP_MODES))
@pytest.mark.parametrize("axis", [0, 2])
def test_scatter_along_axis(mode, axis):
    data = rand((3, 4, 5))
    shape = list(data.shape)
    shape[axis] = 1  # one update per line: the result does not depend on the order updates apply
    i = idx(0, data.shape[axis], shape)
    upd = rand(shape)
    ref = data.copy()
    for pos in np.ndindex(*shape):
        target = list(pos)
        target[axis] = i[pos]
        ref[tuple(target)] = NP_MODES[mode](ref[tuple(target)], upd[pos])
    out = run_kernel("scatter_along_axis", {"data": data, "indices": i, "updates": upd, "axis": np.int32(axis),
                                            "mode": mode}, consts=["axis", "mode"], opset=17)
    np.testing.assert_allclose(out, ref, rtol=1e-6)


@pytest.mark.parametrize("mode", list(NP_MODES))
@pytest.mark.parametrize("k", [1, 2, 3])
def test_scatter_nd(mode, k):
    data = rand((3, 4, 5))
    flat = RNG.permutation(int(np.prod(data.shape[:k])))[:3]
    i = np.stack(np.unravel_index(flat, data.shape[:k]), -1).astype(np.int32)
    upd = rand((3,) + data.shape[k:])
    ref = data.copy()
    for j, at in enumerate(i):
        ref[tuple(at)] = NP_MODES[mode](ref[tuple(at)], upd[j])
    out = run_kernel("scatter_nd", {"data": data, "indices": i, "updates": upd, "mode": mode}, consts=["mode"])
    np.testing.assert_allclose(out, ref, rtol=1e-6)


def test_scatter_errors_name_the_op():
    with pytest.raises(Error, match="scatter_nd"):
        run_kernel("scatter_nd", {"data": rand((3, 4)), "indices": np.array([[3]], np.int32),
                                  "updates": rand((1, 4))}, consts=[])
    with pytest.raises(Error, match="scatter"):
        run_kernel("scatter", {"data": rand((3, 4)), "indices": np.array([0], np.int32),
                               "updates": rand((1, 4)), "mode": "xor"}, consts=["mode"])


EXPORTS = [
    ("gather", {"x": rand((4, 5)), "indices": idx(0, 5, (2, 2)), "axis": np.int32(1)}, ["x", "indices"], 15),
    ("gather", {"x": rand((2, 4, 5)), "indices": idx(0, 4, (2, 3)), "axis": np.int32(1),
                "batch_dims": np.int32(1)}, ["x", "indices"], 16),
    ("gather_along_axis", {"x": rand((3, 4)), "indices": idx(0, 4, (3, 4)), "axis": np.int32(1)},
     ["x", "indices"], 17),
    ("gather_nd", {"x": rand((3, 4, 5)), "indices": np.array([[0, 1], [2, 3]], np.int32)}, ["x", "indices"], 15),
    ("scatter", {"data": rand((4, 3)), "indices": np.array([1, 3], np.int32), "updates": rand((2, 3)),
                 "mode": "add"}, ["data", "indices", "updates"], 15),
    ("scatter_along_axis", {"data": rand((4, 3)), "indices": np.array([[1, 3, 0]], np.int32),
                            "updates": rand((1, 3)), "mode": "update"}, ["data", "indices", "updates"], 15),
    ("scatter_nd", {"data": rand((4, 3)), "indices": np.array([[1], [3]], np.int32), "updates": rand((2, 3)),
                    "mode": "max"}, ["data", "indices", "updates"], 15),
]


@pytest.mark.parametrize("case", range(len(EXPORTS)))
def test_exports_to_onnx(case):
    assert_exports(*EXPORTS[case])


@pytest.mark.parametrize("mode", list(NP_MODES))
@pytest.mark.parametrize("data_rank,indices_rank", [(1, 2), (2, 1), (3, 2), (2, 3), (1, 3)])
def test_scatter_indices_of_any_rank(mode, data_rank, indices_rank):
    """coremltools' programmatic scatter test (tf.compat.v1.scatter_* semantics) with distinct indices."""
    data = rand((6,) + (3,) * (data_rank - 1))
    ishape = (2,) * indices_rank if indices_rank < 3 else (1, 2, 3)
    i = RNG.permutation(6)[:int(np.prod(ishape))].reshape(ishape).astype(np.int32)
    upd = rand(ishape + data.shape[1:])
    ref = data.copy()
    for j, at in zip(np.ndindex(*ishape), i.reshape(-1), strict=True):
        ref[at] = NP_MODES[mode](ref[at], upd[j])
    out = run_kernel("scatter", {"data": data, "indices": i, "updates": upd, "mode": mode}, consts=["mode"])
    np.testing.assert_allclose(out, ref, rtol=1e-6)


def test_coremltools_scatter_along_axis_example_last_update_wins():
    data = np.array([[1, 2, 3], [4, 5, 6]], dtype=np.float32)
    indices = np.array([[1, 0, 1], [1, 1, 0]], dtype=np.int32)
    updates = np.array([[5, 6, 7], [8, 9, 10]], dtype=np.float32)
    out = run_kernel("scatter_along_axis", {"data": data, "indices": indices, "updates": updates,
                                            "axis": np.int32(0), "mode": "update"}, consts=["axis", "mode"])
    np.testing.assert_array_equal(out, [[1, 6, 10], [8, 9, 7]])
