"""constexpr_* ops against coremltools' own decompression (the ops' ``decompress``) and the docstring examples."""

from __future__ import annotations

import numpy as np
import pytest
from coremltools.converters.mil.mil.ops.defs.iOS16 import constexpr_ops as ios16
from coremltools.converters.mil.mil.ops.defs.iOS18 import compression as ios18
from coremltools.optimize import _utils as ct_utils

from mlupdate.errors import Error
from tests.ops.harness import run_kernel

RNG = np.random.default_rng(7)


def run(op, inputs, opset):
    return run_kernel(op, inputs, consts=list(inputs), opset=opset)


@pytest.mark.parametrize("src", [np.int8, np.uint8])
@pytest.mark.parametrize("dst", [np.float32, np.float16])
@pytest.mark.parametrize("axis,vector", [(0, False), (1, True), (-1, True)])
def test_affine_dequantize(src, dst, axis, vector):
    q = RNG.integers(0 if src == np.uint8 else -128, 127, (3, 4, 5)).astype(src)
    n = q.shape[axis]
    scale = RNG.uniform(0.01, 0.2, n).astype(dst) if vector else np.array(0.07, dst)
    zp = RNG.integers(0, 9, n).astype(src) if vector else np.array(4, src)
    out = run("constexpr_affine_dequantize", {"quantized_data": q, "zero_point": zp, "scale": scale,
                                              "axis": np.int32(axis)}, 16)
    ref = ios16.constexpr_affine_dequantize.decompress(q, zp, scale, axis)
    assert out.dtype == dst
    np.testing.assert_array_equal(out, ref)


@pytest.mark.parametrize("opset", [16, 18])
def test_cast(opset):
    x = RNG.standard_normal((3, 4)).astype(np.float16)
    out = run("constexpr_cast", {"source_val": x, "output_dtype": "fp32"}, opset)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, x.astype(np.float32))


@pytest.mark.parametrize("nbits", [1, 2, 4, 6, 8])
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.int8])
@pytest.mark.parametrize("shape", [(5,), (3, 7), (2, 3, 5)])
def test_lut_to_dense_ios16(nbits, dtype, shape):
    lut = (RNG.standard_normal(2 ** nbits) * 50).astype(dtype)
    idx = RNG.integers(0, 2 ** nbits, int(np.prod(shape))).astype(np.uint8)
    packed = ct_utils.pack_elements_into_bits(idx, nbits)
    out = run("constexpr_lut_to_dense", {"indices": packed, "lut": lut, "shape": np.array(shape, np.uint32)}, 16)
    ref = ios16.constexpr_lut_to_dense.decompress(lut, packed, np.array(shape))
    np.testing.assert_array_equal(out, ref)
    np.testing.assert_array_equal(out, lut[idx].reshape(shape))


def test_lut_to_dense_ios16_docstring_packing():
    # n_bits = 2, shape (5,): byte 0 = i3 i2 i1 i0 = 01 10 11 00, byte 1 = xx xx xx 11
    packed = np.array([0b01101100, 0b00000011], np.uint8)
    lut = np.array([10, 11, 12, 13], np.float32)
    out = run("constexpr_lut_to_dense", {"indices": packed, "lut": lut, "shape": np.array([5], np.uint32)}, 16)
    np.testing.assert_array_equal(out, [10, 13, 12, 11, 13])


def test_sparse_to_dense_ios16():
    shape = (4, 6)
    mask_bits = RNG.random(24) > 0.5
    packed = np.packbits(mask_bits, bitorder="little")
    nonzero = RNG.standard_normal(int(mask_bits.sum())).astype(np.float16)
    out = run("constexpr_sparse_to_dense", {"nonzero_data": nonzero, "mask": packed,
                                            "shape": np.array(shape, np.uint32)}, 16)
    np.testing.assert_array_equal(out, ios16.constexpr_sparse_to_dense.decompress(nonzero, packed, np.array(shape)))
    with pytest.raises(Error, match="constexpr_sparse_to_dense"):
        run("constexpr_sparse_to_dense", {"nonzero_data": nonzero[:-1], "mask": packed,
                                          "shape": np.array(shape, np.uint32)}, 16)


def test_lut_to_dense_ios18_docstring_case1():
    indices = np.array([2, 3, 3, 0, 1, 0, 3, 0, 2, 1, 0, 3], np.uint8).reshape(6, 2)
    lut = np.array([1.0, 5.0, 9.0, 13.0, 2.0, 10.0, 18.0, 26.0], np.float16).reshape(2, 1, 4, 1)
    out = run("constexpr_lut_to_dense", {"indices": indices, "lut": lut}, 18)
    np.testing.assert_array_equal(out, [[9, 13], [13, 1], [5, 1], [26, 2], [18, 10], [2, 26]])


