"""tensor_operation ops against numpy written from the op definitions' docstrings."""

from __future__ import annotations

import numpy as np
import pytest

from mlupdate.errors import Error
from tests.ops.harness import assert_exports, run_kernel

RNG = np.random.default_rng(0)
FLOATS = [np.float32, np.float16]


def rand(shape, dtype=np.float32):
    return RNG.standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.int32])
@pytest.mark.parametrize("lower,upper", [(0, -1), (-1, 0), (0, 0), (1, 2), (2, 1), (-1, -1)])
def test_band_part(dtype, lower, upper):
    x = (rand((2, 3, 4, 5)) * 10).astype(dtype)
    m, n = np.arange(4)[:, None], np.arange(5)[None, :]
    band = ((lower < 0) | (m - n <= lower)) & ((upper < 0) | (n - m <= upper))
    out = run_kernel("band_part", {"x": x, "lower": np.int32(lower), "upper": np.int32(upper)})
    np.testing.assert_array_equal(out, np.where(band, x, 0).astype(dtype))
    assert out.dtype == dtype


def test_band_part_defaults_keep_everything():
    x = rand((3, 3))
    np.testing.assert_array_equal(run_kernel("band_part", {"x": x}), x)


@pytest.mark.parametrize("dtype", [np.float32, np.int32])
@pytest.mark.parametrize("axis,exclusive,reverse", [(0, False, False), (1, True, False), (-1, False, True),
                                                    (2, True, True)])
def test_cumsum(dtype, axis, exclusive, reverse):
    x = (rand((2, 3, 4)) * 5).astype(dtype)
    y = np.flip(x, axis) if reverse else x
    ref = np.cumsum(y, axis=axis).astype(dtype)
    if exclusive:
        ref = ref - y
    ref = np.flip(ref, axis) if reverse else ref
    out = run_kernel("cumsum", {"x": x, "axis": np.int32(axis), "exclusive": exclusive, "reverse": reverse})
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
    assert out.dtype == dtype


def test_cumsum_default_axis_is_0():
    x = rand((3, 4))
    np.testing.assert_allclose(run_kernel("cumsum", {"x": x}), np.cumsum(x, 0), rtol=1e-6)


def test_fill_and_fill_like():
    out = run_kernel("fill", {"shape": np.array([2, 3, 1], np.int32), "value": np.float16(2.5)})
    np.testing.assert_array_equal(out, np.full((2, 3, 1), 2.5, np.float16))
    assert out.dtype == np.float16
    np.testing.assert_array_equal(run_kernel("fill", {"shape": np.array([4], np.int32)}), np.zeros(4))
    out = run_kernel("fill_like", {"ref_tensor": rand((2, 5)), "value": np.int32(7)}, opset=16,
                     consts=["value"])
    np.testing.assert_array_equal(out, np.full((2, 5), 7, np.int32))


def test_fill_refuses_shapes_over_the_limit():
    with pytest.raises(Error, match="fill"):
        run_kernel("fill", {"shape": np.array([1 << 20, 1 << 20], np.int32)})


def test_fill_like_is_not_in_ios15():
    with pytest.raises(Error, match="fill_like"):
        run_kernel("fill_like", {"ref_tensor": rand((2,))}, opset=15)


@pytest.mark.parametrize("shape", [(3,), (2, 0, 4), (1, 2, 3, 4, 5)])
def test_shape_and_identity(shape):
    x = rand(shape)
    np.testing.assert_array_equal(run_kernel("shape", {"x": x}), np.array(shape, np.int32))
    np.testing.assert_array_equal(run_kernel("identity", {"x": x}), x)


@pytest.mark.parametrize("start,end,step,dtype", [(0, 10, 3, np.int32), (5, -3, -2, np.int32),
                                                  (0.5, 2.0, 0.25, np.float32), (1, 1, 1, np.int32)])
