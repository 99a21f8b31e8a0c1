"""convolution with dynamic weights (2 inputs), and build-time checks of convolution parameters.

Per NeuralNetwork.proto (ConvolutionLayerParams), from specification 4 a convolution may take a
second input, the weight blob, of Core ML shape ``[outputChannels, kernelChannels, kernelHeight,
kernelWidth]`` (``kernelChannels = inputChannels / nGroups``); Core ML's validator refuses it for
deconvolution, dilation and the rank-5 array mapping. The harness gives each example its own
weights (the second example shuffles the first one's values), so the references compute
``torch.nn.functional.conv2d`` per example.
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

REFERENCE = "torch.nn.functional.conv2d per example, with each example's own weight input and the proto's padding"


def _same(size: int, k: int, s: int, top_left: bool) -> tuple[int, int]:
    total = max((math.ceil(size / s) - 1) * s + k - size, 0)
    small = total // 2
    return (total - small, small) if top_left else (small, total - small)


DYNAMIC = {
    # id: (input shape, weight shape [C_out, C_in / g, kH, kW], groups, stride, mode, pads (t, b, l, r) or asym, bias)
    "valid": ((1, 3, 7, 8), (4, 3, 3, 3), 1, (1, 1), "valid", (0, 0, 0, 0), False),
    "explicit_pad_stride": ((2, 2, 6, 7), (3, 2, 2, 3), 1, (2, 1), "valid", (1, 0, 2, 1), False),
    "same_bottom_right": ((1, 3, 7, 9), (2, 3, 3, 4), 1, (2, 3), "same", "BOTTOM_RIGHT_HEAVY", False),
    "same_top_left": ((1, 2, 6, 5), (3, 2, 4, 2), 1, (1, 2), "same", "TOP_LEFT_HEAVY", False),
    "grouped": ((1, 4, 5, 6), (6, 2, 3, 2), 2, (1, 1), "valid", (1, 1, 0, 0), False),
    "bias_from_params": ((1, 3, 5, 5), (2, 3, 3, 3), 1, (1, 1), "valid", (1, 1, 1, 1), True),
    "rank5_input": ((2, 1, 2, 5, 6), (3, 2, 2, 2), 1, (2, 2), "same", "BOTTOM_RIGHT_HEAVY", False),
}

BIAS = np.array([0.5, -1.25, 2.0, 0.75, -0.5, 1.5], np.float32)


def _case(cid: str) -> Case:
    xshape, wshape, g, s, mode, pads, has_bias = DYNAMIC[cid]
    cout, kch, kh, kw = wshape

    def add(b: Any) -> None:
        kwargs = (dict(padding_top=pads[0], padding_bottom=pads[1], padding_left=pads[2], padding_right=pads[3])
                  if mode == "valid" else dict(same_padding_asymmetry_mode=pads))
        b.add_convolution("dyn_conv", kch, cout, kh, kw, s[0], s[1], mode, g, None, None, False,
                          input_name=["x", "w"], output_name="out", **kwargs)
        if has_bias:  # the builder stores no bias for 2 inputs: set it on the params by hand
            p = b.nn_spec.layers[-1].convolution
            p.hasBias = True
            p.bias.floatValue.extend(BIAS[:cout].tolist())

    def ref(x: np.ndarray, w: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(x).reshape(-1, *xshape[-3:])
        if mode == "valid":
            t = F.pad(t, (pads[2], pads[3], pads[0], pads[1]))
        else:
            ph = _same(xshape[-2], kh, s[0], pads == "TOP_LEFT_HEAVY")
            pw = _same(xshape[-1], kw, s[1], pads == "TOP_LEFT_HEAVY")
            t = F.pad(t, (*pw, *ph))
        bias = torch.from_numpy(BIAS[:cout]) if has_bias else None
        y = F.conv2d(t, torch.from_numpy(w), bias, s, 0, 1, g)
        return y.reshape(*xshape[:-3], *y.shape[1:]).numpy()

    return Case(f"dynamic_{cid}", add, {"x": rand(*xshape, seed=1), "w": rand(*wshape, seed=2)}, ref, nd=True,
                atol=1e-4)


def _weights_from_a_layer() -> Case:
    """The weight blob is computed by an earlier layer (a scaled copy of an input)."""

    def add(b: Any) -> None:
        b.add_activation("scale_w", "LINEAR", "w", "w2", params=[2.0, 0.0])
        b.add_convolution("dyn_conv", 2, 3, 2, 2, 1, 1, "valid", 1, None, None, False,
                          input_name=["x", "w2"], output_name="out")

    def ref(x: np.ndarray, w: np.ndarray) -> np.ndarray:
        return F.conv2d(torch.from_numpy(x), torch.from_numpy(2 * w)).numpy()

    return Case("dynamic_weights_from_layer", add, {"x": rand(1, 2, 4, 5, seed=3), "w": rand(3, 2, 2, 2, seed=4)},
                ref, nd=True, atol=1e-4)


CASES = [*(_case(c) for c in DYNAMIC), _weights_from_a_layer()]

test_cases = case_test(CASES)


# -- dynamic-weight refusals -------------------------------------------------------------------------


def _dynamic_spec(nd: bool = True, **changes: Any) -> Any:
    b = builder([("x", (1, 2, 5, 5)), ("w", (3, 2, 2, 2))], nd=nd) if nd else \
        builder([("x", (2, 5, 5)), ("w", (24,))], nd=False)
    b.add_convolution("dyn_conv", 2, 3, 2, 2, 1, 1, "valid", 1, None, None, False, input_name=["x", "w"],
                      output_name="out")
    p = b.nn_spec.layers[0].convolution
    for k, v in changes.items():
        if k == "dilationFactor":
            p.dilationFactor[:] = v
        else:
            setattr(p, k, v)
    return b


def _load_bytes(b: Any, tmp_path: Any) -> Any:
    path = tmp_path / "m.mlmodel"
    path.write_bytes(b.spec.SerializeToString())
    return mlupdate.load(path, executor="torch")


@pytest.mark.parametrize("changes", [
    {"isDeconvolution": True}, {"dilationFactor": [2, 1]}, {"hasBias": True}, {"nd": False},
], ids=["deconvolution", "dilated", "has_bias_without_values", "rank5_mapping"])
def test_dynamic_weight_refusals_are_spec_errors(tmp_path, changes):
    with pytest.raises(mlupdate.SpecError, match="dyn_conv"):
        _load_bytes(_dynamic_spec(**changes), tmp_path)


def test_dynamic_weight_shape_mismatch_names_layer(tmp_path):
    b = _dynamic_spec()
    b.spec.description.input[1].type.multiArrayType.shape[2] = 1  # declares [3, 2, 1, 2]; the layer wants 2x2
    with pytest.raises(mlupdate.Error, match="dyn_conv"):  # found when loading (a trial run) or predicting
        mlupdate.load(save(b, tmp_path), executor="torch").predict({"x": rand(1, 2, 5, 5), "w": rand(3, 2, 1, 2)})


def test_dynamic_weight_convolution_is_not_trainable_weights(tmp_path):
    """The compiled module stores no weight tensor (it is an input), only the params' bias if any."""
    from mlupdate.layers import BuildContext, build_layer

    layer = _dynamic_spec().nn_spec.layers[0]
    module = build_layer(layer, BuildContext(nd=True, inputs=tuple(layer.input)))
    assert module.weight is None and module.bias is None


