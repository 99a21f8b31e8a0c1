"""scaled_dot_product_attention against numpy from the definition and PyTorch's own SDPA."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mlupdate.errors import Error
from tests.ops.harness import assert_exports, run_kernel

RNG = np.random.default_rng(5)


def np_sdpa(q, k, v, mask=None):
    s = q @ np.swapaxes(k, -1, -2) / np.sqrt(q.shape[-1])
    if mask is not None:
        s = np.where(mask, s, -np.inf) if mask.dtype == bool else s + mask
    s = np.exp(s - s.max(-1, keepdims=True))
    return (s / s.sum(-1, keepdims=True)) @ v


@pytest.mark.parametrize("dtype,tol", [(np.float32, 1e-5), (np.float16, 5e-3)])
@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (1, 6, 8), (2, 2, 3, 4, 8)])
@pytest.mark.parametrize("mask", [None, "bool", "float"])
def test_sdpa(dtype, tol, shape, mask):
    *lead, length, e = shape
    q = RNG.standard_normal(shape).astype(dtype)
    k = RNG.standard_normal((*lead, 7, e)).astype(dtype)
    v = RNG.standard_normal((*lead, 7, 3)).astype(dtype)
    inputs = {"query": q, "key": k, "value": v}
    m = None
    if mask == "bool":
        m = RNG.random((length, 7)) > 0.3
        m[:, 0] = True  # no row fully masked
        inputs["attn_mask"] = m
    elif mask == "float":
        m = RNG.standard_normal((length, 7)).astype(dtype)
        inputs["attn_mask"] = m
    out = run_kernel("scaled_dot_product_attention", inputs, consts=[], opset=18)
    assert out.dtype == dtype and out.shape == (*lead, length, 3)
    np.testing.assert_allclose(out, np_sdpa(*(a.astype(np.float64) for a in (q, k, v)),
                                            None if m is None else m if m.dtype == bool else m.astype(np.float64)),
                               atol=tol, rtol=tol)
    if dtype == np.float32:
        ref = F.scaled_dot_product_attention(*(torch.from_numpy(a) for a in (q, k, v)),
                                             attn_mask=None if m is None else torch.from_numpy(m))
        np.testing.assert_allclose(out, ref.numpy(), atol=1e-5)


def test_sdpa_is_ios18_only_and_errors_name_the_op():
    q = np.zeros((1, 2, 4), np.float32)
    with pytest.raises(Error, match="scaled_dot_product_attention"):
        run_kernel("scaled_dot_product_attention", {"query": q, "key": q, "value": q}, consts=[], opset=17)
    with pytest.raises(Error, match="scaled_dot_product_attention"):
        run_kernel("scaled_dot_product_attention", {"query": q, "key": np.zeros((1, 2, 3), np.float32), "value": q},
                   consts=[], opset=18)


EXPORTS = [
    ("scaled_dot_product_attention", {"query": RNG.standard_normal((2, 3, 4)).astype(np.float32),
                                      "key": RNG.standard_normal((2, 5, 4)).astype(np.float32),
                                      "value": RNG.standard_normal((2, 5, 6)).astype(np.float32),
                                      "attn_mask": RNG.random((3, 5)) > 0.2},
     ["query", "key", "value", "attn_mask"], 18),
]


@pytest.mark.parametrize("case", range(len(EXPORTS)))
def test_exports_to_onnx(case):
    assert_exports(*EXPORTS[case])


def test_batch_independence_and_repeatability():
    q, k, v = (RNG.standard_normal((3, 2, 4, 8)).astype(np.float32) for _ in range(3))
    together = run_kernel("scaled_dot_product_attention", {"query": q, "key": k, "value": v}, consts=[], opset=18)
    np.testing.assert_array_equal(together, run_kernel("scaled_dot_product_attention",
                                                       {"query": q, "key": k, "value": v}, consts=[], opset=18))
    for b in range(3):
        alone = run_kernel("scaled_dot_product_attention", {"query": q[b:b + 1], "key": k[b:b + 1],
                                                            "value": v[b:b + 1]}, consts=[], opset=18)
        np.testing.assert_allclose(alone[0], together[b], rtol=1e-6, atol=1e-6)
