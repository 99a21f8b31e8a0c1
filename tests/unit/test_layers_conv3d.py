"""convolution3d (groups, dilation, strides, custom/valid/same padding, deconvolution), pooling3d, globalPooling3d.

References follow NeuralNetwork.proto: padding amounts are computed here from the proto's formulas
(``SAME``: output ``ceil(in / stride)``, total padding split with the extra on the back/bottom/right),
the padded input is fed to torch's unpadded 3-D operators, and count-exclude-padding average
pooling is computed window by window in numpy.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import mlupdate
from tests.unit.test_layers_base import Case, builder, case_test, rand, save

REFERENCE = ("torch.nn.functional conv3d / conv_transpose3d / max_pool3d / avg_pool3d on inputs padded by the "
             "proto's formulas; numpy windows for count-exclude-padding average pooling and global pooling")


def _same(size: int, k: int, s: int, d: int = 1) -> tuple[int, int]:
    out = math.ceil(size / s)
    total = max(0, (out - 1) * s + (k - 1) * d + 1 - size)
    return total // 2, total - total // 2


def _pads(mode: str, pads: tuple[int, ...], shape: tuple[int, ...], k, s, d=(1, 1, 1)) -> list[tuple[int, int]]:
    """(before, after) for D, H, W."""
    if mode == "custom":
        return [(pads[0], pads[1]), (pads[2], pads[3]), (pads[4], pads[5])]
    if mode == "valid":
        return [(0, 0)] * 3
    return [_same(shape[-3 + i], k[i], s[i], d[i]) for i in range(3)]


def _torch_pad(p: list[tuple[int, int]]) -> tuple[int, ...]:
    return (*p[2], *p[1], *p[0])


# -- convolution3d ------------------------------------------------------------------------------------

CONV = {
    # id: (input shape, out_ch, groups, kernel, stride, dilation, mode, custom pads (f, b, t, bo, l, r), bias)
    "valid_bias": ((1, 2, 4, 5, 6), 3, 1, (2, 3, 3), (1, 1, 1), (1, 1, 1), "valid", None, True),
    "valid_drops_last": ((1, 2, 7, 8, 7), 2, 1, (3, 3, 2), (3, 2, 3), (1, 1, 1), "valid", None, False),
    "custom_asym": ((1, 3, 5, 6, 7), 2, 1, (3, 2, 3), (2, 1, 2), (1, 1, 1), "custom", (1, 0, 2, 1, 0, 2), True),
    "custom_dilated": ((2, 2, 6, 7, 6), 4, 1, (2, 3, 2), (1, 1, 2), (2, 2, 3), "custom", (1, 1, 0, 2, 3, 0), True),
    "same_grouped_dilated": ((2, 4, 5, 7, 6), 6, 2, (3, 3, 2), (2, 2, 1), (1, 2, 2), "same", None, True),
    "same_proto_example": ((1, 3, 3, 8, 8), 2, 1, (3, 3, 3), (2, 2, 2), (1, 1, 1), "same", None, False),
    "depthwise_same": ((1, 4, 4, 7, 5), 8, 4, (3, 2, 3), (1, 2, 2), (1, 1, 1), "same", None, True),
    "rank6_batch": ((2, 1, 2, 4, 5, 5), 3, 1, (2, 2, 2), (1, 2, 1), (1, 1, 1), "valid", None, True),
}


def _conv_case(cid: str) -> Case:
    shape, cout, g, k, s, d, mode, pads, has_bias = CONV[cid]
    cin = shape[-4]
    gen = torch.Generator().manual_seed(len(cid))
    w = torch.randn(cout, cin // g, *k, generator=gen)
    bias = torch.randn(cout, generator=gen) if has_bias else None

    def add(b: Any) -> None:
        pk = dict(zip(("padding_front", "padding_back", "padding_top", "padding_bottom", "padding_left",
                       "padding_right"), pads or (0,) * 6, strict=True))
        b.add_convolution3d("conv3d", cin, cout, *k, w.numpy(), None if bias is None else bias.numpy(), has_bias,
                            groups=g, stride_depth=s[0], stride_height=s[1], stride_width=s[2],
                            dilation_depth=d[0], dilation_height=d[1], dilation_width=d[2], padding_mode=mode,
                            input_name="x", output_name="out", **pk)

    def ref(x: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(x).reshape(-1, *shape[-4:])
        t = F.pad(t, _torch_pad(_pads(mode, pads or (), shape, k, s, d)))
        y = F.conv3d(t, w, bias, s, 0, d, g)
        return y.reshape(*shape[:-4], *y.shape[1:]).numpy()

    return Case(f"conv3d_{cid}", add, {"x": rand(*shape, seed=3)}, ref, nd=True, atol=1e-4)


DECONV = {
    # id: (input shape, out_ch, groups, kernel, stride, dilation, mode, pads, output_shape)
    "valid": ((1, 2, 3, 4, 4), 4, 1, (2, 3, 3), (2, 2, 1), (1, 1, 1), "valid", None, None),
    "custom_grouped": ((1, 4, 3, 3, 4), 6, 2, (3, 3, 2), (2, 1, 2), (1, 1, 1), "custom", (1, 1, 0, 2, 1, 0), None),
    "same_dilated": ((2, 3, 2, 3, 4), 2, 1, (3, 2, 3), (2, 3, 2), (1, 2, 1), "same", None, None),
    "output_shape": ((1, 2, 3, 3, 3), 3, 1, (3, 3, 3), (2, 2, 2), (1, 1, 1), "custom", (1, 1, 1, 1, 1, 1), (6, 5, 6)),
}


def _deconv_case(cid: str) -> Case:
    shape, cout, g, k, s, d, mode, pads, out_shape = DECONV[cid]
    cin = shape[-4]
    gen = torch.Generator().manual_seed(100 + len(cid))
    w = torch.randn(cin, cout // g, *k, generator=gen)  # torch's transposed layout [C_in, C_out / g, ...]
    bias = torch.randn(cout, generator=gen)

    def add(b: Any) -> None:
        pk = dict(zip(("padding_front", "padding_back", "padding_top", "padding_bottom", "padding_left",
                       "padding_right"), pads or (0,) * 6, strict=True))
        # the builder takes (C_out / groups, C_in, kD, kH, kW) for a deconvolution
        b.add_convolution3d("deconv3d", cin, cout, *k, w.transpose(0, 1).numpy(), bias.numpy(), True, groups=g,
                            stride_depth=s[0], stride_height=s[1], stride_width=s[2], dilation_depth=d[0],
                            dilation_height=d[1], dilation_width=d[2], is_deconv=True, output_shape=out_shape,
                            padding_mode=mode, input_name="x", output_name="out", **pk)

    def ref(x: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(x).reshape(-1, *shape[-4:])
        full = F.conv_transpose3d(t, w, None, s, 0, 0, g, d)
        sizes = full.shape[-3:]
        if mode == "custom":
            start = [pads[0], pads[2], pads[4]]
            size = [sizes[i] - pads[2 * i] - pads[2 * i + 1] for i in range(3)]
        elif mode == "same":
            size = [shape[-3 + i] * s[i] for i in range(3)]
            start = [(sizes[i] - size[i]) // 2 for i in range(3)]
        else:
            start, size = [0, 0, 0], list(sizes)
        if out_shape:
            size = list(out_shape)
        y = full[..., start[0]:start[0] + size[0], start[1]:start[1] + size[1], start[2]:start[2] + size[2]]
        y = y + bias.reshape(-1, 1, 1, 1)
        assert list(y.shape[-3:]) == size, "test geometry must stay inside the full output"
        return y.reshape(*shape[:-4], *y.shape[1:]).numpy()

    return Case(f"deconv3d_{cid}", add, {"x": rand(*shape, seed=4)}, ref, nd=True, atol=1e-4)


# -- pooling3d ----------------------------------------------------------------------------------------

POOL = {
    # id: (input shape, type, kernel, stride, mode, custom pads, count_exclude_padding)
    "max_valid": ((1, 2, 4, 5, 6), "MAX", (2, 2, 3), (1, 2, 2), "valid", None, False),
    "max_same_negative": ((2, 3, 5, 4, 7), "MAX", (3, 2, 3), (2, 1, 2), "same", None, False),
    "max_custom": ((1, 2, 4, 4, 5), "MAX", (2, 3, 3), (2, 2, 1), "custom", (1, 0, 1, 1, 0, 2), False),
    "avg_valid_drops_last": ((1, 2, 7, 6, 8), "AVERAGE", (3, 2, 3), (3, 3, 2), "valid", None, False),
    "avg_same_count_pad": ((1, 3, 5, 5, 4), "AVERAGE", (2, 3, 3), (2, 2, 1), "same", None, False),
    "avg_same_exclude_pad": ((1, 3, 5, 5, 4), "AVERAGE", (2, 3, 3), (2, 2, 1), "same", None, True),
    "avg_custom_count_pad": ((2, 2, 4, 5, 5), "AVERAGE", (3, 3, 2), (1, 2, 2), "custom", (1, 2, 0, 1, 1, 1), False),
    "avg_custom_exclude_pad": ((2, 2, 4, 5, 5), "AVERAGE", (3, 3, 2), (1, 2, 2), "custom", (1, 2, 0, 1, 1, 1), True),
    "rank6_max_same": ((2, 1, 2, 3, 4, 5), "MAX", (2, 2, 2), (2, 2, 2), "same", None, False),
}


def _avg_exclude(x: np.ndarray, k, s, pads: list[tuple[int, int]]) -> np.ndarray:
    """Average over each window's real (unpadded) positions, window by window."""
    lead, (dd, hh, ww) = x.shape[:-3], x.shape[-3:]
    outs = [(n + a + b - kk) // st + 1 for n, (a, b), kk, st in zip((dd, hh, ww), pads, k, s, strict=True)]
    y = np.zeros((*lead, *outs), np.float64)
    for i in range(outs[0]):
        for j in range(outs[1]):
            for m in range(outs[2]):
                lo = [i * s[0] - pads[0][0], j * s[1] - pads[1][0], m * s[2] - pads[2][0]]
                hi = [min(lo[q] + k[q], (dd, hh, ww)[q]) for q in range(3)]
                lo = [max(v, 0) for v in lo]
                win = x[..., lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
                y[..., i, j, m] = win.mean(axis=(-3, -2, -1))
    return y.astype(np.float32)


def _pool_case(cid: str) -> Case:
    shape, ptype, k, s, mode, pads, exclude = POOL[cid]

    def add(b: Any) -> None:
        pk = dict(zip(("custom_padding_front", "custom_padding_back", "custom_padding_top", "custom_padding_bottom",
                       "custom_padding_left", "custom_padding_right"), pads or (0,) * 6, strict=True))
        b.add_pooling3d("pool3d", "x", "out", ptype, *k, *s, padding_mode=mode,
                        average_pooling_count_excludes_padding=exclude, **pk)

    def ref(x: np.ndarray) -> np.ndarray:
        p = _pads(mode, pads or (), shape, k, s)
        if ptype == "AVERAGE" and exclude:
            return _avg_exclude(x, k, s, p)
        t = torch.from_numpy(x).reshape(-1, *shape[-4:])
        if ptype == "MAX":  # padding never wins a max
            y = F.max_pool3d(F.pad(t, _torch_pad(p), value=float("-inf")), k, s)
        else:  # zeros are averaged in, the divisor is the kernel volume
            y = F.avg_pool3d(F.pad(t, _torch_pad(p)), k, s)
        return y.reshape(*shape[:-4], *y.shape[1:]).numpy()

    return Case(f"pool3d_{cid}", add, {"x": rand(*shape, seed=5)}, ref, nd=True)


def _global_case(cid: str, shape: tuple[int, ...], ptype: str) -> Case:
    def add(b: Any) -> None:
        b.add_global_pooling3d("gpool3d", "x", "out", ptype)

    def ref(x: np.ndarray) -> np.ndarray:
        f = np.max if ptype == "MAX" else np.mean
        return f(x, axis=(-3, -2, -1), keepdims=True).astype(np.float32)

    return Case(f"global3d_{cid}", add, {"x": rand(*shape, seed=6)}, ref, nd=True)


def _conv_pool_chain() -> Case:
    """conv3d -> pooling3d -> globalPooling3d in one network."""
    gen = torch.Generator().manual_seed(7)
    w = torch.randn(3, 2, 2, 2, 2, generator=gen)

    def add(b: Any) -> None:
        b.add_convolution3d("c", 2, 3, 2, 2, 2, w.numpy(), None, False, padding_mode="same",
                            input_name="x", output_name="c")
        b.add_pooling3d("p", "c", "p", "AVERAGE", 2, 2, 2, 2, 2, 2, padding_mode="valid")
        b.add_global_pooling3d("g", "p", "out", "MAX")

    def ref(x: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(x)
        c = F.conv3d(F.pad(t, (0, 1, 0, 1, 0, 1)), w)
        p = F.avg_pool3d(c, 2, 2)
        return torch.amax(p, dim=(-3, -2, -1), keepdim=True).numpy()

    return Case("chain_conv_pool_global", add, {"x": rand(1, 2, 4, 6, 6, seed=8)}, ref, nd=True, atol=1e-4)


CASES = [
    *(_conv_case(c) for c in CONV),
    *(_deconv_case(c) for c in DECONV),
    *(_pool_case(c) for c in POOL),
    _global_case("max", (1, 3, 2, 3, 3), "MAX"),
    _global_case("average", (2, 4, 3, 5, 2), "AVERAGE"),
    _global_case("rank6_average", (2, 1, 2, 3, 4, 2), "AVERAGE"),
    _conv_pool_chain(),
]

test_cases = case_test(CASES)


# -- geometry the proto states, and build-time errors --------------------------------------------------


def test_proto_same_example_shape(tmp_path):
    """The proto's example: [1, 3, 3, 8, 8], stride 2, kernel 3, same -> [1, 2, 2, 4, 4]."""
    case = _conv_case("same_proto_example")
    model = mlupdate.load(save(case.builder(), tmp_path))
    out = model.predict({"x": case.inputs["x"]})["out"]
    assert np.asarray(out).shape == (1, 2, 2, 4, 4)


def _conv3d_spec(**changes: Any) -> Any:
    b = builder([("x", (1, 2, 3, 4, 4))], nd=True)
    b.add_convolution3d("bad_conv3d", 2, 4, 2, 2, 2, np.ones((4, 1, 2, 2, 2), np.float32), None, False, groups=2,
                        input_name="x", output_name="out")
    p = b.nn_spec.layers[0].convolution3d
    for k, v in changes.items():
        setattr(p, k, v)
    return b


@pytest.mark.parametrize("changes", [
    {"strideHeight": 0}, {"dilationWidth": 0}, {"kernelDepth": 0}, {"nGroups": 3}, {"outputChannels": 6},
    {"customPaddingTop": -1},
], ids=["stride0", "dilation0", "kernel0", "groups_not_dividing", "weight_count", "negative_pad"])
def test_conv3d_bad_params_are_spec_errors(tmp_path, changes):
    path = tmp_path / "bad.mlmodel"
    path.write_bytes(_conv3d_spec(**changes).spec.SerializeToString())
    with pytest.raises(mlupdate.SpecError, match="bad_conv3d"):
        mlupdate.load(path)


@pytest.mark.parametrize("field", ["kernelWidth", "strideDepth"])
def test_pooling3d_zero_sizes_are_spec_errors(tmp_path, field):
    b = builder([("x", (1, 2, 3, 4, 4))], nd=True)
    b.add_pooling3d("bad_pool3d", "x", "out", "MAX", 2, 2, 2, 1, 1, 1)
    setattr(b.nn_spec.layers[0].pooling3d, field, 0)
    path = tmp_path / "bad.mlmodel"
    path.write_bytes(b.spec.SerializeToString())
    with pytest.raises(mlupdate.SpecError, match="bad_pool3d"):
        mlupdate.load(path)


def test_conv3d_wrong_input_channels_names_layer(tmp_path):
    b = _conv3d_spec()
    b.spec.description.input[0].type.multiArrayType.shape[1] = 3
    path = tmp_path / "m.mlmodel"
    path.write_bytes(b.spec.SerializeToString())
    with pytest.raises(mlupdate.Error, match="bad_conv3d"):
        mlupdate.load(path, executor="torch").predict({"x": rand(1, 3, 3, 4, 4)})
