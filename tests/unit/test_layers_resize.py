"""upsample, resizeBilinear, crop, padding, constantPad and reorganizeData."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests.unit.test_layers_base import EXECUTORS, check_layer, rand

X = rand(2, 4, 5, seed=7)


def np_bilinear(x: np.ndarray, gh: np.ndarray, gw: np.ndarray) -> np.ndarray:
    """Separable linear interpolation at grid positions (clamped to the input), with np.interp."""
    gh = np.clip(gh, 0, x.shape[-2] - 1)
    gw = np.clip(gw, 0, x.shape[-1] - 1)
    rows = np.apply_along_axis(lambda v: np.interp(gh, np.arange(len(v)), v), -2, x)
    return np.apply_along_axis(lambda v: np.interp(gw, np.arange(len(v)), v), -1, rows).astype(np.float32)


def _interp(x, size, align):
    return F.interpolate(torch.from_numpy(x)[None], size=size, mode="bilinear", align_corners=align)[0].numpy()


def _default_grid(n_in, n_out):  # LinearUpsampleMode DEFAULT, from the builder's documentation
    return np.arange(n_out) * ((n_in - n_in / n_out) / (n_out - 1))


UPSAMPLE = {
    "nn_2x3": ((2, 3), "NN", "DEFAULT", lambda x: x.repeat(2, axis=1).repeat(3, axis=2)),
    "bilinear_default": ((2, 3), "BILINEAR", "DEFAULT",
                         lambda x: np_bilinear(x, _default_grid(4, 8), _default_grid(5, 15))),
    "bilinear_align_true": ((2, 2), "BILINEAR", "ALIGN_CORNERS_TRUE", lambda x: _interp(x, (8, 10), True)),
    "bilinear_align_false": ((3, 2), "BILINEAR", "ALIGN_CORNERS_FALSE", lambda x: _interp(x, (12, 10), False)),
    "fractional_true": ((1.5, 2.5), "BILINEAR", "ALIGN_CORNERS_TRUE", lambda x: _interp(x, (6, 12), True)),
    "fractional_false": ((1.75, 1.5), "BILINEAR", "ALIGN_CORNERS_FALSE", lambda x: _interp(x, (7, 7), False)),
}


@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize("case", list(UPSAMPLE))
def test_upsample(tmp_path, executor, case):
    (fh, fw), mode, lin, ref = UPSAMPLE[case]
    check_layer(tmp_path, executor,
                lambda b: b.add_upsample("up", fh, fw, "x", "out", mode=mode, linear_upsample_mode=lin),
                {"x": X}, ref)


def _roi_grid(n_in, n_out):
    spacing = max(1, n_in - 1) / n_out
    return 0.5 * spacing + np.arange(n_out) * spacing


RESIZE = {
    "STRICT_ALIGN_ENDPOINTS_MODE": ((7, 3), lambda x: _interp(x, (7, 3), True)),
    "ALIGN_ENDPOINTS_MODE": ((1, 8), lambda x: np_bilinear(x, np.array([1.5]), np.linspace(0, 4, 8))),
    "UPSAMPLE_MODE": ((6, 9), lambda x: np_bilinear(x, np.linspace(0, 4 - 4 / 6, 6), np.linspace(0, 5 - 5 / 9, 9))),
    "ROI_ALIGN_MODE": ((3, 7), lambda x: np_bilinear(x, _roi_grid(4, 3), _roi_grid(5, 7))),
}


@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize("mode", list(RESIZE))
def test_resize_bilinear(tmp_path, executor, mode):
    (h, w), ref = RESIZE[mode]
    check_layer(tmp_path, executor,
                lambda b: b.add_resize_bilinear("rs", "x", "out", target_height=h, target_width=w, mode=mode),
                {"x": X}, ref)


@pytest.mark.parametrize("executor", EXECUTORS)
def test_crop_one_and_two_inputs(tmp_path, executor):
    def add(b):
        b.add_crop("c1", 1, 2, 1, 0, [], ["x"], "a")
        b.add_crop("c2", 0, 0, 0, 0, [1, 2], ["x", "ref"], "b")

    check_layer(tmp_path, executor, add, {"x": rand(2, 6, 7), "ref": rand(2, 3, 4)},
                lambda x, ref: (x[:, 1:, 1:5], x[:, 1:4, 2:6]), outputs=("a", "b"))


@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize("kind", ["constant", "reflection", "replication"])
def test_padding(tmp_path, executor, kind):
    modes = {"constant": dict(mode="constant", constant_values=1.5), "reflection": dict(mode="reflect"),
             "replication": dict(mode="edge")}
    check_layer(tmp_path, executor,
                lambda b: b.add_padding("pad", 1, 2, 2, 0, value=1.5, input_name="x", output_name="out",
                                        padding_type=kind),
                {"x": X}, lambda x: np.pad(x, ((0, 0), (2, 0), (1, 2)), **modes[kind]))


@pytest.mark.parametrize("executor", EXECUTORS)
def test_constant_pad(tmp_path, executor):
    def add(b):
        b.add_constant_pad("cp", ["x"], "a", value=-2.0, pad_amounts=[0, 0, 1, 2, 0, 3])
        b.add_constant_pad("cp2", ["x"], "b", value=0.5, pad_to_given_output_size_mode=True,
                           pad_amounts=[0, 0, 0, 6, 7, 0])

    check_layer(tmp_path, executor, add, {"x": rand(1, 3, 4)},
                lambda x: (np.pad(x, ((0, 0), (1, 2), (0, 3)), constant_values=-2.0),
                           np.pad(x, ((0, 0), (0, 3), (3, 0)), constant_values=0.5)),
                outputs=("a", "b"), nd=True)


def _space_to_depth(x, b):  # TensorFlow order: output channel = (row_in_block * b + col_in_block) * C + c
    c, h, w = x.shape
    out = np.zeros((c * b * b, h // b, w // b), x.dtype)
    for i in range(b):
        for j in range(b):
            out[(i * b + j) * c:(i * b + j + 1) * c] = x[:, i::b, j::b]
    return out


@pytest.mark.parametrize("executor", EXECUTORS)
def test_reorganize_data(tmp_path, executor):
    def add(b):
        b.add_reorganize_data("s2d", "x", "s2d", mode="SPACE_TO_DEPTH", block_size=2)
        b.add_reorganize_data("d2s", "s2d", "d2s", mode="DEPTH_TO_SPACE", block_size=2)
        b.add_reorganize_data("ps", "x", "ps", mode="PIXEL_SHUFFLE", block_size=2)

    x = rand(8, 4, 6, seed=9)
    check_layer(tmp_path, executor, add, {"x": x},
                lambda x: (_space_to_depth(x, 2), x, F.pixel_shuffle(torch.from_numpy(x)[None], 2)[0].numpy()),
                outputs=("s2d", "d2s", "ps"))