@pytest.mark.parametrize("vector_axis", [1, 2])
def test_lut_to_dense_ios18_docstring_case2(vector_axis):
    indices = np.array([[[0, 0], [1, 0]], [[1, 1], [0, 0]]], np.uint8)
    lut = np.array([1, 2, 3, 4, 5, 6], np.int8).reshape(1, 1, 1, 2, 3)  # a = 1, 2, 3; b = 4, 5, 6
    out = run("constexpr_lut_to_dense", {"indices": indices, "lut": lut, "vector_axis": np.int32(vector_axis)}, 18)
    np.testing.assert_array_equal(out, ios18.constexpr_lut_to_dense.decompress(indices, lut, vector_axis))
    if vector_axis == 2:
        np.testing.assert_array_equal(out[0], [[1, 2, 3, 1, 2, 3], [4, 5, 6, 1, 2, 3]])


@pytest.mark.parametrize("nbits", [1, 3, 4, 8])
@pytest.mark.parametrize("groups,vector,axis", [((1, 1, 1), 1, None), ((2, 1, 3), 1, None), ((1, 4, 1), 2, 0),
                                                ((2, 1, 1), 3, -1)])
def test_lut_to_dense_ios18_grouped_and_vector(nbits, groups, vector, axis):
    indices = RNG.integers(0, 2 ** nbits, (4, 8, 6)).astype(np.uint8)
    lut = RNG.standard_normal((*groups, 2 ** nbits, vector)).astype(np.float16)
    inputs = {"indices": indices, "lut": lut}
    if axis is not None:
        inputs["vector_axis"] = np.int32(axis)
    out = run("constexpr_lut_to_dense", inputs, 18)
    np.testing.assert_array_equal(out, ios18.constexpr_lut_to_dense.decompress(indices, lut, axis))


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.float16])
@pytest.mark.parametrize("scale_shape", [(1, 1, 1), (4, 1, 1), (2, 3, 6), (1, 1, 3)])
@pytest.mark.parametrize("with_offset", [True, False])
def test_blockwise_shift_scale(dtype, scale_shape, with_offset):
    data = (RNG.integers(-8, 8, (4, 3, 6)) + (8 if dtype == np.uint8 else 0)).astype(dtype)
    scale = RNG.uniform(0.01, 0.5, scale_shape).astype(np.float16)
    offset = RNG.integers(0, 4, scale_shape).astype(dtype) if with_offset else None
    inputs = {"data": data, "scale": scale}
    if with_offset:
        inputs["offset"] = offset
    out = run("constexpr_blockwise_shift_scale", inputs, 18)
    assert out.dtype == np.float16
    np.testing.assert_array_equal(out, ios18.constexpr_blockwise_shift_scale.decompress(data, scale, offset))


def test_sparse_to_dense_ios18_and_sparse_blockwise_docstring():
    mask = np.array([[1, 1, 0, 0], [1, 1, 1, 0], [0, 0, 1, 1], [1, 1, 0, 0]], np.uint8)
    nonzero = np.array([10, 11, 3, 4, 5, 6, 7, 8, 9], np.int8)
    scale = np.array([[0.1, 0.2, 0.3, 0.4]], np.float32)
    offset = np.array([[1, 2, 3, 4]], np.int8)
    out_mask, values = run("constexpr_sparse_blockwise_shift_scale", {"data_mask": mask, "nonzero_data": nonzero,
                                                                      "scale": scale, "offset": offset}, 18)
    np.testing.assert_array_equal(out_mask, mask)
    np.testing.assert_allclose(values, [0.9, 1.8, 0.2, 0.4, 0.6, 0.9, 1.2, 0.7, 1.4], rtol=1e-6)
    dense = run("constexpr_sparse_to_dense", {"nonzero_data": values, "mask": out_mask}, 18)
    ref = ios18.constexpr_sparse_to_dense.decompress(
        ios18.constexpr_sparse_blockwise_shift_scale.decompress(mask, nonzero, scale, offset)[1], mask)
    np.testing.assert_array_equal(dense, ref)