# -- build-time checks of constant-weight convolutions ---------------------------------------------------


def _static_spec(deconv: bool = False, **changes: Any) -> Any:
    b = builder([("x", (4, 6, 6))])
    w = np.ones((3, 3, 2, 4), np.float32)  # (kH, kW, C_in / groups, C_out) or (kH, kW, C_in, C_out / groups)
    b.add_convolution("bad_conv", 2 if not deconv else 4, 4, 3, 3, 1, 1, "valid", 2,
                      w if not deconv else np.ones((3, 3, 4, 2), np.float32), np.zeros(4, np.float32), True,
                      is_deconv=deconv, input_name="x", output_name="out")
    p = b.nn_spec.layers[0].convolution
    for k, v in changes.items():
        if isinstance(v, list):
            getattr(p, k)[:] = v
        else:
            setattr(p, k, v)
    return b


@pytest.mark.parametrize("changes", [
    {"stride": [0, 1]}, {"dilationFactor": [1, 0]}, {"kernelSize": [3, 0]}, {"kernelSize": [3, 3, 3]},
    {"outputChannels": 5}, {"nGroups": 3}, {"kernelChannels": 0}, {"outputChannels": 0},
], ids=["stride0", "dilation0", "kernel0", "kernel_rank", "weight_count", "groups_not_dividing_out",
        "kernel_channels0", "output_channels0"])
def test_static_convolution_bad_params_are_spec_errors(tmp_path, changes):
    with pytest.raises(mlupdate.SpecError, match="bad_conv"):
        _load_bytes(_static_spec(**changes), tmp_path)


def test_deconvolution_bad_params_are_spec_errors(tmp_path):
    with pytest.raises(mlupdate.SpecError, match="bad_conv"):
        _load_bytes(_static_spec(deconv=True, kernelChannels=3), tmp_path)
    with pytest.raises(mlupdate.SpecError, match="bad_conv"):
        _load_bytes(_static_spec(deconv=True, outputShape=[5, 5, 5]), tmp_path)


def test_bias_count_mismatch_is_a_spec_error(tmp_path):
    b = _static_spec()
    del b.nn_spec.layers[0].convolution.bias.floatValue[-1]
    with pytest.raises(mlupdate.SpecError, match="bad_conv"):
        _load_bytes(b, tmp_path)


def test_wrong_input_channels_names_layer(tmp_path):
    b = _static_spec()
    b.spec.description.input[0].type.multiArrayType.shape[0] = 3
    with pytest.raises(mlupdate.Error, match="bad_conv"):
        _load_bytes(b, tmp_path).predict({"x": rand(3, 6, 6)})
