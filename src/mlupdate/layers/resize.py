"""Spatial layers: padding, constantPad, upsample, resizeBilinear, crop, reorganizeData.

Resampling grids follow the proto's ``SamplingMode`` / ``LinearUpsampleMode`` definitions and
are computed when the graph is built or traced (spatial sizes are fixed; only the batch varies).
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
from mlupdate.layers.common import check_size, float_list, fold, int_list, linear_along, nearest_along
from mlupdate.layers.conv import border_amounts


class Padding(nn.Module):
    """``padding``: pad H and W with a constant, by reflection or by replication."""

    def __init__(self, p: Any) -> None:
        super().__init__()
        self.mode = p.WhichOneof("PaddingType") or "constant"
        self.value = float(p.constant.value) if self.mode == "constant" else 0.0
        t, b, l, r = border_amounts(p)
        self.pad = (l, r, t, b)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        l, r, t, b = self.pad
        check_size(x[0].numel() // max(int(x.shape[-2] * x.shape[-1]), 1) * (int(x.shape[-2]) + t + b)
                   * (int(x.shape[-1]) + l + r), f"padding by {list(self.pad)}")
        if self.mode == "constant":
            return fold(lambda t: F.pad(t, self.pad, value=self.value), x)
        mode = "reflect" if self.mode == "reflection" else "replicate"
        return fold(lambda t: F.pad(t, self.pad, mode=mode), x)


@register("padding")
def _padding(p: Any, ctx: BuildContext) -> nn.Module:
    return Padding(p)


class ConstantPad(nn.Module):
    """``constantPad``: pad every axis by (start, end) amounts.

    In padToGivenOutputSizeMode the non-zero value of each pair is the output size on that side.
    """

    def __init__(self, value: float, amounts: list[int], to_size: bool) -> None:
        super().__init__()
        self.value, self.amounts, self.to_size = value, amounts, to_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pairs = [(self.amounts[2 * i], self.amounts[2 * i + 1]) for i in range(len(self.amounts) // 2)]
        offset = x.dim() - len(pairs)
        if offset < 1:
            raise ValueError(f"{len(pairs)} (start, end) pairs for a rank-{x.dim() - 1} input")
        pad: list[int] = []
        for i in reversed(range(len(pairs))):
            s, e = pairs[i]
            if self.to_size:
                size = int(x.shape[offset + i])
                s, e = (max(s - size, 0), 0) if s else (0, max(e - size, 0) if e else 0)
            pad += [s, e]
        grown = list(x.shape[1:])
        for k, i in enumerate(reversed(range(len(pairs)))):
            grown[offset - 1 + i] += pad[2 * k] + pad[2 * k + 1]
        check_size(grown, f"padding by {self.amounts}")
        return F.pad(x, pad, value=self.value)


class DynamicConstantPad(nn.Module):
    """``constantPad`` with the pad amounts in a second input (the output shape follows the values)."""

    per_example = True
    exportable = False

    def __init__(self, value: float, to_size: bool) -> None:
        super().__init__()
        self.value, self.to_size = value, to_size

    def forward(self, x: torch.Tensor, amounts: torch.Tensor) -> torch.Tensor:
        values = [int(v) for v in amounts[0].reshape(-1).tolist()]
        if len(values) % 2 or any(v < 0 for v in values):
            raise ValueError(f"pad amounts {values} must be non-negative (start, end) pairs")
        return ConstantPad(self.value, values, self.to_size)(x)


@register("constantPad")
def _constant_pad(p: Any, ctx: BuildContext) -> nn.Module:
    if len(ctx.inputs) > 1:
        return DynamicConstantPad(float(p.value), bool(p.padToGivenOutputSizeMode))
    amounts = int_list(p.padAmounts)
    if not amounts or len(amounts) % 2 or any(v < 0 for v in amounts):
        raise SpecError(f"ConstantPad layer '{ctx.name}' has padAmounts {amounts}; Core ML needs non-negative "
                        "(start, end) pairs.")
    return ConstantPad(float(p.value), amounts, bool(p.padToGivenOutputSizeMode))


def upsample_grid(n_in: int, n_out: int, mode: int) -> np.ndarray:
    """Bilinear upsample source positions: DEFAULT (0), ALIGN_CORNERS_TRUE (1), ALIGN_CORNERS_FALSE (2)."""
    i = np.arange(n_out, dtype=np.float64)
    if mode == 1:
        spacing = (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
        return i * spacing
    if mode == 2:
        spacing = n_in / n_out
        return i * spacing + 0.5 * spacing - 0.5
    spacing = (n_in - n_in / n_out) / (n_out - 1) if n_out > 1 else 0.0
    return i * spacing


def sampling_grid(n_in: int, n_out: int, method: int) -> np.ndarray:
    """``SamplingMode`` grid: STRICT_ALIGN_ENDPOINTS (0), ALIGN_ENDPOINTS (1), UPSAMPLE (2), ROI_ALIGN (3)."""
    if method == 1 and n_out == 1:
        return np.array([(n_in - 1) / 2.0])
    if method in (0, 1):
        return np.linspace(0.0, n_in - 1, n_out)
    if method == 2:
        return np.linspace(0.0, n_in - n_in / n_out, n_out)
    spacing = max(1, n_in - 1) / n_out
    start = 0.5 * spacing
    return np.linspace(start, start + (n_out - 1) * spacing, n_out)


class Upsample(nn.Module):
    """``upsample``: nearest (integer factors) or bilinear with a LinearUpsampleMode (fractional factors allowed)."""

    def __init__(self, p: Any) -> None:
        super().__init__()
        frac = float_list(p.fractionalScalingFactor)
        ints = int_list(p.scalingFactor)
        self.factors = tuple(frac) if frac else tuple(float(v) for v in ints) if ints else (1.0, 1.0)
        self.bilinear = int(p.mode) == 1
        self.linear_mode = int(p.linearUpsampleMode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for dim, f in ((-2, self.factors[0]), (-1, self.factors[1])):
            n_in = int(x.shape[dim])
            n_out = int(math.floor(n_in * f + 1e-6))
            check_size(x[0].numel() // max(n_in, 1) * n_out, f"upsampling by {list(self.factors)}")
            if self.bilinear:
                x = linear_along(x, dim, upsample_grid(n_in, n_out, self.linear_mode))
            elif n_out != n_in:
                x = nearest_along(x, dim, np.arange(n_out) * n_in // n_out)
        return x


@register("upsample")
def _upsample(p: Any, ctx: BuildContext) -> nn.Module:
    return Upsample(p)


class ResizeBilinear(nn.Module):
    """``resizeBilinear``: bilinear resize to ``targetSize`` on a SamplingMode grid."""

    def __init__(self, size: list[int], method: int) -> None:
        super().__init__()
        self.size = (size + [1, 1])[:2]
        self.method = method

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for dim, n_out in ((-2, self.size[0]), (-1, self.size[1])):
            check_size(x[0].numel() // max(int(x.shape[dim]), 1) * n_out, f"targetSize {self.size}")
            x = linear_along(x, dim, sampling_grid(int(x.shape[dim]), n_out, self.method))
        return x


@register("resizeBilinear")
def _resize_bilinear(p: Any, ctx: BuildContext) -> nn.Module:
    return ResizeBilinear(int_list(p.targetSize) or [1, 1], int(p.mode.samplingMethod))


class Crop(nn.Module):
    """``crop``: remove border amounts (one input) or take the second input's H, W at ``offset``."""

    def __init__(self, p: Any) -> None:
        super().__init__()
        self.amounts = border_amounts(p.cropAmounts)
        self.offset = (int_list(p.offset) + [0, 0])[:2]

    def forward(self, x: torch.Tensor, ref: torch.Tensor | None = None) -> torch.Tensor:
        h, w = int(x.shape[-2]), int(x.shape[-1])
        if ref is None:
            t, b, l, r = self.amounts
            return x[..., t:h - b, l:w - r]
        oh, ow = int(ref.shape[-2]), int(ref.shape[-1])
        t, l = self.offset
        return x[..., t:t + oh, l:l + ow]


@register("crop")
def _crop(p: Any, ctx: BuildContext) -> nn.Module:
    return Crop(p)


class ReorganizeData(nn.Module):
    """``reorganizeData``: SPACE_TO_DEPTH / DEPTH_TO_SPACE (TensorFlow channel order) and PIXEL_SHUFFLE."""

    def __init__(self, mode: int, block: int) -> None:
        super().__init__()
        self.mode, self.b = mode, block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fold(self._forward, x)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        b = self.b
        if self.mode == 0:
            y = x.reshape(-1, c, h // b, b, w // b, b).permute(0, 3, 5, 1, 2, 4)
            return y.reshape(-1, c * b * b, h // b, w // b)
        if self.mode == 1:
            y = x.reshape(-1, b, b, c // (b * b), h, w).permute(0, 3, 4, 1, 5, 2)
            return y.reshape(-1, c // (b * b), h * b, w * b)
        return F.pixel_shuffle(x, b)


@register("reorganizeData")
def _reorganize(p: Any, ctx: BuildContext) -> nn.Module:
    return ReorganizeData(int(p.mode), int(p.blockSize))
