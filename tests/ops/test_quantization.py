"""quantize / dequantize against coremltools' own quantization utilities (the ops' value_inference)."""

from __future__ import annotations

import numpy as np
import pytest
from coremltools.optimize import _utils as ct_utils

from mlupdate.errors import Error
from tests.ops.harness import assert_exports, run_kernel

RNG = np.random.default_rng(6)


@pytest.mark.parametrize("src", [np.float32, np.float16])
@pytest.mark.parametrize("dst", ["int8", "uint8"])
@pytest.mark.parametrize("form", ["scalar", "vector", "none"])
def test_quantize_and_dequantize(src, dst, form):
    x = (RNG.standard_normal((2, 3, 4)) * 20).astype(src)
    axis = 1
    if form == "vector":
        scale = RNG.uniform(0.05, 0.3, 3).astype(src)
        zp = RNG.integers(-5, 5, 3).astype(dst) if dst == "int8" else RNG.integers(100, 150, 3).astype(dst)
    else:
        scale = np.array(0.15, src)
        zp = np.array(3 if dst == "int8" else 128, dst)
    inputs = {"input": x, "scale": scale, "output_dtype": dst}
    if form != "none":
        inputs["zero_point"] = zp
    if form == "vector":
        inputs["axis"] = np.int32(axis)
    q = run_kernel("quantize", inputs, consts=[k for k in inputs if k != "input"], opset=17)
    s = ct_utils.promote_rank_to_same_as_data(scale, x, axis)
    z = None if form == "none" else ct_utils.promote_rank_to_same_as_data(zp, x, axis)
    ref = ct_utils.quantize_by_scale_and_zp(x, s, z, dst)
    assert q.dtype == np.dtype(dst)
    np.testing.assert_array_equal(q, ref)
    deq = {k: v for k, v in inputs.items() if k != "output_dtype"}
    deq["input"] = q
    out = run_kernel("dequantize", deq, consts=[k for k in deq if k != "input"], opset=17)
    ref = ct_utils.dequantize_by_scale_and_zp(q, scale, None if form == "none" else zp,
                                              axis if form == "vector" else None)
    assert out.dtype == src
    np.testing.assert_allclose(out, ref, rtol=1e-3 if src == np.float16 else 1e-6)


def test_quantize_errors_name_the_op():
    x = np.ones((2, 3), np.float32)
    with pytest.raises(Error, match="quantize"):
        run_kernel("quantize", {"input": x, "scale": np.ones(4, np.float32), "axis": np.int32(1),
                                "output_dtype": "int8"}, consts=["scale", "axis", "output_dtype"], opset=17)
    with pytest.raises(Error, match="quantize"):
        run_kernel("quantize", {"input": x, "scale": np.float32(1), "output_dtype": "int4"},
                   consts=["scale", "output_dtype"], opset=17)


EXPORTS = [
    ("quantize", {"input": RNG.standard_normal((3, 4)).astype(np.float32) * 10, "scale": np.float32(0.1),
                  "zero_point": np.int8(2), "output_dtype": "int8"}, ["input"], 17),
    ("dequantize", {"input": RNG.integers(-100, 100, (3, 4)).astype(np.int8), "scale": np.float32(0.1),
                    "zero_point": np.int8(-3)}, ["input"], 17),
]


@pytest.mark.parametrize("case", range(len(EXPORTS)))
def test_exports_to_onnx(case):
    assert_exports(*EXPORTS[case])
