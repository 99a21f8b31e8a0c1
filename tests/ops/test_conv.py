"""conv, conv_transpose and conv_quantized MIL ops against direct numpy loops and PyTorch modules."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from mlupdate.errors import Error
from tests.ops.harness import run_kernel

RNG = np.random.default_rng(4)


def np_conv(x, w, b, strides, dilations, pads, groups):
    """The definition's convolution, one output value at a time."""
    n = x.ndim - 2
    x = np.pad(x.astype(np.float64), [(0, 0), (0, 0)] + [tuple(p) for p in pads])
    k = w.shape[2:]
    out_sizes = [(x.shape[2 + i] - (k[i] - 1) * dilations[i] - 1) // strides[i] + 1 for i in range(n)]
    cin_g, cout = w.shape[1], w.shape[0]
    y = np.zeros((x.shape[0], cout, *out_sizes))
    for oc in range(cout):
        g = oc // (cout // groups)
        for pos in itertools.product(*[range(o) for o in out_sizes]):
            idx = tuple(slice(p * s, p * s + (kk - 1) * d + 1, d)
                        for p, s, kk, d in zip(pos, strides, k, dilations, strict=True))
            window = x[(slice(None), slice(g * cin_g, (g + 1) * cin_g), *idx)]
            y[(slice(None), oc, *pos)] = (window * w[oc]).reshape(x.shape[0], -1).sum(axis=1)
    return y + (0 if b is None else b.reshape((-1,) + (1,) * n))


def same_pads(sizes, k, strides, dilations, lower):
    """The definition's same padding: d_out = ceil(d_in / stride), odd pixel after (same_lower: before)."""
    pads = []
    for size, kk, s, d in zip(sizes, k, strides, dilations, strict=True):
        total = max((math.ceil(size / s) - 1) * s + (kk - 1) * d + 1 - size, 0)
        pads.append((total - total // 2, total // 2) if lower else (total // 2, total - total // 2))
    return pads


CONFIGS = [  # spatial sizes, kernel, strides, dilations, groups
    ((7,), (3,), (1,), (1,), 1), ((9,), (2,), (2,), (2,), 2),
    ((6, 5), (3, 2), (1, 1), (1, 1), 1), ((7, 8), (3, 3), (2, 3), (1, 2), 2), ((5, 5), (1, 1), (1, 1), (1, 1), 4),
    ((4, 5, 6), (2, 3, 2), (1, 2, 1), (1, 1, 2), 1),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("pad_type", [None, "valid", "same", "same_lower", "custom"])
@pytest.mark.parametrize("sizes, k, strides, dilations, groups", CONFIGS)
def test_conv(sizes, k, strides, dilations, groups, pad_type, dtype):
    cin, cout = 4, 8 if groups == 4 else 4
    x = RNG.uniform(-1, 1, (2, cin, *sizes)).astype(dtype)
    w = RNG.uniform(-1, 1, (cout, cin // groups, *k)).astype(dtype)
    b = RNG.uniform(-1, 1, cout).astype(dtype)
    inputs = {"x": x, "weight": w, "bias": b, "strides": np.array(strides, np.int32),
              "dilations": np.array(dilations, np.int32), "groups": np.int32(groups)}
    if pad_type is not None:
        inputs["pad_type"] = pad_type
    pads = [(0, 0)] * len(sizes)
    if pad_type in ("same", "same_lower"):
        pads = same_pads(sizes, k, strides, dilations, pad_type == "same_lower")
    if pad_type == "custom":
        pads = [(1, 2), (2, 0), (0, 1)][:len(sizes)]
        inputs["pad"] = np.array([p for ba in pads for p in ba], np.int32)
    want = np_conv(x, w.astype(np.float64), b, strides, dilations, pads, groups)
    got = run_kernel("conv", inputs, consts=set(inputs) - {"x", "weight"}, opset=16)  # same_lower: iOS16 on
    assert got.dtype == dtype and got.shape == want.shape
    if pad_type in ("same", "same_lower"):
        assert got.shape[2:] == tuple(math.ceil(s / st) for s, st in zip(sizes, strides, strict=True))
    tol = 1e-5 if dtype == np.float32 else 2e-2
    np.testing.assert_allclose(got.astype(np.float64), want, rtol=tol, atol=tol)


@pytest.mark.parametrize("opset", [15, 17])
def test_conv_defaults_and_iOS17_weight_dtype(opset):
    x = RNG.uniform(-1, 1, (1, 3, 6, 6)).astype(np.float32)
    w = RNG.uniform(-1, 1, (2, 3, 3, 3)).astype(np.float16 if opset == 17 else np.float32)
    want = np_conv(x, w.astype(np.float64), None, (1, 1), (1, 1), [(0, 0)] * 2, 1)  # valid, stride 1, no bias
    got = run_kernel("conv", {"x": x, "weight": w}, opset=opset)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("inputs, match", [
    ({"x": np.ones((3, 4), np.float32), "weight": np.ones((2, 3, 1), np.float32)}, "rank 3 to 5"),
    ({"x": np.ones((1, 4, 5), np.float32), "weight": np.ones((2, 3, 1), np.float32)}, "groups"),
    ({"x": np.ones((1, 4, 5), np.float32), "weight": np.ones((2, 4, 1), np.float32),
      "strides": np.array([1, 1], np.int32)}, "one value per spatial axis"),
    ({"x": np.ones((1, 4, 5), np.float32), "weight": np.ones((2, 4, 1), np.float32), "pad_type": "reflect"},
     "pad_type 'reflect'"),
    ({"x": np.ones((1, 4, 5), np.float32), "weight": np.ones((2, 4, 1), np.float32), "pad_type": "custom",
      "pad": np.array([1], np.int32)}, "pad"),
    ({"x": np.ones((1, 4, 2), np.float32), "weight": np.ones((2, 4, 3), np.float32)}, "smaller than"),
    ({"x": np.ones((1, 4, 5), np.float32), "weight": np.ones((2, 4, 1), np.float32),
      "bias": np.ones(3, np.float32)}, "bias"),
])
def test_conv_errors_name_the_op(inputs, match):
    with pytest.raises(Error, match=f"conv_0.*{match}"):
        run_kernel("conv", inputs, consts=set(inputs) - {"x", "weight"})


@pytest.mark.parametrize("op", ["conv", "conv_quantized"])
def test_same_lower_needs_iOS16(op):
    inputs = {"x": np.ones((1, 2, 5), np.float32), "weight": np.ones((2, 2, 2), np.float32), "pad_type": "same_lower"}
    if op == "conv_quantized":
        inputs.update(weight=np.ones((2, 2, 2), np.uint8), quantization_type="linear", quant_scale=np.float32(1),
                      quant_bias=np.float32(0))
    with pytest.raises(Error, match=f"{op}_0.*'same_lower' needs opset iOS16"):
        run_kernel(op, inputs)
    assert run_kernel(op, inputs, opset=16).shape == (1, 2, 5)


def test_conv_quantized_linear():
    x = RNG.uniform(-1, 1, (1, 2, 5, 5)).astype(np.float32)
    wq = RNG.integers(0, 256, (3, 2, 2, 2)).astype(np.uint8)
    scale, shift = np.array([0.01, 0.02, 0.03], np.float32), np.float32(-1.0)
    dense = wq.astype(np.float64) * scale.reshape(-1, 1, 1, 1) + shift  # W_float = W_quantized * scale + bias
    want = np_conv(x, dense, None, (1, 1), (1, 1), [(0, 0)] * 2, 1)
    got = run_kernel("conv_quantized", {"x": x, "weight": wq, "quantization_type": "linear",
                                        "quant_scale": scale, "quant_bias": shift})
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
    with pytest.raises(Error, match="conv_quantized_0.*'lut'"):
        run_kernel("conv_quantized", {"x": x, "weight": wq, "quantization_type": "lut", "quant_scale": scale,
                                      "quant_bias": shift})


def np_conv_transpose(x, w, strides, dilations, groups):
    """The full transposed convolution: each input value scatters weight * value."""
    n = x.ndim - 2
    cin, cout_g, k = w.shape[0], w.shape[1], w.shape[2:]
    full = [(x.shape[2 + i] - 1) * strides[i] + (k[i] - 1) * dilations[i] + 1 for i in range(n)]
    y = np.zeros((x.shape[0], cout_g * groups, *full))
    for ic in range(cin):
        g = ic // (cin // groups)
        for pos in itertools.product(*[range(s) for s in x.shape[2:]]):
            idx = tuple(slice(p * s, p * s + (kk - 1) * d + 1, d)
                        for p, s, kk, d in zip(pos, strides, k, dilations, strict=True))
            value = x[(slice(None), ic, *pos)].reshape((-1,) + (1,) * (n + 1))
            y[(slice(None), slice(g * cout_g, (g + 1) * cout_g), *idx)] += value * w[ic]
    return y


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("sizes, k, strides, dilations, groups", CONFIGS[:5] + [((3, 4, 3), (2, 2, 3), (2, 1, 2),
                                                                                  (1, 2, 1), 2)])
@pytest.mark.parametrize("pad_type", [None, "custom", "same"])
def test_conv_transpose(sizes, k, strides, dilations, groups, pad_type, dtype):
    cin, cout = 4, 6 if groups != 4 else 4
    x = RNG.uniform(-1, 1, (2, cin, *sizes)).astype(dtype)
    w = RNG.uniform(-1, 1, (cin, cout // groups, *k)).astype(dtype)
    b = RNG.uniform(-1, 1, cout).astype(dtype)
    full = np_conv_transpose(x.astype(np.float64), w.astype(np.float64), strides, dilations, groups)
    inputs = {"x": x, "weight": w, "bias": b, "strides": np.array(strides, np.int32),
              "dilations": np.array(dilations, np.int32), "groups": np.int32(groups)}
    n = len(sizes)
    crop = [(0, f) for f in full.shape[2:]]
    if pad_type == "custom":  # Dout = (D_in - 1) * stride + (K - 1) * dilation + 1 - pad_before - pad_after
        pads = [(1, 0), (0, 1), (1, 1)][:n]
        inputs.update(pad_type="custom", pad=np.array([p for ba in pads for p in ba], np.int32))
        crop = [(pb, f - pb - pa) for (pb, pa), f in zip(pads, full.shape[2:], strict=True)]
    if pad_type == "same":  # Dout = D_in * stride, cropped as same pads a conv (odd pixel from the end)
        inputs["pad_type"] = "same"
        totals = [max((kk - 1) * d + 1 - s, 0) for kk, d, s in zip(k, dilations, strides, strict=True)]
        crop = [(t // 2, size * s) for t, size, s in zip(totals, sizes, strides, strict=True)]
    ends = [(0, max(st + ln - f, 0)) for (st, ln), f in zip(crop, full.shape[2:], strict=True)]
    padded = np.pad(full, [(0, 0), (0, 0), *ends])
    want = padded[(slice(None), slice(None), *[slice(st, st + ln) for st, ln in crop])] + b.reshape((-1,) + (1,) * n)
    got = run_kernel("conv_transpose", inputs, consts=set(inputs) - {"x"})
    assert got.dtype == dtype and got.shape == want.shape
    tol = 1e-5 if dtype == np.float32 else 2e-2
    np.testing.assert_allclose(got.astype(np.float64), want, rtol=tol, atol=tol)


@pytest.mark.parametrize("opset", [15, 17])
@pytest.mark.parametrize("dim", [1, 2, 3])
def test_conv_transpose_matches_pytorch_with_output_shape(dim, opset):
    # coremltools' own op test: torch's ConvTranspose with symmetric padding, and output_shape = its output
    cls = {1: torch.nn.ConvTranspose1d, 2: torch.nn.ConvTranspose2d, 3: torch.nn.ConvTranspose3d}[dim]
    torch.manual_seed(0)
    m = cls(2, 4, (3, 2, 4)[:dim], stride=(2, 1, 2)[:dim], padding=(1, 0, 1)[:dim], output_padding=(1, 0, 1)[:dim],
            groups=2, bias=True)
    x = torch.randn(1, 2, *(5, 6, 4)[:dim])
    want = m(x).detach().numpy()
    pads = [p for v in (1, 0, 1)[:dim] for p in (v, v)]
    w = m.weight.detach().numpy().astype(np.float16 if opset == 17 else np.float32)
    inputs = {"x": x.numpy(), "weight": w, "bias": m.bias.detach().numpy(), "pad_type": "custom",
              "pad": np.array(pads, np.int32), "strides": np.array((2, 1, 2)[:dim], np.int32),
              "groups": np.int32(2), "output_shape": np.array(want.shape, np.int32)}
    got = run_kernel("conv_transpose", inputs, opset=opset)
    np.testing.assert_allclose(got, want, rtol=1e-5 if opset == 15 else 2e-3, atol=1e-5 if opset == 15 else 2e-3)


def test_conv_transpose_errors_name_the_op():
    x = np.ones((1, 4, 5), np.float32)
    with pytest.raises(Error, match="conv_transpose_0.*C_in = 4"):
        run_kernel("conv_transpose", {"x": x, "weight": np.ones((3, 2, 2), np.float32)})
    with pytest.raises(Error, match="conv_transpose_0.*pad_type 'same_lower'"):  # not one of its pad types
        run_kernel("conv_transpose", {"x": x, "weight": np.ones((4, 2, 2), np.float32), "pad_type": "same_lower"},
                   opset=18)
    with pytest.raises(Error, match="conv_transpose_0.*positive"):
        run_kernel("conv_transpose", {"x": x, "weight": np.ones((4, 2, 2), np.float32), "pad_type": "custom",
                                      "pad": np.array([3, 3], np.int32)})
