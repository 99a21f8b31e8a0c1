"""upsample, resizeBilinear, crop, padding, constantPad and reorganizeData.

Legacy networks hold [C, H, W]; in ND networks these layers (constantPad aside) act on the last three
axes and treat every axis before -3 as a batch axis (e.g. (2, 2, 4, 5)). constantPad pads any axis of
any rank.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

from tests.unit.test_layers_base import Case, case_test, rand

X = rand(2, 4, 5, seed=7)
X4 = rand(3, 2, 4, 5, seed=8)  # ND rank 4: Core ML batch 3 before [C, H, W]


def per_lead(ref):
    """A reference for one [C, H, W] block applied to every block of the axes before -3."""

    def apply(*arrays):
        lead = arrays[0].shape[:-3]
        outs = [ref(*(a[i] for a in arrays)) for i in np.ndindex(*lead)]
        outs = [[o] if isinstance(o, np.ndarray) else list(o) for o in outs]
        res = [np.stack([o[k] for o in outs]).reshape(lead + outs[0][k].shape) for k in range(len(outs[0]))]
        return res[0] if len(res) == 1 else res

    return apply


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


def _upsample(case, b):
    (fh, fw), mode, lin, _ = UPSAMPLE[case]
    b.add_upsample("up", fh, fw, "x", "out", mode=mode, linear_upsample_mode=lin)


def _roi_grid(n_in, n_out):
    spacing = max(1, n_in - 1) / n_out
    return 0.5 * spacing + np.arange(n_out) * spacing


RESIZE = {
    "STRICT_ALIGN_ENDPOINTS_MODE": ((7, 3), lambda x: _interp(x, (7, 3), True)),
    "ALIGN_ENDPOINTS_MODE": ((1, 8), lambda x: np_bilinear(x, np.array([1.5]), np.linspace(0, 4, 8))),
    "UPSAMPLE_MODE": ((6, 9), lambda x: np_bilinear(x, np.linspace(0, 4 - 4 / 6, 6), np.linspace(0, 5 - 5 / 9, 9))),
    "ROI_ALIGN_MODE": ((3, 7), lambda x: np_bilinear(x, _roi_grid(4, 3), _roi_grid(5, 7))),
}


def _resize(mode, b):
    h, w = RESIZE[mode][0]
    b.add_resize_bilinear("rs", "x", "out", target_height=h, target_width=w, mode=mode)


CASES = [Case(f"resize_upsample_{c}", functools.partial(_upsample, c), {"x": X}, UPSAMPLE[c][3]) for c in UPSAMPLE]
CASES += [Case(f"resize_upsample_{c}_nd_rank4", functools.partial(_upsample, c), {"x": X4}, per_lead(UPSAMPLE[c][3]),
               nd=True) for c in ("nn_2x3", "bilinear_default", "fractional_false")]
CASES += [Case(f"resize_resizeBilinear_{m}", functools.partial(_resize, m), {"x": X}, RESIZE[m][1]) for m in RESIZE]
CASES += [Case(f"resize_resizeBilinear_{m}_nd_rank4", functools.partial(_resize, m), {"x": X4},
               per_lead(RESIZE[m][1]), nd=True) for m in ("STRICT_ALIGN_ENDPOINTS_MODE", "ROI_ALIGN_MODE")]


# -- crop, padding, constantPad ----------------------------------------------------------------------


def _crop(b):
    b.add_crop("c1", 1, 2, 1, 0, [], ["x"], "a")
    b.add_crop("c2", 0, 0, 0, 0, [1, 2], ["x", "ref"], "b")


def _crop_ref(x, ref):
    return x[..., 1:, 1:5], x[..., 1:4, 2:6]


PAD_MODES = {"constant": dict(mode="constant", constant_values=1.5), "reflection": dict(mode="reflect"),
             "replication": dict(mode="edge")}


def _padding(kind, b):
    b.add_padding("pad", 1, 2, 2, 0, value=1.5, input_name="x", output_name="out", padding_type=kind)


def _padding_ref(kind, x):
    return np.pad(x, ((0, 0),) * (x.ndim - 2) + ((2, 0), (1, 2)), **PAD_MODES[kind])


def _paddings(b):
    for kind in PAD_MODES:
        b.add_padding(kind, 1, 2, 2, 0, value=1.5, input_name="x", output_name=kind, padding_type=kind)


CASES += [
    Case("resize_crop_one_and_two_inputs", _crop, {"x": rand(2, 6, 7), "ref": rand(2, 3, 4)}, _crop_ref,
         outputs=("a", "b")),
    Case("resize_crop_one_and_two_inputs_nd_rank4", _crop, {"x": rand(2, 2, 6, 7), "ref": rand(2, 2, 3, 4)},
         _crop_ref, outputs=("a", "b"), nd=True),
]
CASES += [Case(f"resize_padding_{kind}", functools.partial(_padding, kind), {"x": X},
               functools.partial(_padding_ref, kind)) for kind in PAD_MODES]
CASES += [Case(f"resize_padding_nd_{'x'.join(map(str, shape))}", _paddings, {"x": rand(*shape, seed=9)},
               lambda x: [_padding_ref(k, x) for k in PAD_MODES], outputs=tuple(PAD_MODES), nd=True)
          for shape in ((3, 2, 4, 5), (2, 2, 1, 3, 4))]


def _constant_pad(b):
    b.add_constant_pad("cp", ["x"], "a", value=-2.0, pad_amounts=[0, 0, 1, 2, 0, 3])
    b.add_constant_pad("cp2", ["x"], "b", value=0.5, pad_to_given_output_size_mode=True,
                       pad_amounts=[0, 0, 0, 6, 7, 0])


def _constant_pad_ranks(b):
    b.add_constant_pad("v", ["v"], "v_out", value=-1.0, pad_amounts=[2, 1])
    b.add_constant_pad("m", ["m"], "m_out", value=3.0, pad_amounts=[1, 0, 0, 2])
    b.add_constant_pad("m_to", ["m"], "m_to", value=0.5, pad_to_given_output_size_mode=True,
                       pad_amounts=[5, 0, 0, 6])
    b.add_constant_pad("x", ["x"], "x_out", value=0.0, pad_amounts=[1, 1, 0, 0, 2, 0])


def _constant_pad_ranks_ref(v, m, x):
    return (np.pad(v, (2, 1), constant_values=-1.0), np.pad(m, ((1, 0), (0, 2)), constant_values=3.0),
            np.pad(m, ((2, 0), (0, 2)), constant_values=0.5), np.pad(x, ((1, 1), (0, 0), (2, 0))))


CASES += [
    Case("resize_constant_pad", _constant_pad, {"x": rand(1, 3, 4)},
         lambda x: (np.pad(x, ((0, 0), (1, 2), (0, 3)), constant_values=-2.0),
                    np.pad(x, ((0, 0), (0, 3), (3, 0)), constant_values=0.5)),
         outputs=("a", "b"), nd=True),
    Case("resize_constant_pad_ranks", _constant_pad_ranks,
         {"v": rand(5, seed=10), "m": rand(3, 4, seed=11), "x": rand(2, 3, 4, seed=12)}, _constant_pad_ranks_ref,
         outputs=("v_out", "m_out", "m_to", "x_out"), nd=True),
]


# -- reorganizeData ----------------------------------------------------------------------------------


def _space_to_depth(x, b):  # TensorFlow order: output channel = (row_in_block * b + col_in_block) * C + c
    c, h, w = x.shape
    out = np.zeros((c * b * b, h // b, w // b), x.dtype)
    for i in range(b):
        for j in range(b):
            out[(i * b + j) * c:(i * b + j + 1) * c] = x[:, i::b, j::b]
    return out


def _reorganize(b):
    b.add_reorganize_data("s2d", "x", "s2d", mode="SPACE_TO_DEPTH", block_size=2)
    b.add_reorganize_data("d2s", "s2d", "d2s", mode="DEPTH_TO_SPACE", block_size=2)
    b.add_reorganize_data("ps", "x", "ps", mode="PIXEL_SHUFFLE", block_size=2)


def _reorganize_ref(x):
    return _space_to_depth(x, 2), x, F.pixel_shuffle(torch.from_numpy(x)[None], 2)[0].numpy()


CASES += [
    Case("resize_reorganize_data", _reorganize, {"x": rand(8, 4, 6, seed=9)}, _reorganize_ref,
         outputs=("s2d", "d2s", "ps")),
    Case("resize_reorganize_data_nd_rank4", _reorganize, {"x": rand(2, 8, 4, 6, seed=9)}, per_lead(_reorganize_ref),
         outputs=("s2d", "d2s", "ps"), nd=True),
]

test_cases = case_test(CASES)

REFERENCE = "numpy / torch resampling, cropping and padding from the proto's formulas"