@pytest.mark.parametrize("vector_axis", [None, 0, 1])
def test_lut_to_sparse_docstring_then_sparse_to_dense(vector_axis):
    mask = np.array([[1, 1, 0, 0, 0, 0], [1, 1, 0, 0, 0, 1], [0, 1, 1, 0, 1, 0], [0, 0, 0, 1, 0, 0]], np.uint8)
    nonzero = np.array([0, 1, 1, 0, 1, 1, 0, 0, 1], np.uint8)
    vector = 1 if vector_axis is None else 2
    lut = np.array([2.0, 3.0], np.float16).repeat(vector).reshape(1, 1, 2, vector)
    inputs = {"indices_mask": mask, "indices_nonzero_data": nonzero, "lut": lut}
    if vector_axis is not None:
        inputs["vector_axis"] = np.int32(vector_axis)
    out_mask, values = run("constexpr_lut_to_sparse", inputs, 18)
    ref_mask, ref_values = ios18.constexpr_lut_to_sparse.decompress(mask, nonzero, lut, vector_axis)
    np.testing.assert_array_equal(out_mask, ref_mask)
    np.testing.assert_array_equal(values, ref_values)
    if vector_axis is None:
        np.testing.assert_array_equal(values, [2, 3, 3, 2, 3, 3, 2, 2, 3])
    dense = run("constexpr_sparse_to_dense", {"nonzero_data": values, "mask": out_mask}, 18)
    np.testing.assert_array_equal(dense, ct_utils.sparse_to_dense(ref_values, ref_mask))


def test_quantized_lut_chain():
    """Joint compression: a LUT of int8 values dequantized by blockwise_shift_scale, then palettized lookup."""
    qlut = RNG.integers(-128, 127, (2, 1, 16, 1)).astype(np.int8)
    scale = np.full((2, 1, 1, 1), 0.02, np.float16)
    lut = run("constexpr_blockwise_shift_scale", {"data": qlut, "scale": scale}, 18)
    indices = RNG.integers(0, 16, (4, 5)).astype(np.uint8)
    out = run("constexpr_lut_to_dense", {"indices": indices, "lut": lut}, 18)
    ref_lut = ios18.constexpr_blockwise_shift_scale.decompress(qlut, scale, None)
    np.testing.assert_array_equal(out, ios18.constexpr_lut_to_dense.decompress(indices, ref_lut, None))


def test_errors_name_the_op_and_limits_apply(monkeypatch):
    with pytest.raises(Error, match="constexpr_lut_to_dense"):
        run("constexpr_lut_to_dense", {"indices": np.zeros(1, np.uint8), "lut": np.zeros(4, np.float32),
                                       "shape": np.array([5], np.uint32)}, 16)
    with pytest.raises(Error, match="constexpr_lut_to_dense"):
        run("constexpr_lut_to_dense", {"indices": np.zeros(1, np.uint8), "lut": np.zeros(3, np.float32),
                                       "shape": np.array([1], np.uint32)}, 16)
    with pytest.raises(Error, match="constexpr_lut_to_dense"):
        run("constexpr_lut_to_dense", {"indices": np.full((2, 2), 5, np.uint8),
                                       "lut": np.zeros((1, 1, 4, 1), np.float32)}, 18)
    monkeypatch.setenv("MLUPDATE_MAX_ARRAY_ELEMENTS", "100")
    with pytest.raises(Error, match="limit"):
        run("constexpr_sparse_to_dense", {"nonzero_data": np.zeros(0, np.float32), "mask": np.zeros(2, np.uint8),
                                          "shape": np.array([1000, 1000], np.uint32)}, 16)
    with pytest.raises(Error, match="constexpr_blockwise_shift_scale"):
        run("constexpr_blockwise_shift_scale", {"data": np.zeros((20, 20), np.int8),
                                                "scale": np.ones((1, 1), np.float32)}, 18)


# --- programs as coremltools.optimize.coreml writes them: every constexpr op against its own materialization ---

W = RNG.standard_normal((64, 32)).astype(np.float32)


def _compressed(target, *steps):
    """A one-linear program converted for ``target`` and compressed by ``steps`` ((function, config, kwargs))."""
    import coremltools as ct
    from coremltools.converters.mil.mil import Builder as mb

    @mb.program(input_specs=[mb.TensorSpec((1, 32))], opset_version=target)
    def prog(x):
        return mb.linear(x=x, weight=W)

    model = ct.convert(prog, convert_to="mlprogram", minimum_deployment_target=target, skip_model_load=True,
                       compute_precision=ct.precision.FLOAT32)
    for fn, config, kwargs in steps:
        model = fn(model, config, **kwargs)
    return model._mil_program.functions["main"]