def test_range_1d(start, end, step, dtype):
    out = run_kernel("range_1d", {"start": dtype(start), "end": dtype(end), "step": dtype(step)})
    np.testing.assert_allclose(out, np.arange(start, end, step, dtype=dtype))
    assert out.dtype == dtype


def test_range_1d_zero_step_is_an_error():
    with pytest.raises(Error, match="range_1d"):
        run_kernel("range_1d", {"start": np.int32(0), "end": np.int32(3), "step": np.int32(0)})


@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_one_hot(axis):
    idx = np.array([[0, 2], [3, 1]], np.int32)
    out = run_kernel("one_hot", {"indices": idx, "one_hot_vector_size": np.int32(4), "axis": np.int32(axis),
                                 "on_value": np.float32(5), "off_value": np.float32(-1)}, consts=[
        "one_hot_vector_size", "axis", "on_value", "off_value"])
    ref = np.where(np.eye(4, dtype=bool)[idx], 5.0, -1.0)
    np.testing.assert_array_equal(out, np.moveaxis(ref, -1, axis))


@pytest.mark.parametrize("mode", ["constant", "reflect", "replicate"])
@pytest.mark.parametrize("shape,pads", [((3, 4), [1, 2, 0, 3]), ((2, 3, 4, 5), [2, 1, 1, 3]),
                                        ((2, 5), [4, 0])])
def test_pad(mode, shape, pads):
    x = rand(shape)
    n = len(pads) // 2
    width = [(0, 0)] * (len(shape) - n) + [(pads[2 * i], pads[2 * i + 1]) for i in range(n)]
    np_mode = {"constant": "constant", "reflect": "reflect", "replicate": "edge"}[mode]
    kw = {"constant_values": 1.5} if mode == "constant" else {}
    ref = np.pad(x, width, mode=np_mode, **kw)
    out = run_kernel("pad", {"x": x, "pad": np.array(pads, np.int32), "mode": mode,
                             "constant_val": np.float32(1.5)})
    np.testing.assert_allclose(out, ref)


def test_pad_reflect_past_the_edge_is_an_error():
    with pytest.raises(Error, match="pad"):
        run_kernel("pad", {"x": rand((2, 3)), "pad": np.array([3, 0], np.int32), "mode": "reflect"})


@pytest.mark.parametrize("shape,reps", [((3,), [2]), ((2, 3), [1, 3]), ((2, 1, 3), [2, 2, 1])])
def test_tile(shape, reps):
    x = rand(shape)
    np.testing.assert_array_equal(run_kernel("tile", {"x": x, "reps": np.array(reps, np.int32)}),
                                  np.tile(x, reps))


def test_tile_wrong_reps_is_an_error():
    with pytest.raises(Error, match="tile"):
        run_kernel("tile", {"x": rand((2, 3)), "reps": np.array([2], np.int32)})


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.int32])
@pytest.mark.parametrize("axis,ascending", [(-1, False), (0, True), (1, False)])
def test_argsort(dtype, axis, ascending):
    x = RNG.integers(-5, 5, (3, 4, 5)).astype(dtype)  # ties: the stable order
    ref = np.argsort(x if ascending else -x, axis=axis, kind="stable")
    out = run_kernel("argsort", {"x": x, "axis": np.int32(axis), "ascending": ascending})
    np.testing.assert_array_equal(out, ref)
    assert out.dtype == np.int32


@pytest.mark.parametrize("dtype", FLOATS + [np.int32])
@pytest.mark.parametrize("k,axis,ascending", [(1, -1, False), (2, 0, True), (3, 1, False)])
def test_topk(dtype, k, axis, ascending):
    x = (rand((4, 5, 3)) * 10).astype(dtype)
    order = np.argsort(x if ascending else -x, axis=axis, kind="stable")
    idx = np.take(order, np.arange(k), axis=axis)
    values, indices = run_kernel("topk", {"x": x, "k": np.int32(k), "axis": np.int32(axis),
                                          "ascending": ascending})
    np.testing.assert_array_equal(indices, idx)
    np.testing.assert_array_equal(values, np.take_along_axis(x, idx, axis))
    assert values.dtype == dtype and indices.dtype == np.int32


