"""convolution (groups, depthwise, dilation, valid/same/explicit padding, deconvolution) and pooling."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests.unit.test_layers_base import EXECUTORS, check_layer, rand

CONV_CASES = {
    # id: (in_ch, out_ch, groups, k, stride, dilation, mode, pads (t, b, l, r), asym)
    "plain": (3, 4, 1, (3, 3), (1, 1), (1, 1), "valid", (0, 0, 0, 0), None),
    "explicit_asym_pad": (3, 4, 1, (3, 2), (2, 1), (1, 1), "valid", (1, 0, 2, 1), None),
    "grouped_dilated": (4, 6, 2, (3, 3), (1, 2), (2, 1), "valid", (1, 1, 1, 1), None),
    "depthwise_same": (4, 4, 4, (3, 3), (2, 2), (1, 1), "same", None, "BOTTOM_RIGHT_HEAVY"),
    "same_top_left": (3, 2, 1, (2, 4), (2, 3), (1, 1), "same", None, "TOP_LEFT_HEAVY"),
}


def _same(size: int, k: int, s: int, d: int, top_left: bool) -> tuple[int, int]:
    out = math.ceil(size / s)
    total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
    small = total // 2
    return (total - small, small) if top_left else (small, total - small)


@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize("case", list(CONV_CASES))
def test_convolution(tmp_path, executor, case):
    cin, cout, g, k, s, d, mode, pads, asym = CONV_CASES[case]
    torch.manual_seed(0)
    w = torch.randn(cout, cin // g, *k)
    bias = torch.randn(cout)
    x = rand(cin, 7, 9)

    def add(b):
        kw = dict(padding_top=pads[0], padding_bottom=pads[1], padding_left=pads[2], padding_right=pads[3]) \
            if pads else dict(same_padding_asymmetry_mode=asym)
        b.add_convolution("conv", cin // g, cout, k[0], k[1], s[0], s[1], mode, g,
                          w.permute(2, 3, 1, 0).numpy(), bias.numpy(), True, input_name="x", output_name="out",
                          dilation_factors=list(d), **kw)

    def ref(x):
        t = torch.from_numpy(x)[None]
        if pads:
            p = (pads[2], pads[3], pads[0], pads[1])
        else:
            tl = asym == "TOP_LEFT_HEAVY"
            ph, pw = _same(7, k[0], s[0], d[0], tl), _same(9, k[1], s[1], d[1], tl)
            p = (pw[0], pw[1], ph[0], ph[1])
        return F.conv2d(F.pad(t, p), w, bias, s, 0, d, g)[0].numpy()

    check_layer(tmp_path, executor, add, {"x": x}, ref, atol=1e-4)


DECONV_CASES = {
    # id: (in, out, groups, k, stride, mode, pads, output_shape)
    "valid": (3, 4, 1, (3, 3), (2, 2), "valid", (0, 0, 0, 0), None),
    "valid_pads": (4, 2, 2, (4, 3), (2, 1), "valid", (1, 1, 0, 1), None),
    "same": (3, 2, 1, (3, 3), (2, 2), "same", None, None),
    "output_shape": (3, 2, 1, (3, 3), (2, 2), "valid", (1, 1, 1, 1), (10, 12)),
}


@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize("case", list(DECONV_CASES))
def test_deconvolution(tmp_path, executor, case):
    cin, cout, g, k, s, mode, pads, out_shape = DECONV_CASES[case]
    torch.manual_seed(1)
    w = torch.randn(cin, cout // g, *k)
    bias = torch.randn(cout)
    x = rand(cin, 5, 6)

    def add(b):
        kw = dict(padding_top=pads[0], padding_bottom=pads[1], padding_left=pads[2], padding_right=pads[3]) \
            if pads else {}
        b.add_convolution("deconv", cin, cout, k[0], k[1], s[0], s[1], mode, g, w.permute(2, 3, 0, 1).numpy(),
                          bias.numpy(), True, is_deconv=True, output_shape=out_shape, input_name="x",
                          output_name="out", **kw)

    def ref(x):
        t = torch.from_numpy(x)[None]
        if mode == "same":  # TF SAME transpose: output H*s, crop (k - s) // 2 at the start
            full = F.conv_transpose2d(t, w, None, s, 0, 0, g)
            oh, ow = 5 * s[0], 6 * s[1]
            th, tw = (full.shape[-2] - oh) // 2, (full.shape[-1] - ow) // 2
            return (full[..., th:th + oh, tw:tw + ow] + bias[:, None, None])[0].numpy()
        if out_shape:  # torch's output_padding reaches the requested size; padding is symmetric here
            op = (out_shape[0] - ((5 - 1) * s[0] + k[0] - 2 * pads[0]),
                  out_shape[1] - ((6 - 1) * s[1] + k[1] - 2 * pads[2]))
            return F.conv_transpose2d(t, w, bias, s, (pads[0], pads[2]), op, g)[0].numpy()
        full = F.conv_transpose2d(t, w, bias, s, 0, 0, g)
        h, wd = full.shape[-2:]
        return full[..., pads[0]:h - pads[1], pads[2]:wd - pads[3]][0].numpy()

    check_layer(tmp_path, executor, add, {"x": x}, ref, atol=1e-4)


def np_pool(x, k, s, pads, kind, exclude, out_hw):
    """Independent loop reference: windows over the padded grid, clipped to input + padding."""
    c, h, w = x.shape
    t, b, l, r = pads
    out = np.zeros((c, *out_hw), np.float64)
    for i in range(out_hw[0]):
        for j in range(out_hw[1]):
            r0, c0 = i * s[0] - t, j * s[1] - l
            r1, c1 = min(r0 + k[0], h + b), min(c0 + k[1], w + r)
            rr0, cc0, rr1, cc1 = max(r0, 0), max(c0, 0), min(r1, h), min(c1, w)
            win = x[:, rr0:rr1, cc0:cc1].reshape(c, -1).astype(np.float64)
            if kind == "MAX":
                out[:, i, j] = win.max(axis=1)
            elif kind == "L2":
                out[:, i, j] = np.sqrt((win ** 2).sum(axis=1))
            else:
                n = win.shape[1] if exclude else (r1 - r0) * (c1 - c0)
                out[:, i, j] = win.sum(axis=1) / n
    return out.astype(np.float32)


POOL_CASES = {
    # id: (kind, k, s, padding_type, pads, exclude)
    "max_valid": ("MAX", (2, 2), (2, 2), "VALID", (0, 0, 0, 0), True),
    "max_pads": ("MAX", (3, 3), (2, 2), "VALID", (1, 0, 1, 2), True),
    "avg_pads_exclude": ("AVERAGE", (3, 3), (2, 1), "VALID", (1, 1, 0, 1), True),
    "avg_pads_include": ("AVERAGE", (3, 2), (1, 2), "VALID", (1, 1, 1, 0), False),
    "l2_pads": ("L2", (2, 3), (2, 2), "VALID", (0, 1, 1, 1), True),
    "max_same": ("MAX", (3, 3), (2, 2), "SAME", None, True),
    "avg_same_exclude": ("AVERAGE", (3, 3), (2, 2), "SAME", None, True),
    "avg_same_include": ("AVERAGE", (2, 2), (3, 3), "SAME", None, False),
    "max_last_pixel": ("MAX", (3, 3), (2, 2), "INCLUDE_LAST_PIXEL", (1, 1, 1, 1), True),
    "avg_last_pixel": ("AVERAGE", (3, 3), (2, 2), "INCLUDE_LAST_PIXEL", (1, 1, 0, 0), False),
    "avg_last_pixel_nopad": ("AVERAGE", (3, 2), (2, 2), "INCLUDE_LAST_PIXEL", (0, 0, 0, 0), False),
}


def _out_hw(h, w, k, s, ptype, pads):
    if ptype == "SAME":
        return math.ceil(h / s[0]), math.ceil(w / s[1])
    if ptype == "VALID":
        t, b, l, r = pads
        return (h + t + b - k[0]) // s[0] + 1, (w + l + r - k[1]) // s[1] + 1
    out = []
    for size, kk, ss, p in ((h, k[0], s[0], pads[0]), (w, k[1], s[1], pads[2])):
        o = math.ceil((size + 2 * p - kk) / ss) + 1
        if p > 0 and (o - 1) * ss >= size + p:
            o -= 1
        out.append(o)
    return tuple(out)


@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize("case", list(POOL_CASES))
def test_pooling(tmp_path, executor, case):
    kind, k, s, ptype, pads, exclude = POOL_CASES[case]
    h, w = 7, 8
    x = rand(3, h, w, seed=3)
    if ptype == "SAME":
        ph, pw = _same(h, k[0], s[0], 1, False), _same(w, k[1], s[1], 1, False)
        pads_eff = (*ph, *pw)
    else:
        pads_eff = pads
    out_hw = _out_hw(h, w, k, s, ptype, pads_eff)

    def add(b):
        kw = dict(padding_top=pads[0], padding_bottom=pads[1], padding_left=pads[2], padding_right=pads[3]) \
            if pads else {}
        b.add_pooling("pool", k[0], k[1], s[0], s[1], kind, ptype, "x", "out", exclude_pad_area=exclude, **kw)

    check_layer(tmp_path, executor, add, {"x": x}, lambda x: np_pool(x, k, s, pads_eff, kind, exclude, out_hw),
                atol=1e-5)


@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize("kind", ["MAX", "AVERAGE", "L2"])
def test_global_pooling(tmp_path, executor, kind):
    fns = {"MAX": lambda x: x.max(axis=(1, 2), keepdims=True), "AVERAGE": lambda x: x.mean(axis=(1, 2), keepdims=True),
           "L2": lambda x: np.sqrt((x ** 2).sum(axis=(1, 2), keepdims=True))}
    check_layer(tmp_path, executor,
                lambda b: b.add_pooling("gp", 1, 1, 1, 1, kind, "VALID", "x", "out", is_global=True),
                {"x": rand(4, 5, 6)}, fns[kind])


@pytest.mark.parametrize("executor", EXECUTORS)
def test_convolution_in_nd_network_with_rank5_input(tmp_path, executor):
    """Leading axes before [C, H, W] are batch axes."""
    torch.manual_seed(2)
    w = torch.randn(2, 3, 1, 1)

    def add(b):
        b.add_convolution("conv", 3, 2, 1, 1, 1, 1, "valid", 1, w.permute(2, 3, 1, 0).numpy(), None, False,
                          input_name="x", output_name="out")

    def ref(x):
        t = torch.from_numpy(x)
        return F.conv2d(t.reshape(-1, 3, 4, 4), w).reshape(1, 2, 2, 4, 4).numpy()

    check_layer(tmp_path, executor, add, {"x": rand(1, 2, 3, 4, 4)}, ref, nd=True)
