"""image_resizing ops against the definitions' grid examples, numpy and PyTorch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mlupdate.errors import Error
from tests.ops.harness import assert_exports, run_kernel

RNG = np.random.default_rng(3)

# resize_bilinear's notes: Xin = 2 (input values [0, 1] equal their positions), grid points for Xout = 5, 6.
DOC_GRIDS = {
    "UNALIGN_CORNERS": ([0., 0.1, 0.5, 0.9, 1.], [0., 0., 1 / 3, 2 / 3, 1., 1.]),
    "STRICT_ALIGN_CORNERS": ([0., 0.25, 0.5, 0.75, 1.], [0., 0.2, 0.4, 0.6, 0.8, 1.]),
    "ALIGN_CORNERS": ([0., 0.25, 0.5, 0.75, 1.], [0., 0.2, 0.4, 0.6, 0.8, 1.]),
    "DEFAULT": ([0., 0.4, 0.8, 1., 1.], [0., 1 / 3, 2 / 3, 1., 1., 1.]),
    "OFFSET_CORNERS": ([0.1, 0.3, 0.5, 0.7, 0.9], [1 / 12, 0.25, 5 / 12, 7 / 12, 0.75, 11 / 12]),
}


def rand(shape, dtype=np.float32):
    return RNG.standard_normal(shape).astype(dtype)


def np_grid(n_in, n_out, mode):
    """resize_bilinear's grid formulas, as the notes write them."""
    i = np.arange(n_out, dtype=np.float64)
    if mode in ("STRICT_ALIGN_CORNERS", "ALIGN_CORNERS"):
        g = i * (n_in - 1) / (n_out - 1) if n_out > 1 else np.array([(n_in - 1) / 2 if mode == "ALIGN_CORNERS"
                                                                     else 0.0])
    elif mode == "DEFAULT":
        g = i * n_in / n_out
    elif mode == "OFFSET_CORNERS":
        delta = max(1, n_in - 1) / n_out
        g = 0.5 * delta + i * delta
    else:
        g = i * n_in / n_out + 0.5 * n_in / n_out - 0.5
    return np.clip(g, 0, n_in - 1)


def np_linear(x, axis, g):
    lo = np.floor(g).astype(int)
    hi = np.minimum(lo + 1, x.shape[axis] - 1)
    shape = [1] * x.ndim
    shape[axis] = -1
    w = (g - lo).reshape(shape)
    return np.take(x, lo, axis) * (1 - w) + np.take(x, hi, axis) * w


