"""Convolution and deconvolution (``convolution``): groups, dilation, valid/same/explicit padding, outputShape.

Kinds: ``convolution``, with constant weights (one input) or, in ND networks, with dynamic weights
(two inputs: the second input is the weight blob, see :class:`DynamicConvolution`).

Parameters are checked when the layer is built: kernel sizes, strides and dilations must be
positive, channel counts positive and divisible by ``nGroups`` as the proto requires, and the
weight and bias counts must match the declared shapes; a violation raises ``SpecError`` naming
the layer.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mlupdate.errors import SpecError
from mlupdate.layers import BuildContext, register
from mlupdate.layers.common import check_size, fold
from mlupdate.layers.weights import weight_array


def same_padding(size: int, k: int, s: int, d: int, top_left_heavy: bool) -> tuple[int, int]:
    """Core ML / TensorFlow 'same' padding for one spatial axis: (start, end)."""
    out = math.ceil(size / s)
    total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
    small = total // 2
    return (total - small, small) if top_left_heavy else (small, total - small)


def border_amounts(msg: Any) -> tuple[int, int, int, int]:
    """A ``BorderAmounts`` (or a message whose ``paddingAmounts`` is one) as (top, bottom, left, right)."""
    if "paddingAmounts" in msg.DESCRIPTOR.fields_by_name:
        msg = msg.paddingAmounts
    b = list(msg.borderAmounts)
    h = (int(b[0].startEdgeSize), int(b[0].endEdgeSize)) if len(b) > 0 else (0, 0)
    w = (int(b[1].startEdgeSize), int(b[1].endEdgeSize)) if len(b) > 1 else (0, 0)
    return (*h, *w)


def _pair(values: Any, default: int, field: str, what: str) -> tuple[int, int]:
    """A repeated ``[H, W]`` field, ``(default, default)`` when unset; each value must be positive."""
    v = tuple(int(x) for x in values)
    if not v:
        return (default, default)
    if len(v) != 2:
        raise SpecError(f"{what} has {field} {list(v)}; it must hold 2 values [H, W]. Fix the layer's {field}.")
    if min(v) <= 0:
        raise SpecError(f"{what} has {field} {list(v)}; every value must be positive. Fix the layer's {field}.")
    return v  # type: ignore[return-value]


def _has_values(wp: Any) -> bool:
    """Whether a ``WeightParams`` holds any values (float, float16, raw or quantized)."""
    return bool(len(wp.floatValue) or len(wp.float16Value) or len(wp.rawValue) or wp.HasField("quantization"))


class ConvParams:
    """The checked geometry of a ``ConvolutionLayerParams`` (defaults applied as the proto says).

    Raises:
        SpecError: If a size, stride or dilation is zero, a channel count is zero or not divisible
            by ``nGroups``, or ``outputShape`` does not hold 2 values.
    """

    def __init__(self, p: Any, name: str) -> None:
        self.what = f"Convolution layer '{name}'"
        self.out_ch = int(p.outputChannels)
        self.k_ch = int(p.kernelChannels)
        self.groups = max(int(p.nGroups), 1)
        self.deconv = bool(p.isDeconvolution)
        self.k = _pair(p.kernelSize, 3, "kernelSize", self.what)
        self.stride = _pair(p.stride, 1, "stride", self.what)
        self.dil = _pair(p.dilationFactor, 1, "dilationFactor", self.what)
        self.output_shape = tuple(int(v) for v in p.outputShape)
        if self.out_ch <= 0 or self.k_ch <= 0:
            raise SpecError(f"{self.what} has outputChannels={self.out_ch}, kernelChannels={self.k_ch}; both must "
                            "be positive. Fix the layer's channel counts.")
        if self.out_ch % self.groups:
            raise SpecError(f"{self.what} has outputChannels={self.out_ch}, which nGroups={self.groups} does not "
                            "divide. Fix outputChannels or nGroups.")
        if self.deconv and self.k_ch % self.groups:
            raise SpecError(f"{self.what} is a deconvolution with kernelChannels (input channels)={self.k_ch}, "
                            f"which nGroups={self.groups} does not divide. Fix kernelChannels or nGroups.")
        if self.output_shape and (len(self.output_shape) != 2 or min(self.output_shape) <= 0):
            raise SpecError(f"{self.what} has outputShape {list(self.output_shape)}; it must be 2 positive values "
                            "[H_out, W_out] or unset.")
        self.in_ch = self.k_ch if self.deconv else self.k_ch * self.groups
        self.pad_mode = p.WhichOneof("ConvolutionPaddingType") or "valid"
        self.top_left = self.pad_mode == "same" and p.same.asymmetryMode == 1
        self.valid_pad = border_amounts(p.valid) if self.pad_mode == "valid" else (0, 0, 0, 0)

    def check_channels(self, x: torch.Tensor) -> None:
        """Raise ValueError unless ``x`` (channels at dim -3) has the input channels the layer declares."""
        if x.dim() < 4 or int(x.shape[-3]) != self.in_ch:
            raise ValueError(f"the input has shape {list(x.shape[1:])} (per example) but the layer expects "
                             f"{self.in_ch} channels at axis -3 (kernelChannels={self.k_ch}, nGroups={self.groups})")

    def conv_pad(self, h: int, w: int) -> tuple[int, int, int, int]:
        """Zero padding of a convolution's input as ``F.pad`` wants it: (left, right, top, bottom)."""
        if self.pad_mode == "same":
            ph = same_padding(h, self.k[0], self.stride[0], self.dil[0], self.top_left)
            pw = same_padding(w, self.k[1], self.stride[1], self.dil[1], self.top_left)
            return (pw[0], pw[1], ph[0], ph[1])
        t, b, l, r = self.valid_pad
        return (l, r, t, b)


