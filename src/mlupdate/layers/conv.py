"""Convolution and deconvolution (``convolution``): groups, dilation, valid/same/explicit padding, outputShape."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mlupdate.layers import BuildContext, register
from mlupdate.layers.common import fold
from mlupdate.layers.weights import set_weights, weight_array


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


class Convolution(nn.Module):
    """A Core ML convolution or deconvolution layer.

    Inputs of rank > 4 treat every leading axis as batch. Deconvolution follows the proto:
    ``H_out = (H_in - 1) * stride + (k - 1) * dilation + 1 - (top + bottom)`` for valid padding,
    ``H_in * stride`` for same padding, or ``outputShape`` when set (cropped from the top-left
    padding amount; positions past the transposed convolution's extent hold the bias only).
    """

    def __init__(self, p: Any, name: str = "") -> None:
        super().__init__()
        self.out_ch = int(p.outputChannels)
        self.k_ch = int(p.kernelChannels)
        self.groups = max(int(p.nGroups), 1)
        self.k = tuple(int(v) for v in p.kernelSize) or (3, 3)
        self.stride = tuple(int(v) for v in p.stride) or (1, 1)
        self.dil = tuple(int(v) for v in p.dilationFactor) or (1, 1)
        self.deconv = bool(p.isDeconvolution)
        self.output_shape = tuple(int(v) for v in p.outputShape)
        self.pad_mode = p.WhichOneof("ConvolutionPaddingType") or "valid"
        self.top_left = self.pad_mode == "same" and p.same.asymmetryMode == 1
        self.valid_pad = border_amounts(p.valid) if self.pad_mode == "valid" else (0, 0, 0, 0)
        what = f"Convolution layer '{name}'"
        if self.deconv:
            shape = (self.k_ch, self.out_ch // self.groups, *self.k)
        else:
            shape = (self.out_ch, self.k_ch, *self.k)
        w = weight_array(p.weights, int(np.prod(shape)), f"{what} weights").reshape(shape)
        self.weight = nn.Parameter(torch.from_numpy(w.copy()), requires_grad=False)
        if p.hasBias:
            b = weight_array(p.bias, self.out_ch, f"{what} bias")
            self.bias = nn.Parameter(torch.from_numpy(b.copy()), requires_grad=False)
        else:
            self.bias = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fold(self._deconv if self.deconv else self._conv, x)

    def _conv(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad_mode == "same":
            ph = same_padding(x.shape[-2], self.k[0], self.stride[0], self.dil[0], self.top_left)
            pw = same_padding(x.shape[-1], self.k[1], self.stride[1], self.dil[1], self.top_left)
            pad = (pw[0], pw[1], ph[0], ph[1])
        else:
            t, b, l, r = self.valid_pad
            pad = (l, r, t, b)
        if any(pad):
            if pad[0] == pad[1] and pad[2] == pad[3]:
                return F.conv2d(x, self.weight, self.bias, self.stride, (pad[2], pad[0]), self.dil, self.groups)
            x = F.pad(x, pad)
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dil, self.groups)

    def _deconv(self, x: torch.Tensor) -> torch.Tensor:
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

    def write_back(self, p: Any) -> None:
        """Copy the current weights into the layer's protobuf parameters."""
        set_weights(p.weights, self.weight.detach().cpu().numpy())
        if self.bias is not None:
            set_weights(p.bias, self.bias.detach().cpu().numpy())


@register("convolution")
def _convolution(p: Any, ctx: BuildContext) -> nn.Module:
    return Convolution(p, ctx.name)