def test_topk_ios16_and_17_parameters():
    x = rand((3, 6))
    (values,) = run_kernel("topk", {"x": x, "k": np.int32(2), "return_indices": False}, opset=16)
    np.testing.assert_array_equal(values, -np.sort(-x, axis=-1)[:, :2])
    _, idx = run_kernel("topk", {"x": x, "k": np.int32(2), "output_indices_dtype": "uint16"}, opset=17)
    assert idx.dtype == np.uint16
    with pytest.raises(Error, match="topk"):
        run_kernel("topk", {"x": x, "k": np.int32(7)})


@pytest.mark.parametrize("shape,axis,out", [((3,), -1, (1, 3)), ((3,), 1, (3, 1)), ((4, 3), -1, (4, 3)),
                                            ((2, 3, 2), -1, (6, 2)), ((5, 5, 2), 1, (5, 10)), ((2, 3), 0, (1, 6))])
def test_flatten2d_docstring_examples(shape, axis, out):
    x = rand(shape)
    np.testing.assert_array_equal(run_kernel("flatten2d", {"x": x, "axis": np.int32(axis)}), x.reshape(out))


def test_flatten2d_default_axis_1():
    x = rand((2, 3, 4))
    np.testing.assert_array_equal(run_kernel("flatten2d", {"x": x}), x.reshape(2, 12))


@pytest.mark.parametrize("dtype", FLOATS + [np.int32, np.bool_])
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_concat_and_stack(dtype, axis):
    a, b = rand((2, 3, 4)).astype(dtype), rand((2, 3, 4)).astype(dtype)
    out = run_kernel("concat", {"values": [a, b], "axis": np.int32(axis)})
    np.testing.assert_array_equal(out, np.concatenate([a, b], axis))
    out = run_kernel("stack", {"values": [a, b], "axis": np.int32(axis)})
    np.testing.assert_array_equal(out, np.stack([a, b], axis))
    assert out.dtype == dtype


def test_concat_interleave_docstring_example():
    in1 = np.array([[1, 2], [3, 4], [5, 6]], np.float32)
    in2 = np.array([[7, 8], [9, 10], [11, 12]], np.float32)
    out = run_kernel("concat", {"values": [in1, in2], "axis": np.int32(0), "interleave": True})
    np.testing.assert_array_equal(out, [[1, 2], [7, 8], [3, 4], [9, 10], [5, 6], [11, 12]])


def test_split():
    x = rand((2, 6, 3))
    outs = run_kernel("split", {"x": x, "num_splits": np.int32(3), "axis": np.int32(1)})
    for o, r in zip(outs, np.split(x, 3, axis=1), strict=True):
        np.testing.assert_array_equal(o, r)
    outs = run_kernel("split", {"x": x, "split_sizes": np.array([1, 5], np.int32), "axis": np.int32(-2)})
    np.testing.assert_array_equal(outs[1], x[:, 1:])
    with pytest.raises(Error, match="split"):
        run_kernel("split", {"x": x, "num_splits": np.int32(4), "axis": np.int32(1)})


def test_non_zero():
    x = RNG.integers(-1, 2, (6, 1, 7)).astype(np.float32)
    out = run_kernel("non_zero", {"x": x})
    np.testing.assert_array_equal(out, np.transpose(np.nonzero(x)))
    assert out.dtype == np.int32