def _cases():
    import coremltools as ct
    import coremltools.optimize.coreml as cto

    def cfg(op_config):
        return cto.OptimizationConfig(global_config=op_config)

    pal, quant, prune = cto.palettize_weights, cto.linear_quantize_weights, cto.prune_weights
    joint = {"joint_compression": True}
    return {
        "ios16-palettize": (ct.target.iOS16, [(pal, cfg(cto.OpPalettizerConfig(nbits=2, weight_threshold=1)), {})]),
        "ios16-quantize": (ct.target.iOS16, [(quant, cfg(cto.OpLinearQuantizerConfig(weight_threshold=1)), {})]),
        "ios16-prune": (ct.target.iOS16, [(prune, cfg(cto.OpMagnitudePrunerConfig(0.5, weight_threshold=1)), {})]),
        "ios18-grouped-lut": (ct.target.iOS18, [(pal, cfg(cto.OpPalettizerConfig(
            nbits=3, granularity="per_grouped_channel", group_size=16, weight_threshold=1)), {})]),
        "ios18-vector-lut": (ct.target.iOS18, [(pal, cfg(cto.OpPalettizerConfig(
            nbits=2, cluster_dim=2, weight_threshold=1)), {})]),
        "ios18-lut-channel-scale": (ct.target.iOS18, [(pal, cfg(cto.OpPalettizerConfig(
            nbits=2, enable_per_channel_scale=True, weight_threshold=1)), {})]),
        "ios18-int4-block": (ct.target.iOS18, [(quant, cfg(cto.OpLinearQuantizerConfig(
            mode="linear", dtype="int4", granularity="per_block", block_size=8, weight_threshold=1)), {})]),
        "ios18-prune-palettize": (ct.target.iOS18, [
            (prune, cfg(cto.OpMagnitudePrunerConfig(0.5, weight_threshold=1)), {}),
            (pal, cfg(cto.OpPalettizerConfig(nbits=2, weight_threshold=1)), joint)]),
        "ios18-prune-quantize": (ct.target.iOS18, [
            (prune, cfg(cto.OpMagnitudePrunerConfig(0.5, weight_threshold=1)), {}),
            (quant, cfg(cto.OpLinearQuantizerConfig(dtype="int8", weight_threshold=1)), joint)]),
        "ios18-palettize-quantized-lut": (ct.target.iOS18, [
            (pal, cfg(cto.OpPalettizerConfig(nbits=4, weight_threshold=1)), {}),
            (quant, cfg(cto.OpLinearQuantizerConfig(dtype="int8", granularity="per_tensor", weight_threshold=1)),
             joint)]),
    }


@pytest.mark.parametrize("case", ["ios16-palettize", "ios16-quantize", "ios16-prune", "ios18-grouped-lut",
                                  "ios18-vector-lut", "ios18-lut-channel-scale", "ios18-int4-block",
                                  "ios18-prune-palettize", "ios18-prune-quantize", "ios18-palettize-quantized-lut"])
def test_coremltools_optimize_programs(case):
    target, steps = _cases()[case]
    func = _compressed(target, *steps)
    opset = 16 if "ios16" in case else 18
    values, refs, seen = {}, {}, []
    for op in func.operations:
        if not op.op_type.startswith("constexpr_"):
            continue
        seen.append(op.op_type)
        inputs = {k: np.asarray(v.val if v.val is not None else values[v.name]) for k, v in op.inputs.items()}
        out = run(op.op_type, inputs, opset)
        out = out if isinstance(out, tuple) else (out,)
        if op.op_type == "constexpr_lut_to_dense" and op.lut.val is None:  # a LUT computed by an op before
            axis = None if op.vector_axis is None else op.vector_axis.val
            ref = type(op).decompress(op.indices.val, refs[op.lut.name], axis)
        else:
            ref = op.materialized_val_inference()
        ref = ref if isinstance(ref, tuple) else (ref,)
        refs.update({var.name: r for var, r in zip(op.outputs, ref, strict=True)})
        for var, o, r in zip(op.outputs, out, ref, strict=True):
            np.testing.assert_array_equal(o, r)
            values[var.name] = o
    linear = next(op for op in func.operations if op.op_type == "linear")
    dense = values[linear.weight.name]
    assert dense.shape == W.shape and seen
    np.testing.assert_allclose(dense, W, atol=np.abs(W).max())  # a compressed copy of the weights, not noise
    assert np.corrcoef(dense.reshape(-1), W.reshape(-1))[0, 1] > 0.5
