"""convolution (groups, depthwise, dilation, valid/same/explicit padding, deconvolution) and pooling.

Legacy networks hold [C, H, W]; in ND networks convolution and pooling take rank >= 4 and every axis
before -3 is a batch axis (e.g. (2, 3, 7, 9), (2, 2, 3, 7, 8)).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from tests.unit.test_layers_base import Case, case_test, rand


def over_lead(fn, x: np.ndarray) -> np.ndarray:
    """``fn`` on ``x`` seen as ``[B, C, H, W]`` (the axes before -3 folded), leading axes restored."""
    lead = x.shape[:-3]
    y = fn(torch.from_numpy(x).reshape(-1, *x.shape[-3:]))
    return y.reshape(*lead, *y.shape[1:]).numpy()


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


def _pad_kw(pads):
    if pads is None:
        return {}
    return dict(padding_top=pads[0], padding_bottom=pads[1], padding_left=pads[2], padding_right=pads[3])


def _conv_case(case: str, lead: tuple[int, ...] = ()) -> Case:
    cin, cout, g, k, s, d, mode, pads, asym = CONV_CASES[case]
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(cout, cin // g, *k, generator=gen)
    bias = torch.randn(cout, generator=gen)

    def add(b):
        kw = _pad_kw(pads) if pads else dict(same_padding_asymmetry_mode=asym)
        b.add_convolution("conv", cin // g, cout, k[0], k[1], s[0], s[1], mode, g,
                          w.permute(2, 3, 1, 0).numpy(), bias.numpy(), True, input_name="x", output_name="out",
                          dilation_factors=list(d), **kw)

    def ref(x):
        if pads:
            p = (pads[2], pads[3], pads[0], pads[1])
        else:
            tl = asym == "TOP_LEFT_HEAVY"
            ph, pw = _same(7, k[0], s[0], d[0], tl), _same(9, k[1], s[1], d[1], tl)
            p = (pw[0], pw[1], ph[0], ph[1])
        return over_lead(lambda t: F.conv2d(F.pad(t, p), w, bias, s, 0, d, g), x)

    suffix = f"_nd_{'x'.join(map(str, (*lead, cin, 7, 9)))}" if lead else ""
    return Case(f"conv_convolution_{case}{suffix}", add, {"x": rand(*lead, cin, 7, 9)}, ref, nd=bool(lead),
                atol=1e-4)


DECONV_CASES = {
    # id: (in, out, groups, k, stride, mode, pads, output_shape)
    "valid": (3, 4, 1, (3, 3), (2, 2), "valid", (0, 0, 0, 0), None),
    "valid_pads": (4, 2, 2, (4, 3), (2, 1), "valid", (1, 1, 0, 1), None),
    "same": (3, 2, 1, (3, 3), (2, 2), "same", None, None),
    "output_shape": (3, 2, 1, (3, 3), (2, 2), "valid", (1, 1, 1, 1), (10, 12)),
}


def _deconv_case(case: str, lead: tuple[int, ...] = ()) -> Case:
    cin, cout, g, k, s, mode, pads, out_shape = DECONV_CASES[case]
    gen = torch.Generator().manual_seed(1)
    w = torch.randn(cin, cout // g, *k, generator=gen)
    bias = torch.randn(cout, generator=gen)

    def add(b):
        b.add_convolution("deconv", cin, cout, k[0], k[1], s[0], s[1], mode, g, w.permute(2, 3, 0, 1).numpy(),
                          bias.numpy(), True, is_deconv=True, output_shape=out_shape, input_name="x",
                          output_name="out", **_pad_kw(pads))

    def ref4(t):
        if mode == "same":  # TF SAME transpose: output H*s, crop (k - s) // 2 at the start
            full = F.conv_transpose2d(t, w, None, s, 0, 0, g)
            oh, ow = 5 * s[0], 6 * s[1]
            th, tw = (full.shape[-2] - oh) // 2, (full.shape[-1] - ow) // 2
            return full[..., th:th + oh, tw:tw + ow] + bias[:, None, None]
        if out_shape:  # torch's output_padding reaches the requested size; padding is symmetric here
            op = (out_shape[0] - ((5 - 1) * s[0] + k[0] - 2 * pads[0]),
                  out_shape[1] - ((6 - 1) * s[1] + k[1] - 2 * pads[2]))
            return F.conv_transpose2d(t, w, bias, s, (pads[0], pads[2]), op, g)
        full = F.conv_transpose2d(t, w, bias, s, 0, 0, g)
        h, wd = full.shape[-2:]
        return full[..., pads[0]:h - pads[1], pads[2]:wd - pads[3]]

    suffix = f"_nd_{'x'.join(map(str, (*lead, cin, 5, 6)))}" if lead else ""
    return Case(f"conv_deconvolution_{case}{suffix}", add, {"x": rand(*lead, cin, 5, 6)},
                lambda x: over_lead(ref4, x), nd=bool(lead), atol=1e-4)


def _conv_rank5(b):
    gen = torch.Generator().manual_seed(2)
    w = torch.randn(2, 3, 1, 1, generator=gen)
    b.add_convolution("conv", 3, 2, 1, 1, 1, 1, "valid", 1, w.permute(2, 3, 1, 0).numpy(), None, False,
                      input_name="x", output_name="out")


def _conv_rank5_ref(x):
    """Leading axes before [C, H, W] are batch axes."""
    w = torch.randn(2, 3, 1, 1, generator=torch.Generator().manual_seed(2))
    t = torch.from_numpy(x)
    return F.conv2d(t.reshape(-1, 3, 4, 4), w).reshape(1, 2, 2, 4, 4).numpy()


CASES = [_conv_case(c) for c in CONV_CASES]
CASES += [_conv_case(c, (2,)) for c in ("plain", "grouped_dilated", "same_top_left")]
CASES += [_conv_case("explicit_asym_pad", (2, 2))]
CASES += [_deconv_case(c) for c in DECONV_CASES]
CASES += [_deconv_case(c, (2,)) for c in ("valid_pads", "same", "output_shape")]
CASES += [Case("conv_convolution_in_nd_network_with_rank5_input", _conv_rank5, {"x": rand(1, 2, 3, 4, 4)},
               _conv_rank5_ref, nd=True)]


# -- pooling -----------------------------------------------------------------------------------------


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


def _pool_case(case: str, lead: tuple[int, ...] = ()) -> Case:
    kind, k, s, ptype, pads, exclude = POOL_CASES[case]
    h, w = 7, 8
    if ptype == "SAME":
        ph, pw = _same(h, k[0], s[0], 1, False), _same(w, k[1], s[1], 1, False)
        pads_eff = (*ph, *pw)
    else:
        pads_eff = pads
    out_hw = _out_hw(h, w, k, s, ptype, pads_eff)

    def add(b):
        b.add_pooling("pool", k[0], k[1], s[0], s[1], kind, ptype, "x", "out", exclude_pad_area=exclude,
                      **_pad_kw(pads))

    def ref(x):  # every [H, W] plane is pooled on its own: fold all leading axes into channels
        y = np_pool(x.reshape(-1, h, w), k, s, pads_eff, kind, exclude, out_hw)
        return y.reshape(*x.shape[:-2], *out_hw)

    suffix = f"_nd_{'x'.join(map(str, (*lead, 3, h, w)))}" if lead else ""
    return Case(f"conv_pooling_{case}{suffix}", add, {"x": rand(*lead, 3, h, w, seed=3)}, ref, nd=bool(lead),
                atol=1e-5)


GLOBAL_POOL = {"MAX": lambda x: x.max(axis=(-2, -1), keepdims=True),
               "AVERAGE": lambda x: x.mean(axis=(-2, -1), keepdims=True),
               "L2": lambda x: np.sqrt((x ** 2).sum(axis=(-2, -1), keepdims=True))}


def _global_pool(kinds, b):
    for kind in kinds:
        b.add_pooling(f"gp_{kind}", 1, 1, 1, 1, kind, "VALID", "x", kind if len(kinds) > 1 else "out",
                      is_global=True)


CASES += [_pool_case(c) for c in POOL_CASES]
CASES += [_pool_case(c, (2,)) for c in ("max_pads", "avg_pads_include", "l2_pads", "avg_same_include",
                                        "avg_last_pixel")]
CASES += [_pool_case("avg_pads_exclude", (2, 2)), _pool_case("max_same", (1, 2))]
CASES += [Case(f"conv_global_pooling_{kind}", lambda b, kind=kind: _global_pool((kind,), b), {"x": rand(4, 5, 6)},
               GLOBAL_POOL[kind]) for kind in GLOBAL_POOL]
CASES += [Case(f"conv_global_pooling_nd_{'x'.join(map(str, shape))}", lambda b: _global_pool(tuple(GLOBAL_POOL), b),
               {"x": rand(*shape)}, lambda x: tuple(f(x) for f in GLOBAL_POOL.values()), outputs=tuple(GLOBAL_POOL),
               nd=True)
          for shape in ((2, 4, 5, 6), (3, 2, 2, 3, 4))]

test_cases = case_test(CASES)

REFERENCE = "torch.nn.functional conv2d / conv_transpose2d / pooling on inputs padded by the proto's formulas"
