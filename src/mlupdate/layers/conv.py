"""Convolution and deconvolution (``convolution``)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mlupdate.layers import BuildContext, register
from mlupdate.layers.weights import set_weights, weight_array


def same_padding(size: int, k: int, s: int, d: int, top_left_heavy: bool) -> tuple[int, int]:
    """Core ML / TensorFlow 'same' padding for one spatial axis: (start, end)."""
    out = math.ceil(size / s)
    total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
    small = total // 2
    return (total - small, small) if top_left_heavy else (small, total - small)


class Convolution(nn.Module):
    """A Core ML convolution or deconvolution layer."""

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
        self.valid_pad = (0, 0, 0, 0)
        if self.pad_mode == "valid" and len(p.valid.paddingAmounts.borderAmounts) == 2:
            h, w = p.valid.paddingAmounts.borderAmounts
            self.valid_pad = (int(h.startEdgeSize), int(h.endEdgeSize), int(w.startEdgeSize), int(w.endEdgeSize))
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
        squeeze = x.dim() == 5
        if squeeze:  # rank-5 ND blob [B, S, C, H, W] with S == 1 is not expected; fold it
            x = x.reshape(-1, *x.shape[-3:])
        out = self._deconv(x) if self.deconv else self._conv(x)
        return out

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
        t, b, l, r = self.valid_pad if self.pad_mode == "valid" else (0, 0, 0, 0)
        out = F.conv_transpose2d(x, self.weight, self.bias, self.stride, 0, 0, self.groups, self.dil)
        full_h, full_w = out.shape[-2], out.shape[-1]
        if self.output_shape:
            oh, ow = self.output_shape
            if self.pad_mode == "same":
                t, l = (full_h - oh) // 2, (full_w - ow) // 2
            if full_h < oh + t or full_w < ow + l:
                out = F.pad(out, (0, max(ow + l - full_w, 0), 0, max(oh + t - full_h, 0)))
            return out[..., t:t + oh, l:l + ow]
        if self.pad_mode == "same":
            oh, ow = x.shape[-2] * self.stride[0], x.shape[-1] * self.stride[1]
            t, l = (full_h - oh) // 2, (full_w - ow) // 2
            return out[..., t:t + oh, l:l + ow]
        return out[..., t:full_h - b, l:full_w - r]

    def write_back(self, p: Any) -> None:
        """Copy the current weights into the layer's protobuf parameters."""
        set_weights(p.weights, self.weight.detach().cpu().numpy())
        if self.bias is not None:
            set_weights(p.bias, self.bias.detach().cpu().numpy())


@register("convolution")
def _convolution(p: Any, ctx: BuildContext) -> nn.Module:
    return Convolution(p, ctx.name)