class Convolution(nn.Module):
    """A Core ML convolution or deconvolution layer.

    Inputs of rank > 4 treat every leading axis as batch. Deconvolution follows the proto:
    ``H_out = (H_in - 1) * stride + (k - 1) * dilation + 1 - (top + bottom)`` for valid padding,
    ``H_in * stride`` for same padding, or ``outputShape`` when set (cropped from the top-left
    padding amount; positions past the transposed convolution's extent hold the bias only).
    """

    def __init__(self, p: Any, name: str = "") -> None:
        super().__init__()
        g = ConvParams(p, name)
        self.geom = g
        self.out_ch, self.k_ch, self.groups, self.k = g.out_ch, g.k_ch, g.groups, g.k
        self.stride, self.dil, self.deconv, self.output_shape = g.stride, g.dil, g.deconv, g.output_shape
        self.pad_mode, self.top_left, self.valid_pad = g.pad_mode, g.top_left, g.valid_pad
        if self.deconv:
            shape = (self.k_ch, self.out_ch // self.groups, *self.k)
        else:
            shape = (self.out_ch, self.k_ch, *self.k)
        w = weight_array(p.weights, int(np.prod(shape)), f"{g.what} weights", shape=shape,
                         channel_axis=1 if self.deconv else 0).reshape(shape)
        self.weight = nn.Parameter(torch.from_numpy(w.copy()), requires_grad=False)
        if p.hasBias:
            b = weight_array(p.bias, self.out_ch, f"{g.what} bias")
            self.bias = nn.Parameter(torch.from_numpy(b.copy()), requires_grad=False)
        else:
            self.bias = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.geom.check_channels(x)
        return fold(self._deconv if self.deconv else self._conv, x)

    def _conv(self, x: torch.Tensor) -> torch.Tensor:
        pad = self.geom.conv_pad(int(x.shape[-2]), int(x.shape[-1]))
        check_size([x.shape[-3], x.shape[-2] + pad[2] + pad[3], x.shape[-1] + pad[0] + pad[1]], "the padded input")
        if any(pad):
            if pad[0] == pad[1] and pad[2] == pad[3]:
                return F.conv2d(x, self.weight, self.bias, self.stride, (pad[2], pad[0]), self.dil, self.groups)
            x = F.pad(x, pad)
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dil, self.groups)

    def _deconv(self, x: torch.Tensor) -> torch.Tensor:
        full = [(int(x.shape[d]) - 1) * self.stride[i] + (self.k[i] - 1) * self.dil[i] + 1
                for i, d in ((0, -2), (1, -1))]
        check_size([self.out_ch, *(max(f, o) for f, o in zip(full, self.output_shape or full, strict=True))],
                   "the deconvolution's output")
        out = F.conv_transpose2d(x, self.weight, None, self.stride, 0, 0, self.groups, self.dil)
        full_h, full_w = out.shape[-2], out.shape[-1]
        t, b, l, r = self.valid_pad
        if self.output_shape:
            oh, ow = self.output_shape
            if self.pad_mode == "same":
                t, l = max(full_h - oh, 0) // 2, max(full_w - ow, 0) // 2
            if full_h < oh + t or full_w < ow + l:
                out = F.pad(out, (0, max(ow + l - full_w, 0), 0, max(oh + t - full_h, 0)))
            out = out[..., t:t + oh, l:l + ow]
        elif self.pad_mode == "same":
            oh, ow = x.shape[-2] * self.stride[0], x.shape[-1] * self.stride[1]
            t, l = max(full_h - oh, 0) // 2, max(full_w - ow, 0) // 2
            out = out[..., t:t + oh, l:l + ow]
        else:
            out = out[..., t:full_h - b, l:full_w - r]
        return out if self.bias is None else out + self.bias.reshape(-1, 1, 1)