@pytest.mark.parametrize("mode", list(DOC_GRIDS))
def test_resize_bilinear_docstring_grids(mode):
    x = np.array([0.0, 1.0], np.float32).reshape(1, 2, 1)
    for n_out, expect in zip((5, 6), DOC_GRIDS[mode], strict=True):
        out = run_kernel("resize_bilinear", {"x": x, "target_size_height": np.int32(n_out),
                                             "target_size_width": np.int32(1), "sampling_mode": mode})
        np.testing.assert_allclose(out.reshape(-1), expect, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("mode", list(DOC_GRIDS))
@pytest.mark.parametrize("shape,size", [((1, 3, 4, 5), (7, 3)), ((2, 6, 2), (3, 8)), ((2, 1, 1, 3, 3), (1, 1))])
def test_resize_bilinear(dtype, mode, shape, size):
    x = rand(shape, dtype)
    ref = np_linear(x.astype(np.float64), -2, np_grid(shape[-2], size[0], mode))
    ref = np_linear(ref, -1, np_grid(shape[-1], size[1], mode))
    out = run_kernel("resize_bilinear", {"x": x, "target_size_height": np.int32(size[0]),
                                         "target_size_width": np.int32(size[1]), "sampling_mode": mode})
    assert out.dtype == dtype
    np.testing.assert_allclose(out, ref, atol=1e-5 if dtype == np.float32 else 1e-2)


@pytest.mark.parametrize("align", [True, False])
@pytest.mark.parametrize("scale", [(2, 3), (1.5, 2.5)])
def test_upsample_bilinear_matches_pytorch(align, scale):
    x = rand((2, 3, 4, 5))
    ref = F.interpolate(torch.from_numpy(x), scale_factor=scale, mode="bilinear", align_corners=align,
                        recompute_scale_factor=True).numpy()
    out = run_kernel("upsample_bilinear", {"x": x, "scale_factor_height": np.float32(scale[0]),
                                           "scale_factor_width": np.float32(scale[1]), "align_corners": align})
    np.testing.assert_allclose(out, ref, atol=1e-5)


def test_upsample_bilinear_ios16_half_pixel_centers():
    x = rand((1, 2, 3, 4))
    out = run_kernel("upsample_bilinear", {"x": x, "scale_factor_height": np.int32(2),
                                           "scale_factor_width": np.int32(2), "align_corners": False,
                                           "half_pixel_centers": False}, opset=16)
    ref = np_linear(np_linear(x, -2, np_grid(3, 6, "DEFAULT")), -1, np_grid(4, 8, "DEFAULT"))
    np.testing.assert_allclose(out, ref, atol=1e-6)
    default = run_kernel("upsample_bilinear", {"x": x, "scale_factor_height": np.int32(2),
                                               "scale_factor_width": np.int32(2), "align_corners": False}, opset=16)
    ref = F.interpolate(torch.from_numpy(x), scale_factor=2, mode="bilinear", align_corners=False).numpy()
    np.testing.assert_allclose(default, ref, atol=1e-6)


def test_upsample_nearest_neighbor():
    x = np.array([1.5, 2.5, 3.5], dtype=np.float32).reshape([1, 1, 1, 3])  # coremltools' own op test
    out = run_kernel("upsample_nearest_neighbor", {"x": x, "scale_factor_height": np.int32(1),
                                                   "scale_factor_width": np.int32(2)})
    np.testing.assert_array_equal(out, np.array([1.5, 1.5, 2.5, 2.5, 3.5, 3.5]).reshape(1, 1, 1, 6))
    x = rand((2, 3, 4, 5), np.float16)
    out = run_kernel("upsample_nearest_neighbor", {"x": x, "scale_factor_height": np.float32(1.5),
                                                   "scale_factor_width": np.float32(3)})
    ref = x[..., np.floor(np.arange(6) * 4 / 6).astype(int), :][..., np.floor(np.arange(15) * 5 / 15).astype(int)]
    np.testing.assert_array_equal(out, ref)


def test_resize_nearest_neighbor_coremltools_example():
    x = np.array([0.37, 6.17], dtype=np.float32).reshape([1, 1, 2, 1])
    out = run_kernel("resize_nearest_neighbor", {"x": x, "target_size_height": np.int32(2),
                                                 "target_size_width": np.int32(3)})
    np.testing.assert_array_equal(out, np.array([0.37, 0.37, 0.37, 6.17, 6.17, 6.17], np.float32).reshape([1, 1, 2, 3]))


@pytest.mark.parametrize("interp", ["LINEAR", "NEAREST_NEIGHBOR"])
def test_resize_ios17_shapes(interp):
    x = rand((1, 2, 3, 4))
    out = run_kernel("resize", {"x": x, "shape": np.array([1, 6, 8], np.int32), "resized_dims": np.uint32(2),
                                "interpolation_mode": interp}, opset=17)
    assert out.shape == (1, 2, 6, 8)
    if interp == "LINEAR":
        ref = np_linear(np_linear(x, -2, np_grid(3, 6, "DEFAULT")), -1, np_grid(4, 8, "DEFAULT"))
        np.testing.assert_allclose(out, ref, atol=1e-6)
    else:  # grid i * in / out, nearest pixel with ties to the lower one: an exact 2x repeat
        np.testing.assert_array_equal(out, x.repeat(2, -2).repeat(2, -1))
    out = run_kernel("resize", {"x": x, "shape": np.array([1, 0, 0], np.int32), "resized_dims": np.uint32(2)},
                     opset=17)
    np.testing.assert_allclose(out, x, atol=1e-7)
    out = run_kernel("resize", {"x": x, "shape": np.array([5], np.int32), "resized_dims": np.uint32(1),
                                "sampling_mode": "STRICT_ALIGN_CORNERS"}, opset=17)
    np.testing.assert_allclose(out, np_linear(x, -1, np_grid(4, 5, "STRICT_ALIGN_CORNERS")), atol=1e-6)


def test_crop():
    x = rand((2, 3, 6, 7))
    out = run_kernel("crop", {"x": x, "crop_height": np.array([1, 2], np.int32),
                              "crop_width": np.array([0, 3], np.int32)})
    np.testing.assert_array_equal(out, x[..., 1:4, 0:4])
    with pytest.raises(Error, match="crop"):
        run_kernel("crop", {"x": x, "crop_height": np.array([5, 2], np.int32), "crop_width": np.array([0, 0],
                                                                                                      np.int32)})


def np_crop(img, box, size, pad=0.0):
    """tf.image.crop_and_resize (align corners) of one [C, H, W] image at [h0, w0, h1, w1]."""
    h0, w0, h1, w1 = box
    ys = h0 + np.arange(size[0]) * (h1 - h0) / max(size[0] - 1, 1)
    xs = w0 + np.arange(size[1]) * (w1 - w0) / max(size[1] - 1, 1)
    out = np_linear(np_linear(img, 1, np.clip(ys, 0, img.shape[1] - 1)), 2, np.clip(xs, 0, img.shape[2] - 1))
    inside = ((ys >= 0) & (ys <= img.shape[1] - 1))[:, None] & ((xs >= 0) & (xs <= img.shape[2] - 1))[None, :]
    return np.where(inside, out, pad)


def test_crop_resize_ios15_every_image_and_indexed():
    x = rand((2, 3, 8, 9))
    boxes = np.array([[1, 2, 6, 7], [0, 0, 7, 8]], np.float32)
    common = {"target_height": np.int32(4), "target_width": np.int32(3), "sampling_mode": "STRICT_ALIGN_CORNERS"}
    out = run_kernel("crop_resize", {"x": x, "roi": boxes.reshape(2, 1, 4, 1, 1), **common}, consts=[
        *common, "roi"])
    assert out.shape == (2, 2, 3, 4, 3)
    for n in range(2):
        for b in range(2):
            np.testing.assert_allclose(out[n, b], np_crop(x[b], boxes[n], (4, 3)), atol=1e-5)
    roi = np.array([[1, 1, 2, 6, 7], [0, 0, 0, 7, 8]], np.float32).reshape(2, 1, 5, 1, 1)
    out = run_kernel("crop_resize", {"x": x, "roi": roi, **common}, consts=[*common, "roi"])
    np.testing.assert_allclose(out[0, 0], np_crop(x[1], boxes[0], (4, 3)), atol=1e-5)
    np.testing.assert_allclose(out[1, 0], np_crop(x[0], boxes[1], (4, 3)), atol=1e-5)


def test_crop_resize_ios17_boxes_pad_and_normalized():
    x = rand((2, 3, 5, 5))
    boxes = np.array([[-0.25, 0.5, 0.75, 1.25], [0.25, 0.0, 0.5, 1.0]], np.float32)  # [w0, h0, w1, h1]
    out = run_kernel("crop_resize", {"x": x, "boxes": boxes, "box_indices": np.array([1, 0], np.int32),
                                     "target_height": np.int32(3), "target_width": np.int32(4),
                                     "normalized_coordinates": True, "box_coordinate_mode": "CORNERS_WIDTH_FIRST",
                                     "sampling_mode": "STRICT_ALIGN_CORNERS", "pad_value": np.float32(-7)},
                     opset=17, consts=["target_height", "target_width", "normalized_coordinates", "pad_value",
                                       "box_coordinate_mode", "sampling_mode"])
    for k, b in enumerate([1, 0]):
        w0, h0, w1, h1 = boxes[k] * 4
        np.testing.assert_allclose(out[k], np_crop(x[b], [h0, w0, h1, w1], (3, 4), pad=-7), atol=1e-5)


@pytest.mark.parametrize("padding,align", [("constant", True), ("constant", False), ("border", False),
                                           ("reflection", True), ("symmetric", False)])
@pytest.mark.parametrize("sampling", ["bilinear", "nearest"])
def test_resample_matches_pytorch_grid_sample(padding, align, sampling):
    x = rand((2, 3, 5, 6))
    coords = RNG.uniform(-1.6, 1.6, (2, 4, 7, 2)).astype(np.float32)
    torch_pad = {"constant": "zeros", "border": "border", "reflection": "reflection", "symmetric": "reflection"}
    ref = F.grid_sample(torch.from_numpy(x), torch.from_numpy(coords), mode=sampling, padding_mode=torch_pad[padding],
                        align_corners=align).numpy()
    params = {"sampling_mode": sampling, "padding_mode": padding, "padding_value": np.float32(0),
              "coordinates_mode": "normalized_minus_one_to_one", "align_corners": align}
    out = run_kernel("resample", {"x": x, "coordinates": coords, **params}, consts=list(params))
    np.testing.assert_allclose(out, ref, atol=1e-5)
    unnorm = (coords + 1) / 2 * np.array([5, 4], np.float32)  # pixel-centre coordinates of align_corners=True
    out = run_kernel("resample", {"x": x, "coordinates": unnorm, **params, "coordinates_mode": "unnormalized"},
                     consts=list(params))
    ref = F.grid_sample(torch.from_numpy(x), torch.from_numpy(coords), mode=sampling, padding_mode=torch_pad[padding],
                        align_corners=True).numpy() if padding != "symmetric" else None
    if ref is not None:
        np.testing.assert_allclose(out, ref, atol=1e-4)


def test_resample_constant_padding_value():
    x = np.ones((1, 1, 2, 2), np.float32)
    coords = np.array([[[[0.0, 0.0], [5.0, 5.0]]]], np.float32)
    params = {"sampling_mode": "bilinear", "padding_mode": "constant", "padding_value": np.float32(3),
              "coordinates_mode": "unnormalized", "align_corners": True}
    out = run_kernel("resample", {"x": x, "coordinates": coords, **params}, consts=list(params))
    np.testing.assert_allclose(out.reshape(-1), [1.0, 3.0])


def test_affine_identity_and_shift():
    x = rand((2, 3, 4, 5))
    params = {"output_height": np.int32(4), "output_width": np.int32(5), "sampling_mode": "bilinear",
              "padding_mode": "constant", "padding_value": np.float32(0),
              "coordinates_mode": "normalized_minus_one_to_one", "align_corners": True}
    eye = np.array([[1, 0, 0, 0, 1, 0]], np.float32)
    out = run_kernel("affine", {"x": x, "transform_matrix": eye, **params}, consts=list(params))
    np.testing.assert_allclose(out, x, atol=1e-5)
    shift = np.array([[1, 0, 0.5, 0, 1, 0], [-1, 0, 0, 0, 1, 0]], np.float32)  # x' = x + 0.5 (one pixel); mirror
    out = run_kernel("affine", {"x": x, "transform_matrix": shift, **params}, consts=list(params))
    np.testing.assert_allclose(out[0, ..., :4], x[0, ..., 1:], atol=1e-5)
    np.testing.assert_allclose(out[0, ..., 4], 0, atol=1e-6)
    np.testing.assert_allclose(out[1], x[1, ..., ::-1], atol=1e-5)


EXPORTS = [
    ("upsample_nearest_neighbor", {"x": rand((1, 2, 3, 4)), "scale_factor_height": np.float32(2),
                                   "scale_factor_width": np.float32(1.5)}, ["x"], 15),
    ("upsample_bilinear", {"x": rand((1, 2, 3, 4)), "scale_factor_height": np.float32(2),
                           "scale_factor_width": np.float32(2), "align_corners": False}, ["x"], 15),
    ("resize_bilinear", {"x": rand((1, 2, 3, 4)), "target_size_height": np.int32(5),
                         "target_size_width": np.int32(7), "sampling_mode": "OFFSET_CORNERS"}, ["x"], 15),
    ("resize", {"x": rand((1, 2, 3, 4)), "shape": np.array([5, 7], np.int32), "resized_dims": np.uint32(2)},
     ["x"], 17),
    ("crop", {"x": rand((1, 2, 5, 6)), "crop_height": np.array([1, 1], np.int32),
              "crop_width": np.array([2, 0], np.int32)}, ["x"], 15),
    ("crop_resize", {"x": rand((2, 3, 6, 6)), "roi": np.array([1, 1, 4, 5, 1, 0, 0, 5, 5, 0], np.float32).reshape(
        2, 1, 5, 1, 1), "target_height": np.int32(3), "target_width": np.int32(3)}, ["x", "roi"], 15),
    ("crop_resize", {"x": rand((2, 3, 6, 6)), "boxes": np.array([[1, 1, 4, 5], [0, 0, 5, 5]], np.float32),
                     "box_indices": np.array([1, 0], np.int32), "target_height": np.int32(3),
                     "target_width": np.int32(3), "pad_value": np.float32(1)}, ["x", "boxes", "box_indices"], 17),
    ("resample", {"x": rand((1, 2, 4, 5)), "coordinates": rand((1, 3, 3, 2)), "sampling_mode": "bilinear",
                  "padding_mode": "symmetric", "padding_value": np.float32(0),
                  "coordinates_mode": "normalized_minus_one_to_one", "align_corners": False}, ["x", "coordinates"], 15),
    ("affine", {"x": rand((1, 2, 4, 5)), "transform_matrix": np.array([[1, 0.1, 0, 0, 1, 0.2]], np.float32),
                "output_height": np.int32(3), "output_width": np.int32(3), "sampling_mode": "bilinear",
                "padding_mode": "constant", "padding_value": np.float32(0),
                "coordinates_mode": "normalized_minus_one_to_one", "align_corners": True},
     ["x", "transform_matrix"], 15),
]


@pytest.mark.parametrize("case", range(len(EXPORTS)))
def test_exports_to_onnx(case):
    assert_exports(*EXPORTS[case])


def test_crop_resize_and_resample_batch_independence():
    x = rand((3, 2, 6, 7))
    boxes = np.array([[0, 0, 5, 6], [1, 2, 4, 4], [0.5, 1, 3, 6]], np.float32)
    params = {"target_height": np.int32(3), "target_width": np.int32(4)}
    together = run_kernel("crop_resize", {"x": x, "boxes": boxes, **params}, consts=params, opset=17)
    coords = RNG.uniform(-1, 1, (3, 4, 5, 2)).astype(np.float32)
    rs = {"sampling_mode": "bilinear", "padding_mode": "border", "padding_value": np.float32(0),
          "coordinates_mode": "normalized_minus_one_to_one", "align_corners": False}
    resampled = run_kernel("resample", {"x": x, "coordinates": coords, **rs}, consts=rs)
    for b in range(3):
        alone = run_kernel("crop_resize", {"x": x[b:b + 1], "boxes": boxes[b:b + 1], **params}, consts=params,
                           opset=17)
        np.testing.assert_array_equal(alone[0], together[b])
        alone = run_kernel("resample", {"x": x[b:b + 1], "coordinates": coords[b:b + 1], **rs}, consts=rs)
        np.testing.assert_allclose(alone[0], resampled[b], atol=1e-6)


# --- coremltools' own op tests' expected values (they run against Core ML; none of these is marked xfail) ---

def test_coremltools_upsample_nearest_fractional_scales():
    x = np.array([1.5, -2.5, 3.5], dtype=np.float32).reshape([1, 1, 1, 3])
    out = run_kernel("upsample_nearest_neighbor", {"x": x, "scale_factor_height": np.float32(3.17),
                                                   "scale_factor_width": np.float32(0.67)})
    np.testing.assert_array_equal(out, np.array([1.5, -2.5] * 3, np.float32).reshape([1, 1, 3, 2]))
    out = run_kernel("upsample_nearest_neighbor", {"x": x, "scale_factor_height": np.float32(2.0),
                                                   "scale_factor_width": np.float32(1.12)})
    np.testing.assert_array_equal(out, np.array([1.5, -2.5, 3.5] * 2, np.float32).reshape([1, 1, 2, 3]))


def test_coremltools_resize_ios17():
    x = np.array([-6.174, 9.371], dtype=np.float32).reshape([1, 1, 1, 2, 1])
    out = run_kernel("resize", {"x": x, "shape": np.array([1, 1, 3, 2], np.int32), "resized_dims": np.uint32(2),
                                "interpolation_mode": "NEAREST_NEIGHBOR"}, opset=17)
    np.testing.assert_array_equal(out, np.array([-6.174, -6.174, 9.371, 9.371, 9.371, 9.371],
                                                np.float32).reshape([1, 1, 1, 3, 2]))
    x = np.array([0, 1], dtype=np.float32).reshape([1, 1, 2])
    out = run_kernel("resize", {"x": x, "shape": np.array([1, 1, 5], np.int32), "resized_dims": np.uint32(1)},
                     opset=17)
    np.testing.assert_allclose(out, np.array([0, 0.4, 0.8, 1, 1], np.float32).reshape([1, 1, 5]), atol=1e-6)


ROI_X = np.arange(1, 17, dtype=np.float32).reshape(1, 1, 4, 4)


@pytest.mark.parametrize("roi,size,expect", [
    ([1, 1, 2, 2], 2, [6, 7, 10, 11]),
    ([1, 1, 2, 2], 4, [6, 6.333333, 6.666666, 7, 7.333333, 7.666666, 8, 8.333333, 8.666666, 9, 9.333333,
                       9.666666, 10, 10.333333, 10.666666, 11]),
    ([1, 1, 2, 2], 1, [8.5]),
    ([0, 0.0, 0.0, 1.0 / 3, 1.0 / 3], 2, [1, 2, 5, 6]),
    ([2, 2, 1, 1], 2, [11, 10, 7, 6]),
])
def test_coremltools_crop_resize(roi, size, expect):
    params = {"target_height": np.int32(size), "target_width": np.int32(size), "sampling_mode": "ALIGN_CORNERS",
              "normalized_coordinates": len(roi) == 5}
    out = run_kernel("crop_resize", {"x": ROI_X, "roi": np.array(roi, np.float32).reshape(1, 1, -1, 1, 1),
                                     **params}, consts=[*params, "roi"])
    np.testing.assert_allclose(out.reshape(-1), expect, rtol=1e-5)


def test_coremltools_crop_resize_ios17_pad_value():
    boxes = np.array([[0.1, 0.3, 1.3, 1.0], [0.5, 1.8, 1.0, 0.3], [0.0, 0.4, 0.6, 0.7]], np.float32)
    params = {"target_height": np.int32(2), "target_width": np.int32(2), "sampling_mode": "ALIGN_CORNERS",
              "normalized_coordinates": True, "pad_value": np.float32(10)}
    out = run_kernel("crop_resize", {"x": ROI_X, "boxes": boxes, "box_indices": np.zeros(3, np.int32), **params},
                     consts=[*params, "boxes", "box_indices"], opset=17)
    np.testing.assert_allclose(out.reshape(-1), [3.1, 5.2, 10.0, 10.0, 10.0, 7.899, 10.0, 13.9, 2.2, 3.1, 9.4, 10.3],
                               atol=1e-3)



RS_X = np.array([11.0, 22.0, 33.0, 44.0], dtype=np.float32).reshape([1, 1, 2, 2])
RS_COORDS = np.array([-1.0, -2.0, -3.7, -1.0, 0.0, 0.0, 3.5, 1.2], dtype=np.float32).reshape([1, 2, 2, 2])


@pytest.mark.parametrize("params,expect", [
    (("bilinear", "constant", 6.17, "normalized_minus_one_to_one", True), [8.585, 6.17, 27.5, 6.17]),
    (("nearest", "border", -1.0, "unnormalized", False), [11.0, 11.0, 11.0, 44.0]),
    (("bilinear", "reflection", -1.0, "normalized_zero_to_one", True), [22.0, 36.3, 11.0, 34.1]),
    (("nearest", "symmetric", -1.0, "normalized_zero_to_one", False), [22.0, 33.0, 11.0, 33.0]),
])
def test_coremltools_resample(params, expect):
    names = ("sampling_mode", "padding_mode", "padding_value", "coordinates_mode", "align_corners")
    p = dict(zip(names, params, strict=True))
    p["padding_value"] = np.float32(p["padding_value"])
    out = run_kernel("resample", {"x": RS_X, "coordinates": RS_COORDS, **p}, consts=list(p))
    np.testing.assert_allclose(out.reshape(-1), expect, rtol=1e-4)


@pytest.mark.parametrize("size,expect", [
    ((3, 3), [10.752501, 2.5025, 0.0, 1.9799997, 0.0, 0.0, 0.0, 0.0, 0.0]),
    ((2, 5), [10.752501, 5.94, 2.5025, 0.44000006, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]),
])
def test_coremltools_affine(size, expect):
    p = {"output_height": np.int32(size[0]), "output_width": np.int32(size[1]), "sampling_mode": "bilinear",
         "padding_mode": "constant", "padding_value": np.float32(0), "coordinates_mode": "normalized_minus_one_to_one",
         "align_corners": True}
    matrix = np.array([-1.0, -2.0, -3.7, -1.0, 3.5, 1.2], dtype=np.float32).reshape([1, 6])
    out = run_kernel("affine", {"x": RS_X, "transform_matrix": matrix, **p}, consts=list(p))
    np.testing.assert_allclose(out.reshape(-1), expect, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("align,half,expect", [
    (True, False, [1.0, 1.2, 1.4, 1.6, 1.8, 2.0]),
    (False, True, [1.0, 1.0, 1.33334, 1.66667, 2.0, 2.0]),
    (False, None, [1.0, 1.0, 1.33334, 1.66667, 2.0, 2.0]),
    (False, False, [1.0, 1.33334, 1.66667, 2.0, 2.0, 2.0]),
])
def test_coremltools_upsample_bilinear(align, half, expect):
    x = np.array([1, 2], dtype=np.float32).reshape(1, 1, 1, 2)
    p = {"scale_factor_height": np.int32(2), "scale_factor_width": np.int32(3), "align_corners": align}
    if half is not None:
        p["half_pixel_centers"] = half
    np.testing.assert_allclose(run_kernel("upsample_bilinear", {"x": x, **p}, opset=16).reshape(-1), expect * 2,
                               rtol=1e-5)
    x = np.array([0, 1], dtype=np.float32).reshape(1, 1, 2)
    out = run_kernel("upsample_bilinear", {"x": x, "scale_factor_height": np.float32(1.0),
                                           "scale_factor_width": np.float32(2.6), "align_corners": False})
    np.testing.assert_allclose(out.reshape(-1), [0, 0.1, 0.5, 0.9, 1], atol=1e-6)