def _nms_ref(boxes, scores, iou_t, score_t, max_boxes):
    """Greedy NMS on CENTER_SIZE_WIDTH_FIRST boxes, written from the docstring (one batch)."""
    cx, cy, w, h = boxes.T
    x1, x2, y1, y2 = cx - w / 2, cx + w / 2, cy - h / 2, cy + h / 2
    best = scores.max(-1)
    order = [i for i in np.argsort(-best, kind="stable") if best[i] >= score_t]
    keep = []
    for i in order:
        iw = np.maximum(0, np.minimum(x2[i], x2[keep]) - np.maximum(x1[i], x1[keep]))
        ih = np.maximum(0, np.minimum(y2[i], y2[keep]) - np.maximum(y1[i], y1[keep]))
        inter = iw * ih
        iou = inter / (w[i] * h[i] + w[keep] * h[keep] - inter)
        if not (iou > iou_t).any():
            keep.append(i)
    return (keep or [int(np.argmax(best))])[:max_boxes]


@pytest.mark.parametrize("max_boxes", [2, 8])
def test_non_maximum_suppression(max_boxes):
    boxes = np.concatenate([RNG.uniform(0, 10, (2, 6, 2)), RNG.uniform(1, 4, (2, 6, 2))], -1).astype(np.float32)
    scores = RNG.uniform(0, 1, (2, 6, 3)).astype(np.float32)
    out_b, out_s, out_i, count = run_kernel("non_maximum_suppression", {
        "boxes": boxes, "scores": scores, "iou_threshold": np.float32(0.2), "score_threshold": np.float32(0.3),
        "max_boxes": np.int32(max_boxes)}, consts=["iou_threshold", "score_threshold", "max_boxes"])
    for b in range(2):
        keep = _nms_ref(boxes[b], scores[b], 0.2, 0.3, max_boxes)
        assert count[b] == len(keep) and out_i.dtype == np.int32
        np.testing.assert_array_equal(out_i[b], keep + [-1] * (max_boxes - len(keep)))
        np.testing.assert_array_equal(out_b[b, :len(keep)], boxes[b, keep])
        np.testing.assert_array_equal(out_s[b, :len(keep)], scores[b, keep])
        assert not out_b[b, len(keep):].any()
    out = run_kernel("non_maximum_suppression", {
        "boxes": boxes.transpose(0, 2, 1), "scores": scores.transpose(0, 2, 1), "iou_threshold": np.float32(0.2),
        "max_boxes": np.int32(max_boxes)}, consts=["iou_threshold", "max_boxes"], opset=17)
    assert len(out) == 3
    keep = _nms_ref(boxes[0], scores[0], 0.2, -np.inf, max_boxes)
    np.testing.assert_array_equal(out[2][0, :len(keep)], keep)
    np.testing.assert_array_equal(out[0][0, :, :len(keep)], boxes[0, keep].T)


EXPORTS = [
    ("band_part", {"x": rand((3, 4, 5)), "lower": np.int32(1), "upper": np.int32(0)}, ["x"], 15),
    ("cumsum", {"x": rand((3, 4)), "axis": np.int32(1), "exclusive": True, "reverse": True}, ["x"], 15),
    ("fill_like", {"ref_tensor": rand((2, 3)), "value": np.float32(2)}, ["ref_tensor"], 16),
    ("one_hot", {"indices": np.array([[1, 2]], np.int32), "one_hot_vector_size": np.int32(4)}, ["indices"], 15),
    ("pad", {"x": rand((2, 3, 4)), "pad": np.array([1, 2, 0, 1], np.int32), "mode": "reflect"}, ["x"], 15),
    ("pad", {"x": rand((2, 3, 4)), "pad": np.array([1, 2, 0, 1], np.int32), "mode": "replicate"}, ["x"], 15),
    ("tile", {"x": rand((2, 3)), "reps": np.array([2, 1], np.int32)}, ["x"], 15),
    ("argsort", {"x": RNG.integers(0, 3, (3, 5)).astype(np.float32)}, ["x"], 15),
    ("topk", {"x": RNG.integers(0, 3, (3, 5)).astype(np.float32), "k": np.int32(2)}, ["x"], 15),
    ("flatten2d", {"x": rand((2, 3, 4))}, ["x"], 15),
    ("concat", {"values": [rand((2, 3)), rand((2, 3))], "axis": np.int32(0), "interleave": True}, [], 15),
    ("split", {"x": rand((4, 6)), "num_splits": np.int32(2), "axis": np.int32(1)}, ["x"], 15),
    ("non_maximum_suppression", {"boxes": np.abs(rand((1, 6, 4))), "scores": np.abs(rand((1, 6, 2))),
                                 "iou_threshold": np.float32(0.3), "score_threshold": np.float32(0.1),
                                 "max_boxes": np.int32(3)}, ["boxes", "scores"], 15),
]


