"""NonMaximumSuppression and cropResize against numpy references written from NeuralNetwork.proto.

NMS: a greedy loop over the boxes by decreasing score (a box's score is its largest class score),
rejecting scores below the score threshold and any box whose IoU with a kept box (of its own
class with perClassSuppression) is above the IoU threshold; boxes are [x_center, y_center, width,
height]; outputs padded with 0 (boxes, scores) and -1 (indices); no survivor gives the top box.
cropResize: each box's grid is numpy.linspace as the SamplingMode comments say, over the box's
interval, sampled by separable linear interpolation (numpy.interp).
"""

from __future__ import annotations

import numpy as np
import pytest

import mlupdate
from tests.unit.test_layers_base import Case, builder, case_test, rand, save

# -- NonMaximumSuppression -----------------------------------------------------------------------------


def np_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two [x_center, y_center, width, height] boxes."""
    ax0, ax1, ay0, ay1 = a[0] - a[2] / 2, a[0] + a[2] / 2, a[1] - a[3] / 2, a[1] + a[3] / 2
    bx0, bx1, by0, by1 = b[0] - b[2] / 2, b[0] + b[2] / 2, b[1] - b[3] / 2, b[1] + b[3] / 2
    iw = max(0.0, min(ax1, bx1) - max(ax0, bx0))
    ih = max(0.0, min(ay1, by1) - max(ay0, by0))
    inter = iw * ih
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def np_nms(boxes, scores, iou_t, score_t, max_boxes, per_class):
    """Greedy NMS of every batch row: the four outputs of the layer."""
    nb, _, c = scores.shape
    out_b = np.zeros((nb, max_boxes, 4), np.float32)
    out_s = np.zeros((nb, max_boxes, c), np.float32)
    out_i = -np.ones((nb, max_boxes), np.float32)
    count = np.zeros(nb, np.float32)
    for b in range(nb):
        best, cls = scores[b].max(axis=-1), scores[b].argmax(axis=-1)
        kept: list[int] = []
        for i in np.argsort(-best, kind="stable"):
            if best[i] < score_t or len(kept) == max_boxes:
                continue
            if all(not (np_iou(boxes[b, i], boxes[b, j]) > iou_t and (not per_class or cls[i] == cls[j]))
                   for j in kept):
                kept.append(int(i))
        if not kept:
            kept = [int(np.argmax(best))]
        k = len(kept)
        out_b[b, :k], out_s[b, :k], out_i[b, :k], count[b] = boxes[b, kept], scores[b, kept], kept, k
    return out_b, out_s, out_i, count


def make_boxes(nb: int, n: int, seed: int) -> np.ndarray:
    """Boxes clustered so that many overlap: centers in [0, 6], sizes in [1, 4]."""
    rng = np.random.default_rng(seed)
    centers = rng.uniform(0, 6, (nb, n, 2))
    sizes = rng.uniform(1, 4, (nb, n, 2))
    return np.concatenate([centers, sizes], axis=-1).astype(np.float32)


NMS_OUT = ("sel_boxes", "sel_scores", "sel_ids", "count")


def _nms_case(cid, nb, n, c, iou_t, score_t, m, per_class, seed, dynamic=(), executors=("torch", "onnxruntime")):
    inputs = {"boxes": make_boxes(nb, n, seed), "scores": rand(nb, n, c, seed=seed + 1, low=0.0, high=1.0)}
    values = {"iou": iou_t, "score": score_t, "max_boxes": m}
    names = ["boxes", "scores"]
    for name in ("iou", "score", "max_boxes")[: len(dynamic)]:
        inputs[name] = np.array([values[name]], np.float32)
        names.append(name)
    params = {"iou_threshold": 0.99 if dynamic else iou_t, "score_threshold": 0.99 if dynamic else score_t,
              "max_boxes": 1 if len(dynamic) == 3 else m, "per_class_suppression": per_class}

    def add(b):
        b.add_nms("nms", names, list(NMS_OUT), **params)

    def reference(boxes, scores, *extra):
        got = dict(zip(("iou", "score", "max_boxes"), (float(e[0]) for e in extra), strict=False))
        return np_nms(boxes, scores, got.get("iou", iou_t), got.get("score", score_t),
                      int(got.get("max_boxes", m)), per_class)

    return Case(cid, add, inputs, reference, nd=True, outputs=NMS_OUT, executors=executors)


NMS_CASES = [
    _nms_case("nms_one_class", 1, 8, 1, 0.3, 0.2, 5, False, 0),
    _nms_case("nms_classes_across", 2, 12, 3, 0.25, 0.1, 6, False, 10),
    _nms_case("nms_classes_per_class", 2, 12, 3, 0.25, 0.1, 6, True, 10),
    _nms_case("nms_padded_output", 1, 6, 2, 0.05, 0.0, 10, False, 20),
    _nms_case("nms_no_survivor_gives_top_box", 2, 5, 2, 0.5, 2.0, 3, False, 30),
    _nms_case("nms_threshold_inputs", 1, 10, 2, 0.2, 0.3, 4, True, 40, dynamic=("iou", "score")),
    _nms_case("nms_max_boxes_input", 1, 10, 1, 0.4, 0.1, 3, False, 50, dynamic=("iou", "score", "max_boxes"),
              executors=("torch",)),
]


def test_nms_reference_keeps_in_score_order_and_suppresses_overlaps():
    boxes = np.array([[[0, 0, 2, 2], [0.1, 0, 2, 2], [5, 5, 1, 1], [0, 0.2, 2, 2]]], np.float32)
    scores = np.array([[[0.9], [0.95], [0.5], [0.1]]], np.float32)
    b, s, i, n = np_nms(boxes, scores, 0.5, 0.2, 3, False)
    np.testing.assert_array_equal(i, [[1, 2, -1]])
    np.testing.assert_array_equal(n, [2])
    np.testing.assert_array_equal(b[0, 2], 0)


def test_nms_max_boxes_input_sets_the_output_length(tmp_path):
    case = NMS_CASES[-1]
    model = mlupdate.load(save(case.builder(), tmp_path))
    for m in (1, 2, 7):
        x = {**case.inputs, "max_boxes": np.array([m], np.float32)}
        out = model.predict(x)
        assert np.asarray(out["sel_ids"]).shape == (1, m)


def test_nms_in_a_legacy_network_is_a_spec_error(tmp_path):
    b = builder([("boxes", (4,)), ("scores", (1,))], NMS_OUT)
    b.add_nms("nms", ["boxes", "scores"], list(NMS_OUT), max_boxes=2)
    with pytest.raises(mlupdate.SpecError, match="ND array mapping"):
        mlupdate.load(save(b, tmp_path))


# -- cropResize ------------------------------------------------------------------------------------------

MODES = ("STRICT_ALIGN_ENDPOINTS_MODE", "ALIGN_ENDPOINTS_MODE", "UPSAMPLE_MODE", "ROI_ALIGN_MODE")
BOX_MODES = ("CORNERS_HEIGHT_FIRST", "CORNERS_WIDTH_FIRST", "CENTER_SIZE_HEIGHT_FIRST", "CENTER_SIZE_WIDTH_FIRST")


def np_grid(start: float, end: float, n: int, mode: str) -> np.ndarray:
    """The SamplingMode grid over [start, end] (the proto's [0, X - 1] shifted by start)."""
    x_minus_1 = end - start
    x = x_minus_1 + 1
    if mode == "STRICT_ALIGN_ENDPOINTS_MODE" or (mode == "ALIGN_ENDPOINTS_MODE" and n > 1):
        return np.linspace(start, end, n)
    if mode == "ALIGN_ENDPOINTS_MODE":
        return np.array([start + x_minus_1 / 2])
    if mode == "UPSAMPLE_MODE":
        return start + np.minimum(x_minus_1, np.linspace(0, x - x / n, n))
    spacing = max(1.0, x_minus_1) / n
    return start + np.minimum(x_minus_1, np.linspace(0.5 * spacing, 0.5 * spacing + (n - 1) * spacing, n))


def np_interp2(img: np.ndarray, gh: np.ndarray, gw: np.ndarray) -> np.ndarray:
    """Bilinear samples of ``img [C, H, W]`` at ``gh x gw``, positions clamped to the image."""
    gh, gw = np.clip(gh, 0, img.shape[-2] - 1), np.clip(gw, 0, img.shape[-1] - 1)
    rows = np.apply_along_axis(lambda v: np.interp(gh, np.arange(v.size), v), -2, img)
    return np.apply_along_axis(lambda v: np.interp(gw, np.arange(v.size), v), -1, rows)


def np_crop(img, box, size, mode, box_mode, normalized, scale):
    """One box [4] of ``img [C, H, W]`` resized to ``size``."""
    h, w = img.shape[-2:]
    a, b, c, d = (float(v) for v in box)
    edges = {"CORNERS_HEIGHT_FIRST": (a, b, c, d), "CORNERS_WIDTH_FIRST": (b, a, d, c),
             "CENTER_SIZE_HEIGHT_FIRST": (a - c / 2, b - d / 2, a + c / 2, b + d / 2),
             "CENTER_SIZE_WIDTH_FIRST": (b - d / 2, a - c / 2, b + d / 2, a + c / 2)}[box_mode]
    sh, sw = (scale * (h - 1), scale * (w - 1)) if normalized else (scale, scale)
    h0, w0, h1, w1 = edges[0] * sh, edges[1] * sw, edges[2] * sh, edges[3] * sw
    return np_interp2(img, np_grid(h0, h1, size[0], mode), np_grid(w0, w1, size[1], mode))


def crop_reference(size, mode, box_mode, normalized, scale, nd):
    """Reference for an image ``[1, B, C, H, W]`` (ND) or ``[C, H, W]`` (legacy), boxes ``[R, 1, K, 1, 1]``/``[K]``."""

    def ref(x, roi):
        imgs = x.reshape(-1, *x.shape[-3:])  # [B, C, H, W]
        boxes = roi.reshape(-1, roi.shape[-3] if roi.ndim == 5 else roi.shape[-1])  # [R, K]
        out = []
        for box in boxes:
            if box.size == 5:
                out.append([np_crop(imgs[int(np.round(box[0]))], box[1:], size, mode, box_mode, normalized, scale)])
            else:
                out.append([np_crop(img, box, size, mode, box_mode, normalized, scale) for img in imgs])
        res = np.asarray(out, np.float32)  # [R, B or 1, C, Ho, Wo]
        if nd:
            return res
        return res[0, 0] if roi.ndim == 1 else res

    return ref


def _crop_case(cid, x, roi, size, mode="STRICT_ALIGN_ENDPOINTS_MODE", box_mode="CORNERS_HEIGHT_FIRST",
               normalized=False, scale=1.0, nd=True, batch=2):
    def add(b):
        b.add_crop_resize("crop", ["x", "roi"], "out", size[0], size[1], mode, normalized, box_mode, scale)

    return Case(cid, add, {"x": x, "roi": roi}, crop_reference(size, mode, box_mode, normalized, scale, nd),
                nd=nd, batch=batch, atol=1e-4)


IMG_ND = rand(1, 2, 3, 8, 9, seed=1)
IMG_LEGACY = rand(2, 8, 9, seed=2)
# center-size boxes stay inside the 8 x 9 image whatever order the harness shuffles their values into
CENTER = np.array([3.0, 4.0, 2.0, 2.5], np.float32)
CENTERS3 = np.array([[3.0, 4.0, 2.0, 2.5], [3.5, 2.0, 3.0, 4.0], [2.5, 3.0, 2.0, 3.5]], np.float32)
CORNERS3 = np.array([[1.0, 0.5, 6.0, 7.5], [0.0, 2.0, 3.5, 8.0], [2.2, 1.1, 4.4, 3.3]], np.float32)
# normalized boxes with an image index: every value rounds to a valid index of a 2-image batch
INDEXED = np.array([[1.0, 0.1, 0.2, 0.9, 0.7], [0.0, 0.3, 0.05, 0.8, 0.95]], np.float32)
INDEXED_LEGACY = np.array([0.0, 0.1, 0.05, 0.45, 0.4], np.float32)  # every value rounds to 0


def _rois(a: np.ndarray) -> np.ndarray:
    return a.reshape(a.shape[0], 1, a.shape[1], 1, 1)


CROP_CASES = [
    _crop_case("crop_resize_nd_corners_strict", IMG_ND, _rois(CORNERS3), (4, 5)),
    *[_crop_case(f"crop_resize_nd_{m.lower()}_{bm.lower()}", IMG_ND, _rois(CENTERS3), (3, 4), m, bm)
      for m in MODES for bm in BOX_MODES[2:]],
    _crop_case("crop_resize_nd_align_one_point", IMG_ND, _rois(CORNERS3), (1, 1), "ALIGN_ENDPOINTS_MODE",
               "CORNERS_WIDTH_FIRST"),
    _crop_case("crop_resize_nd_strict_one_point", IMG_ND, _rois(CORNERS3), (1, 3), "STRICT_ALIGN_ENDPOINTS_MODE",
               "CORNERS_WIDTH_FIRST"),
    _crop_case("crop_resize_nd_indexed_normalized", IMG_ND, _rois(INDEXED), (3, 3), normalized=True),
    _crop_case("crop_resize_nd_roi_align_scale", IMG_ND, _rois(CENTERS3 * 2), (2, 2), "ROI_ALIGN_MODE",
               "CENTER_SIZE_HEIGHT_FIRST", scale=0.5),
    _crop_case("crop_resize_legacy_one_box", IMG_LEGACY, CENTER, (5, 3), "UPSAMPLE_MODE",
               "CENTER_SIZE_WIDTH_FIRST", nd=False),
    _crop_case("crop_resize_legacy_boxes", IMG_LEGACY, _rois(CORNERS3), (3, 6), nd=False),
    _crop_case("crop_resize_legacy_indexed", IMG_LEGACY, INDEXED_LEGACY, (4, 4), "ALIGN_ENDPOINTS_MODE",
               normalized=True, nd=False),
]


def test_crop_reference_grids_follow_the_proto_examples():
    # ALIGN_ENDPOINTS with one point samples the middle; STRICT samples the start
    np.testing.assert_allclose(np_grid(2.0, 6.0, 1, "ALIGN_ENDPOINTS_MODE"), [4.0])
    np.testing.assert_allclose(np_grid(2.0, 6.0, 1, "STRICT_ALIGN_ENDPOINTS_MODE"), [2.0])
    np.testing.assert_allclose(np_grid(0.0, 1.0, 5, "UPSAMPLE_MODE"), [0, 0.4, 0.8, 1, 1])
    np.testing.assert_allclose(np_grid(0.0, 1.0, 5, "ROI_ALIGN_MODE"), [0.1, 0.3, 0.5, 0.7, 0.9])


@pytest.mark.parametrize("executor", ["torch", "onnxruntime"])
def test_crop_of_the_whole_image_is_torch_align_corners_resize(tmp_path, executor):
    import torch
    import torch.nn.functional as F

    b = builder([("x", (1, 2, 3, 8, 9)), ("roi", (1, 1, 4, 1, 1))], ("out",), nd=True)
    b.add_crop_resize("crop", ["x", "roi"], "out", 5, 13, "STRICT_ALIGN_ENDPOINTS_MODE", True)
    model = mlupdate.load(save(b, tmp_path), executor=executor)
    out = model.predict({"x": IMG_ND, "roi": np.array([0, 0, 1, 1], np.float32).reshape(1, 1, 4, 1, 1)})["out"]
    want = F.interpolate(torch.from_numpy(IMG_ND[0]), size=(5, 13), mode="bilinear", align_corners=True).numpy()
    np.testing.assert_allclose(out, want[None], atol=1e-5)


def test_crop_box_index_out_of_range_names_the_layer(tmp_path):
    b = builder([("x", (1, 2, 3, 8, 9)), ("roi", (1, 1, 5, 1, 1))], ("out",), nd=True)
    b.add_crop_resize("crop", ["x", "roi"], "out", 2, 2)
    model = mlupdate.load(save(b, tmp_path), executor="torch")
    with pytest.raises(mlupdate.LayerError, match="'crop'"):
        model.predict({"x": IMG_ND, "roi": np.array([2, 0, 0, 3, 3], np.float32).reshape(1, 1, 5, 1, 1)})


def test_crop_target_size_must_be_positive(tmp_path):
    b = builder([("x", (2, 8, 9)), ("roi", (4,))], ("out",))
    b.add_crop_resize("crop", ["x", "roi"], "out", 0, 2)
    with pytest.raises(mlupdate.SpecError, match="targetSize"):
        mlupdate.load(save(b, tmp_path))


CASES = NMS_CASES + CROP_CASES
test_cases = case_test(CASES)

REFERENCE = "numpy greedy NMS and bilinear crop-and-resize written from the proto's comments"