class DynamicConvolution(nn.Module):
    """A convolution whose weights are its second input (Core ML specification 4+, ND networks only).

    Per the proto, the weight blob has the Core ML shape ``[outputChannels, kernelChannels,
    kernelHeight, kernelWidth]`` (rank 4, ``kernelChannels == inputChannels / nGroups``), so it is
    held as ``[N, C_out, C_in / nGroups, kH, kW]``: every example may carry its own weights. Its
    shape must agree with the layer's ``outputChannels``, ``kernelChannels`` and ``kernelSize``.
    The bias, when ``hasBias``, still comes from the layer's parameters.

    The convolution is computed as one contraction of the ``kH * kW`` strided shifts of the padded
    input with the weights, which batches over examples and exports to ONNX with a dynamic batch.
    Core ML's validator refuses dynamic weights for deconvolution and dilated convolution, and so
    does the builder of this module.
    """

    weight = None  # not a trainable parameter: the weights are an input

    def __init__(self, p: Any, name: str = "") -> None:
        super().__init__()
        g = ConvParams(p, name)
        self.geom = g
        if g.deconv:
            raise SpecError(f"{g.what} is a deconvolution with 2 inputs; Core ML does not allow weights as an input "
                            "tensor for deconvolution. Store the weights in the layer.")
        if g.dil != (1, 1):
            raise SpecError(f"{g.what} has 2 inputs and dilationFactor {list(g.dil)}; Core ML does not allow a "
                            "dilated convolution with weights as an input tensor.")
        self.w_shape = (g.out_ch, g.k_ch, *g.k)
        self.bias = None
        if p.hasBias:
            if not _has_values(p.bias):
                raise SpecError(f"{g.what} has 2 inputs and hasBias set but no bias values (coremltools' builder "
                                "drops the bias of a dynamic-weight convolution). Clear hasBias and add the bias "
                                "with a separate layer, or store outputChannels bias values.")
            b = weight_array(p.bias, g.out_ch, f"{g.what} bias")
            self.bias = nn.Parameter(torch.from_numpy(b.copy()), requires_grad=False)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        g = self.geom
        g.check_channels(x)
        if w.dim() != 5 or tuple(int(v) for v in w.shape[1:]) != self.w_shape:
            raise ValueError(f"the weight input has shape {list(w.shape[1:])} (per example) but the layer declares "
                             f"[outputChannels, kernelChannels, kernelHeight, kernelWidth] = {list(self.w_shape)}")
        if x.dim() < 5:
            raise ValueError(f"the input has rank {x.dim() - 1}; a convolution input must have rank 4 or more")
        n, c, kh, kw = x.shape[0], g.in_ch, g.k[0], g.k[1]
        (sh, sw), groups = g.stride, g.groups
        pad = g.conv_pad(int(x.shape[-2]), int(x.shape[-1]))
        xp = F.pad(x, pad) if any(pad) else x
        hp, wp = int(xp.shape[-2]), int(xp.shape[-1])
        ho, wo = (hp - kh) // sh + 1, (wp - kw) // sw + 1
        if ho < 1 or wo < 1:
            raise ValueError(f"the padded input is {hp}x{wp}, smaller than the {kh}x{kw} kernel")
        x5 = xp.reshape(n, -1, c, hp, wp)
        shifts = [x5[..., i:i + (ho - 1) * sh + 1:sh, j:j + (wo - 1) * sw + 1:sw] for i in range(kh) for j in range(kw)]
        cols = torch.stack(shifts, dim=3).reshape(n, -1, groups, c // groups, kh * kw, ho, wo)
        wk = w.reshape(n, groups, g.out_ch // groups, c // groups, kh * kw)
        y = torch.einsum("nlgckhw,ngock->nlgohw", cols, wk)
        y = y.reshape((*x.shape[:-3], g.out_ch, ho, wo))
        return y if self.bias is None else y + self.bias.reshape(-1, 1, 1)


@register("convolution")
def _convolution(p: Any, ctx: BuildContext) -> nn.Module:
    n = len(ctx.inputs)
    if n == 1:
        return Convolution(p, ctx.name)
    if n != 2:
        raise SpecError(f"Convolution layer '{ctx.name}' has {n} inputs; it takes the input and, optionally, "
                        "the weights.")
    if not ctx.nd:
        raise SpecError(f"Convolution layer '{ctx.name}' has its weights as a second input, which Core ML allows "
                        "only in ND networks (not with the rank-5 array mapping). Store the weights in the layer.")
    return DynamicConvolution(p, ctx.name)
