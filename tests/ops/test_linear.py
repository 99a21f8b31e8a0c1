"""linear, matmul and einsum MIL ops against numpy written from the op definitions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mlupdate.errors import Error
from mlupdate.ops import OpContext, kernel_for
from tests.ops.harness import run_kernel

RNG = np.random.default_rng(3)


def _check(got, want, dtype):
    assert got.dtype == dtype and got.shape == want.shape
    tol = 1e-5 if dtype == np.float32 else (0 if dtype == np.int32 else 5e-3)
    np.testing.assert_allclose(got.astype(np.float64), want, rtol=tol, atol=tol)


@pytest.mark.parametrize("opset", [15, 17])
@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.int32])
# ranks 4 and 5 go past the definition's "1 <= rank <= 3", but Core ML runs them: coremltools'
# iOS14/test_linear.py::TestLinear::test_builder_to_backend_stress[rank=5] has no xfail on the CPU
@pytest.mark.parametrize("shape", [(4,), (3, 4), (2, 3, 4), (2, 1, 3, 4), (1, 2, 2, 3, 4)])
@pytest.mark.parametrize("bias", [False, True])
def test_linear(shape, bias, dtype, opset):
    def draw(*s):
        return (RNG.integers(-3, 4, s) if dtype == np.int32 else RNG.uniform(-1, 1, s)).astype(dtype)

    x, w, b = draw(*shape), draw(5, 4), draw(5)
    wdtype = (np.float16 if dtype == np.float32 else np.float32) if opset == 17 and dtype != np.int32 else dtype
    inputs = {"x": x, "weight": w.astype(wdtype)}
    want = x.astype(np.float64) @ w.astype(wdtype).astype(np.float64).T  # the definition: x * weight.T + bias
    if bias:
        inputs["bias"] = b.astype(wdtype)
        want = want + b.astype(wdtype)
    _check(run_kernel("linear", inputs, opset=opset), want, dtype)


@pytest.mark.parametrize("inputs, match", [
    ({"x": np.ones((3, 4), np.float32), "weight": np.ones((5, 3), np.float32)}, "D_in = 4"),
    ({"x": np.ones((3, 4), np.float32), "weight": np.ones((5, 4), np.float32), "bias": np.ones(4, np.float32)},
     "bias"),
])
def test_linear_errors_name_the_op(inputs, match):
    with pytest.raises(Error, match=f"linear_0.*{match}"):
        run_kernel("linear", inputs)


MATMUL = [((4,), (4,)), ((3, 4), (4, 2)), ((4,), (10, 4, 3)), ((10, 3, 4), (4,)), ((10, 4, 3), (5, 10, 3, 2)),
          ((2, 1, 3, 4), (5, 4, 2)), ((1, 2, 3, 2, 4), (2, 1, 4, 3))]


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.int32])
@pytest.mark.parametrize("xs, ys", MATMUL)
def test_matmul(xs, ys, dtype):
    x = (RNG.integers(-3, 4, xs) if dtype == np.int32 else RNG.uniform(-1, 1, xs)).astype(dtype)
    y = (RNG.integers(-3, 4, ys) if dtype == np.int32 else RNG.uniform(-1, 1, ys)).astype(dtype)
    _check(run_kernel("matmul", {"x": x, "y": y}, consts=[]), np.matmul(x.astype(np.float64), y), dtype)


@pytest.mark.parametrize("tx, ty", [(False, True), (True, False), (True, True)])
@pytest.mark.parametrize("as_, bs", [((2, 4, 3), (2, 3, 5)), ((4,), (4, 5)), ((3, 4), (4,))])
def test_matmul_transposes(as_, bs, tx, ty):
    # the operands after the transposes; x and y are stored transposed (a transpose has no effect on 1-D)
    a, b = RNG.uniform(-1, 1, as_).astype(np.float32), RNG.uniform(-1, 1, bs).astype(np.float32)
    x = np.ascontiguousarray(np.swapaxes(a, -1, -2)) if tx and a.ndim >= 2 else a
    y = np.ascontiguousarray(np.swapaxes(b, -1, -2)) if ty and b.ndim >= 2 else b
    got = run_kernel("matmul", {"x": x, "y": y, "transpose_x": np.bool_(tx), "transpose_y": np.bool_(ty)},
                     consts=["transpose_x", "transpose_y"])
    _check(got, np.matmul(a.astype(np.float64), b), np.float32)


def test_matmul_iOS17_constant_operand_of_another_dtype():
    x = RNG.uniform(-1, 1, (2, 3, 4)).astype(np.float32)
    y = RNG.uniform(-1, 1, (4, 5)).astype(np.float16)
    got = run_kernel("matmul", {"x": x, "y": y}, consts=["y"], opset=17)
    _check(got, np.matmul(x.astype(np.float64), y.astype(np.float64)), np.float32)  # the non-const's dtype


@pytest.mark.parametrize("xs, ys, match", [((3, 4), (3, 2), "4 against 3"), ((2, 3, 4), (3, 4, 2), "batch"),
                                           ((), (3,), "rank 1")])
def test_matmul_errors_name_the_op(xs, ys, match):
    ctx = OpContext("matmul", name="matmul_0")
    with pytest.raises(Error, match=f"matmul_0.*{match}"):
        kernel_for("matmul", 15)(ctx, {"x": torch.ones(xs), "y": torch.ones(ys)})


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("equation, xs, ys", [
    ("nchw,nwhu->nchu", (2, 3, 4, 5), (2, 5, 4, 6)),
    ("abcd,adce->abce", (2, 3, 4, 5), (1, 5, 4, 6)),   # a renaming; n broadcast
    ("nchw,nwhu->nchu", (1, 3, 1, 5), (2, 5, 4, 6)),   # n and h broadcast
    ("chw,whr->chr", (3, 4, 5), (5, 4, 6)),
    ("ijk , kjl -> ijl", (3, 1, 5), (5, 4, 6)),        # h broadcast, spaces
])
def test_einsum(equation, xs, ys, dtype):
    x, y = RNG.uniform(-1, 1, xs).astype(dtype), RNG.uniform(-1, 1, ys).astype(dtype)
    b = np.broadcast_shapes
    if len(xs) == 4:  # broadcast n and h as the definition says, then numpy's einsum
        n, h = b((xs[0],), (ys[0],))[0], b((xs[2],), (ys[2],))[0]
        xb, yb = np.broadcast_to(x, (n, xs[1], h, xs[3])), np.broadcast_to(y, (n, ys[1], h, ys[3]))
        want = np.einsum("nchw,nwhu->nchu", xb.astype(np.float64), yb)
    else:
        h = b((xs[1],), (ys[1],))[0]
        xb, yb = np.broadcast_to(x, (xs[0], h, xs[2])), np.broadcast_to(y, (ys[0], h, ys[2]))
        want = np.einsum("chw,whr->chr", xb.astype(np.float64), yb)
    _check(run_kernel("einsum", {"values": [x, y], "equation": equation}, consts=["equation"]), want, dtype)


@pytest.mark.parametrize("equation, xs, ys, match", [
    ("nchw,nwhu->nhcu", (2, 3, 4, 5), (2, 5, 4, 6), "not supported"),
    ("ij,jk->ik", (2, 3), (3, 4), "not supported"),
    ("nchw,nwhu->nchu", (3, 4, 5), (5, 4, 6), "rank-4"),
    ("chw,whr->chr", (3, 4, 5), (6, 4, 6), "5 against 6"),
])
def test_einsum_errors_name_the_op(equation, xs, ys, match):
    values = [np.ones(xs, np.float32), np.ones(ys, np.float32)]
    with pytest.raises(Error, match=f"einsum_0.*{match}"):
        run_kernel("einsum", {"values": values, "equation": equation}, consts=["equation"])