@pytest.mark.parametrize("case", range(len(EXPORTS)))
def test_exports_to_onnx(case):
    assert_exports(*EXPORTS[case])


def test_nms_batch_independence_and_repeatability():
    boxes = np.concatenate([RNG.uniform(0, 10, (3, 8, 2)), RNG.uniform(1, 4, (3, 8, 2))], -1).astype(np.float32)
    scores = RNG.uniform(0, 1, (3, 8, 2)).astype(np.float32)
    params = {"iou_threshold": np.float32(0.3), "score_threshold": np.float32(0.2), "max_boxes": np.int32(4)}
    together = run_kernel("non_maximum_suppression", {"boxes": boxes, "scores": scores, **params}, consts=params)
    again = run_kernel("non_maximum_suppression", {"boxes": boxes, "scores": scores, **params}, consts=params)
    for b in range(3):
        alone = run_kernel("non_maximum_suppression", {"boxes": boxes[b:b + 1], "scores": scores[b:b + 1], **params},
                           consts=params)
        for a, t, r in zip(alone, together, again, strict=True):
            np.testing.assert_array_equal(a[0], t[b])
            np.testing.assert_array_equal(t, r)


def test_registry_covers_every_op_of_these_families_from_its_first_opset():
    """Every op coremltools registers in these families' definition modules for iOS15-iOS18 has a kernel."""
    from coremltools.converters.mil.mil.ops.registry import SSAOpRegistry

    from mlupdate.ops import OPS, supported_ops

    families = {"tensor_operation", "tensor_transformation", "scatter_gather", "image_resizing", "recurrent",
                "transformers", "quantization_ops", "constexpr_ops", "compression"}
    releases = {"iOS15": 15, "iOS16": 16, "iOS17": 17, "iOS18": 18}
    first: dict[str, int] = {}
    for name, versions in SSAOpRegistry.core_ops.items():
        for cls in versions.values():
            *_, release, module = cls.__module__.split(".")
            if module in families and release in releases:
                first[name] = min(first.get(name, 99), releases[release])
    supported_ops()
    assert len(first) == 63
    assert {name: min(OPS.get(name, {99: None})) for name in first} == first


def test_inputs_that_do_not_fit_together_fail_naming_the_op():
    with pytest.raises(Error, match=r"concat_0.*concat"):
        run_kernel("concat", {"values": [rand((2, 3)), rand((3, 4))], "axis": np.int32(0)})
    with pytest.raises(Error, match="non_maximum_suppression"):
        run_kernel("non_maximum_suppression", {"boxes": rand((1, 6, 4)), "scores": rand((1, 6, 2))},
                   consts=[])


@pytest.mark.parametrize("sort", [True, False])
def test_coremltools_topk_ios16_sort_false_keeps_the_sorted_order(sort):
    val = np.array([[-1.0, 2.0, -3.0], [4.0, -5.0, 6.0]], dtype=np.float32)
    values, indices = run_kernel("topk", {"x": val, "k": np.int32(2), "axis": np.int32(1), "sort": sort}, opset=16)
    np.testing.assert_array_equal(values, [[2.0, -1.0], [6.0, 4.0]])
    np.testing.assert_array_equal(indices, [[1, 0], [2, 0]])
