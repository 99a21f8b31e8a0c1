"""tensor_transformation ops against numpy written from the op definitions' docstrings (and PyTorch)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mlupdate.errors import Error
from tests.ops.harness import assert_exports, run_kernel

RNG = np.random.default_rng(1)
DTYPES = [np.float32, np.float16, np.int32, np.bool_]


def rand(shape, dtype=np.float32):
    return (RNG.standard_normal(shape) * 4).astype(dtype)


def i32(v):
    return np.array(v, np.int32)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,target,expect", [((2, 3, 4), [4, -1], (4, 6)), ((2, 3, 4), [0, 0, 2, 2], None),
                                                 ((2, 3, 4), [0, 12, 1], (2, 12, 1)), ((6,), [1, 2, 3], (1, 2, 3))])
def test_reshape(dtype, shape, target, expect):
    x = rand(shape, dtype)
    if expect is None:
        with pytest.raises(Error, match="reshape"):
            run_kernel("reshape", {"x": x, "shape": i32(target)})
        return
    out = run_kernel("reshape", {"x": x, "shape": i32(target)})
    np.testing.assert_array_equal(out, x.reshape(expect))
    assert out.dtype == dtype


def test_reshape_like_docstring_example():
    x = rand((2, 3, 30))
    out = run_kernel("reshape_like", {"x": x, "ref_tensors": [rand((2, 3, 4)), rand((1, 5, 6))],
                                      "begins": i32([0, 1]), "ends": i32([2, 0]), "end_masks": np.array([False, True])},
                     opset=16)
    np.testing.assert_array_equal(out, x.reshape(2, 3, 5, 6))


@pytest.mark.parametrize("shape,axes", [((3,), [0]), ((2, 3), [-1, 0]), ((2, 3, 4), [1, 3]), ((2,), [-2, -1])])
def test_expand_dims(shape, axes):
    x = rand(shape)
    out = run_kernel("expand_dims", {"x": x, "axes": i32(axes)})
    np.testing.assert_array_equal(out, np.expand_dims(x, tuple(axes)))


@pytest.mark.parametrize("shape,axes,expect", [((1, 3, 1), None, (3,)), ((1, 3, 1), [0], (3, 1)),
                                               ((2, 3, 4), [0, 1], (2, 3, 4)), ((2, 1, 1), [-1], (2, 1))])
def test_squeeze(shape, axes, expect):
    x = rand(shape)
    inputs = {"x": x} if axes is None else {"x": x, "axes": i32(axes)}
    np.testing.assert_array_equal(run_kernel("squeeze", inputs), x.reshape(expect))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("perm", [[1, 0, 2], [2, 0, 1], [-1, 0, 1]])
def test_transpose(dtype, perm):
    x = rand((2, 3, 4), dtype)
    np.testing.assert_array_equal(run_kernel("transpose", {"x": x, "perm": i32(perm)}), np.transpose(x, perm))


@pytest.mark.parametrize("axes", [None, [0], [-1, 1]])
def test_reverse(axes):
    x = rand((2, 3, 4))
    inputs = {"x": x} if axes is None else {"x": x, "axes": i32(axes)}
    np.testing.assert_array_equal(run_kernel("reverse", inputs), np.flip(x, axes and tuple(axes)))


@pytest.mark.parametrize("seq_axis,batch_axis", [(1, 0), (0, 1), (2, 1)])
def test_reverse_sequence(seq_axis, batch_axis):
    x = rand((3, 4, 5))
    lengths = RNG.integers(0, x.shape[seq_axis] + 1, x.shape[batch_axis]).astype(np.int32)
    ref = x.copy()
    for b, n in enumerate(lengths):  # tf.reverse_sequence: reverse the first lengths[b] entries of slice b
        src = np.take(x, b, axis=batch_axis)
        dst = np.take(ref, b, axis=batch_axis).copy()
        sa = seq_axis if seq_axis < batch_axis else seq_axis - 1
        idx = [slice(None)] * src.ndim
        idx[sa] = slice(0, n)
        dst[tuple(idx)] = np.flip(src[tuple(idx)], sa)
        full = [slice(None)] * x.ndim
        full[batch_axis] = b
        ref[tuple(full)] = dst
    out = run_kernel("reverse_sequence", {"x": x, "lengths": lengths, "seq_axis": np.int32(seq_axis),
                                          "batch_axis": np.int32(batch_axis)}, consts=["seq_axis", "batch_axis"])
    np.testing.assert_array_equal(out, ref)


SLICES = [
    ([0, 1, 0], [2, 3, 4], None, None, None, None),
    ([1, -1, 0], [2, -3, 4], [1, -1, 2], None, None, None),
    ([0, 0, 3], [2, 3, 0], [1, 1, -1], [True, False, False], [False, True, True], None),
    ([1, 0, 2], [0, 3, 0], None, None, [False, True, False], [True, False, True]),
    ([-1, 5, 0], [10, 1, 4], [-1, -2, 3], None, None, None),
]


def _np_slice(x, begin, end, stride, bmask, emask, smask):
    rank = x.ndim
    stride = stride or [1] * rank
    bmask, emask, smask = (m or [False] * rank for m in (bmask, emask, smask))
    idx = tuple(begin[i] if smask[i] else slice(None if bmask[i] else begin[i], None if emask[i] else end[i],
                                                 stride[i]) for i in range(rank))
    return x[idx]


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.int32])
@pytest.mark.parametrize("begin,end,stride,bmask,emask,smask", SLICES)
def test_slice_by_index(dtype, begin, end, stride, bmask, emask, smask):
    x = rand((3, 6, 5), dtype)
    inputs = {"x": x, "begin": i32(begin), "end": i32(end)}
    for k, v in (("stride", stride), ("begin_mask", bmask), ("end_mask", emask), ("squeeze_mask", smask)):
        if v is not None:
            inputs[k] = np.array(v, np.int32 if k == "stride" else bool)
    np.testing.assert_array_equal(run_kernel("slice_by_index", inputs), _np_slice(x, begin, end, stride, bmask,
                                                                                   emask, smask))
    if smask is None or not all(smask):
        update = rand(_np_slice(x, begin, end, stride, bmask, emask, smask).shape, dtype)
        ref = x.copy()
        idx = tuple(begin[i] if smask and smask[i] else slice(
            None if bmask and bmask[i] else begin[i], None if emask and emask[i] else end[i],
            stride[i] if stride else 1) for i in range(3))
        ref[idx] = update
        np.testing.assert_array_equal(run_kernel("slice_update", {**inputs, "update": update}, opset=18,
                                                 consts=set(inputs) - {"x"}), ref)


def test_slice_by_index_dynamic_bounds_run_in_torch():
    x = rand((4, 5))
    out = run_kernel("slice_by_index", {"x": x, "begin": i32([1, 0]), "end": i32([3, 5])}, consts=[])
    np.testing.assert_array_equal(out, x[1:3])


@pytest.mark.parametrize("begin,size", [([0, 1, 2], [2, 2, -1]), ([-2, 0, 0], [1, -1, 3])])
def test_slice_by_size(begin, size):
    x = rand((3, 4, 5))
    idx = tuple(slice(b % d, (b % d) + (d - b % d if s == -1 else s))
                for b, s, d in zip(begin, size, x.shape, strict=True))
    np.testing.assert_array_equal(run_kernel("slice_by_size", {"x": x, "begin": i32(begin), "size": i32(size)}),
                                  x[idx])
    with pytest.raises(Error, match="slice_by_size"):
        run_kernel("slice_by_size", {"x": x, "begin": i32([2, 0, 0]), "size": i32([3, 1, 1])})


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("b", [2, 3])
def test_depth_to_space_and_space_to_depth(dtype, b):
    x = rand((2, 2 * b * b, 3, 2), dtype)
    n, c, h, w = x.shape
    co = c // (b * b)
    ref = np.zeros((n, co, h * b, w * b), dtype)
    for i in range(b):  # TensorFlow's DCR order: out[.., c, h*b+i, w*b+j] = x[.., (i*b+j)*C_out + c, h, w]
        for j in range(b):
            ref[:, :, i::b, j::b] = x[:, (i * b + j) * co:(i * b + j + 1) * co]
    out = run_kernel("depth_to_space", {"x": x, "block_size": np.int32(b)})
    np.testing.assert_array_equal(out, ref)
    np.testing.assert_array_equal(run_kernel("space_to_depth", {"x": ref, "block_size": np.int32(b)}), x)


def test_space_to_depth_coremltools_example():
    x = np.array([[[[7.0, 9.0], [4.0, 6.0]]]], dtype=np.float32)
    out = run_kernel("space_to_depth", {"x": x, "block_size": np.int32(2)})
    np.testing.assert_array_equal(out, np.array([[[[7.0]], [[9.0]], [[4.0]], [[6.0]]]]))
    with pytest.raises(Error, match="space_to_depth"):
        run_kernel("space_to_depth", {"x": rand((1, 1, 3, 3)), "block_size": np.int32(2)})


@pytest.mark.parametrize("f", [2, 3])
def test_pixel_shuffle_and_unshuffle(f):
    x = rand((2, 2 * f * f, 3, 4))
    ref = torch.nn.PixelShuffle(f)(torch.from_numpy(x)).numpy()
    np.testing.assert_array_equal(run_kernel("pixel_shuffle", {"x": x, "upscale_factor": np.int32(f)}), ref)
    back = run_kernel("pixel_unshuffle", {"x": ref, "downscale_factor": np.int32(f)}, opset=16)
    np.testing.assert_array_equal(back, torch.nn.PixelUnshuffle(f)(torch.from_numpy(ref)).numpy())


@pytest.mark.parametrize("block,pads", [([2, 2], [[0, 0], [0, 0]]), ([2, 3], [[1, 1], [0, 2]]),
                                        ([1, 2], [[0, 1], [1, 1]])])
def test_space_to_batch_and_back(block, pads):
    x = rand((2, 3, 4, 4))
    padded = np.pad(x, [(0, 0), (0, 0), *pads])
    bh, bw = block
    n = x.shape[0]
    ref = np.zeros((n * bh * bw, 3, padded.shape[2] // bh, padded.shape[3] // bw), np.float32)
    for i in range(bh):  # tf.space_to_batch_nd: batch (i*bw+j)*n + k holds padded[k, :, i::bh, j::bw]
        for j in range(bw):
            ref[(i * bw + j) * n:(i * bw + j + 1) * n] = padded[:, :, i::bh, j::bw]
    out = run_kernel("space_to_batch", {"x": x, "block_shape": i32(block), "paddings": i32(pads)})
    np.testing.assert_array_equal(out, ref)
    back = run_kernel("batch_to_space", {"x": ref, "block_shape": i32(block), "crops": i32(pads)})
    np.testing.assert_array_equal(back, x)


@pytest.mark.parametrize("shape,axis,size,stride", [((7,), 0, 3, 1), ((2, 9, 3), 1, 4, 2), ((4, 5), -1, 5, 1)])
def test_sliding_windows(shape, axis, size, stride):
    x = rand(shape)
    a = axis % len(shape)
    count = (shape[a] - size) // stride + 1
    ref = np.stack([np.take(x, np.arange(k * stride, k * stride + size), axis=a) for k in range(count)], axis=a)
    out = run_kernel("sliding_windows", {"x": x, "axis": np.int32(axis), "size": np.int32(size),
                                         "stride": np.int32(stride)})
    np.testing.assert_array_equal(out, ref)


def test_rank_errors_name_the_op():
    with pytest.raises(Error, match="pixel_shuffle"):
        run_kernel("pixel_shuffle", {"x": rand((4, 2, 2)), "upscale_factor": np.int32(2)})
    with pytest.raises(Error, match="transpose"):
        run_kernel("transpose", {"x": rand((2, 3)), "perm": i32([0, 0])})


EXPORTS = [
    ("reshape", {"x": rand((2, 3, 4)), "shape": i32([0, 0, -1])}, ["x"], 15),
    ("expand_dims", {"x": rand((2, 3)), "axes": i32([0])}, ["x"], 15),
    ("squeeze", {"x": rand((1, 3, 1))}, ["x"], 15),
    ("transpose", {"x": rand((2, 3, 4)), "perm": i32([2, 0, 1])}, ["x"], 15),
    ("reverse", {"x": rand((2, 3, 4)), "axes": i32([1])}, ["x"], 15),
    ("reverse_sequence", {"x": rand((3, 4, 2)), "lengths": i32([1, 3, 0]), "seq_axis": np.int32(1),
                          "batch_axis": np.int32(0)}, ["x", "lengths"], 15),
    ("slice_by_index", {"x": rand((4, 5, 6)), "begin": i32([3, 0, 1]), "end": i32([0, 5, 5]),
                        "stride": i32([-1, 2, 1])}, ["x"], 15),
    ("slice_by_size", {"x": rand((4, 5)), "begin": i32([1, 1]), "size": i32([-1, 2])}, ["x"], 15),
    ("slice_update", {"x": rand((4, 5)), "update": rand((2, 5)), "begin": i32([1, 0]), "end": i32([3, 5])},
     ["x", "update"], 18),
    ("depth_to_space", {"x": rand((1, 8, 2, 3)), "block_size": np.int32(2)}, ["x"], 15),
    ("space_to_depth", {"x": rand((1, 2, 4, 6)), "block_size": np.int32(2)}, ["x"], 15),
    ("pixel_shuffle", {"x": rand((1, 8, 2, 3)), "upscale_factor": np.int32(2)}, ["x"], 15),
    ("pixel_unshuffle", {"x": rand((1, 2, 4, 6)), "downscale_factor": np.int32(2)}, ["x"], 16),
    ("space_to_batch", {"x": rand((1, 2, 4, 6)), "block_shape": i32([2, 2]), "paddings": i32([[0, 0], [1, 1]])},
     ["x"], 15),
    ("batch_to_space", {"x": rand((4, 2, 2, 3)), "block_shape": i32([2, 2]), "crops": i32([[0, 0], [1, 1]])},
     ["x"], 15),
    ("sliding_windows", {"x": rand((2, 7)), "axis": np.int32(1), "size": np.int32(3), "stride": np.int32(2)},
     ["x"], 15),
    ("reshape_like", {"x": rand((2, 6)), "ref_tensors": [rand((3, 4))], "begins": i32([0]), "ends": i32([2]),
                      "end_masks": np.array([True])}, ["x"], 16),
]


@pytest.mark.parametrize("case", range(len(EXPORTS)))
def test_exports_to_onnx(case):
    assert_exports(*EXPORTS[case])


def test_coremltools_space_to_batch_example():
    x = np.array([[[[1, 2, 3, 4], [5, 6, 7, 8]]], [[[9, 10, 11, 12], [13, 14, 15, 16]]]], np.float32)
    y = np.array([[[[0, 1, 3]]], [[[0, 9, 11]]], [[[0, 2, 4]]], [[[0, 10, 12]]], [[[0, 5, 7]]], [[[0, 13, 15]]],
                  [[[0, 6, 8]]], [[[0, 14, 16]]]], np.float32)
    pads = i32([[0, 0], [2, 0]])
    np.testing.assert_array_equal(run_kernel("space_to_batch", {"x": x, "block_shape": i32([2, 2]),
                                                                "paddings": pads}), y)
    np.testing.assert_array_equal(run_kernel("batch_to_space", {"x": y, "block_shape": i32([2, 2]), "crops": pads}), x)
