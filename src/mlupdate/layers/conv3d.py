"""3-D convolution and pooling: ``convolution3d``, ``pooling3d``, ``globalPooling3d`` (ND networks only).

Core ML's input is ``[batch, C, D, H, W]`` (rank 5; the validator also accepts higher ranks, whose
leading axes are batch), held as ``[N, batch, C, D, H, W]``; the last four axes are handed to
torch's 3-D operators with the leading ones folded.

Padding (``PaddingType`` of both layers): ``CUSTOM`` pads by the six ``customPadding*`` amounts,
``VALID`` pads nothing (a last partial window is dropped: ``out = floor((in - k_eff) / s) + 1``) and
``SAME`` pads ``total = max((ceil(in / s) - 1) * s + k_eff - in, 0)`` split ``floor(total / 2)``
before and the rest after (back/bottom/right heavy), so that ``out = ceil(in / s)``; ``k_eff`` is
the dilated kernel ``(k - 1) * dilation + 1``. The proto says padded values are zeros; for max
pooling the padding never wins (it is ``-inf``), as in every framework Core ML converts from.
Average pooling divides by the kernel volume, or by the number of real input positions in the
window with ``countExcludePadding``.

Deconvolution (``isDeconvolution``): the stored weights are ``[C_in, C_out / nGroups, kD, kH, kW]``
(what coremltools' builder and converters write). The full transposed convolution, of size
``(in - 1) * s + k_eff``, is cropped by the custom padding (front/top/left first), to ``in * s``
centred (``SAME``, the extra on the back/bottom/right), or kept whole (``VALID``); ``outputShape``,
when set, gives the size instead (cropped from the same start; positions past the full result hold
the bias only).
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
from mlupdate.layers.common import fold
from mlupdate.layers.weights import weight_array

CUSTOM, VALID, SAME = 0, 1, 2
MAX, AVERAGE = 0, 1
_PADS = ("customPaddingFront", "customPaddingBack", "customPaddingTop", "customPaddingBottom",
         "customPaddingLeft", "customPaddingRight")


def same_pads(size: int, k: int, s: int, d: int = 1) -> tuple[int, int]:
    """(before, after) zeros of ``SAME`` padding for one axis: output ``ceil(size / s)``, extra after."""
    total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
    return total // 2, total - total // 2


def _positive(p: Any, fields: tuple[str, ...], what: str) -> tuple[int, ...]:
    values = tuple(int(getattr(p, f)) for f in fields)
    bad = [f"{f}={v}" for f, v in zip(fields, values, strict=True) if v <= 0]
    if bad:
        raise SpecError(f"{what} has {', '.join(bad)}; these must be positive integers. Fix the layer's parameters.")
    return values


def _custom_pads(p: Any, what: str) -> tuple[int, ...]:
    values = tuple(int(getattr(p, f)) for f in _PADS)
    if min(values) < 0:
        raise SpecError(f"{what} has negative custom padding {list(values)} (front, back, top, bottom, left, right); "
                        "padding amounts must be zero or positive.")
    return values


def _padding_type(p: Any, what: str) -> int:
    mode = int(p.paddingType)
    if mode not in (CUSTOM, VALID, SAME):
        raise SpecError(f"{what} has unknown paddingType {mode}; use CUSTOM (0), VALID (1) or SAME (2).")
    return mode


def _spatial_pads(mode: int, custom: tuple[int, ...], sizes: tuple[int, ...], k: tuple[int, ...],
                  s: tuple[int, ...], d: tuple[int, ...]) -> tuple[int, ...]:
    """Zero padding of (D, H, W) as ``F.pad`` wants it: (left, right, top, bottom, front, back)."""
    if mode == CUSTOM:
        f, b, t, bo, le, r = custom
        return (le, r, t, bo, f, b)
    if mode == VALID:
        return (0,) * 6
    out: list[int] = []
    for i in (2, 1, 0):
        out.extend(same_pads(sizes[i], k[i], s[i], d[i]))
    return tuple(out)


def _check_input(x: torch.Tensor, channels: int | None = None) -> None:
    if x.dim() < 6:
        raise ValueError(f"the input has rank {x.dim() - 1}; 3-D layers need rank 5 [batch, C, D, H, W] or more")
    if channels is not None and int(x.shape[-4]) != channels:
        raise ValueError(f"the input has shape {list(x.shape[1:])} (per example) but the layer expects "
                         f"{channels} channels at axis -4")


class Convolution3D(nn.Module):
    """A Core ML ``convolution3d`` layer (convolution or deconvolution, groups, dilation, bias)."""

    def __init__(self, p: Any, name: str = "") -> None:
        super().__init__()
        what = f"Convolution3D layer '{name}'"
        self.in_ch, self.out_ch, self.groups = _positive(p, ("inputChannels", "outputChannels", "nGroups"), what)
        self.k = _positive(p, ("kernelDepth", "kernelHeight", "kernelWidth"), what)
        self.s = _positive(p, ("strideDepth", "strideHeight", "strideWidth"), what)
        self.d = _positive(p, ("dilationDepth", "dilationHeight", "dilationWidth"), what)
        self.mode = _padding_type(p, what)
        self.custom = _custom_pads(p, what)
        self.deconv = bool(p.isDeconvolution)
        self.output_shape = tuple(int(v) for v in p.outputShape)
        if self.in_ch % self.groups or self.out_ch % self.groups:
            raise SpecError(f"{what} has inputChannels={self.in_ch}, outputChannels={self.out_ch} and nGroups="
                            f"{self.groups}; nGroups must divide both channel counts.")
        if self.output_shape and (not self.deconv or len(self.output_shape) != 3 or min(self.output_shape) <= 0):
            raise SpecError(f"{what} has outputShape {list(self.output_shape)}; it is allowed only for a "
                            "deconvolution, as 3 positive values [D_out, H_out, W_out].")
        if self.deconv:
            shape = (self.in_ch, self.out_ch // self.groups, *self.k)
        else:
            shape = (self.out_ch, self.in_ch // self.groups, *self.k)
        w = weight_array(p.weights, int(np.prod(shape)), f"{what} weights").reshape(shape)
        self.weight = nn.Parameter(torch.from_numpy(w.copy()), requires_grad=False)
        self.bias = None
        if p.hasBias:
            b = weight_array(p.bias, self.out_ch, f"{what} bias")
            self.bias = nn.Parameter(torch.from_numpy(b.copy()), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x, self.in_ch)
        return fold(self._deconv if self.deconv else self._conv, x, keep=4)

    def _conv(self, x: torch.Tensor) -> torch.Tensor:
        sizes = tuple(int(v) for v in x.shape[-3:])
        pad = _spatial_pads(self.mode, self.custom, sizes, self.k, self.s, self.d)
        if any(pad):
            x = F.pad(x, pad)
        for size, k, d in zip(x.shape[-3:], self.k, self.d, strict=True):
            if int(size) < (k - 1) * d + 1:
                raise ValueError(f"the padded input {list(x.shape[-3:])} is smaller than the dilated kernel")
        return F.conv3d(x, self.weight, self.bias, self.s, 0, self.d, self.groups)

    def _deconv(self, x: torch.Tensor) -> torch.Tensor:
        full = F.conv_transpose3d(x, self.weight, None, self.s, 0, 0, self.groups, self.d)
        sizes = [int(v) for v in full.shape[-3:]]
        f, b, t, bo, le, r = self.custom
        starts, ends = [f, t, le], [b, bo, r]
        if self.mode == VALID:
            starts, ends = [0, 0, 0], [0, 0, 0]
        elif self.mode == SAME:
            want = [int(v) * s for v, s in zip(x.shape[-3:], self.s, strict=True)]
            starts = [max(n - w, 0) // 2 for n, w in zip(sizes, want, strict=True)]
            ends = [max(n - w, 0) - st for n, w, st in zip(sizes, want, starts, strict=True)]
        out = list(self.output_shape) or [n - st - e for n, st, e in zip(sizes, starts, ends, strict=True)]
        if min(out) < 1:
            raise ValueError(f"the deconvolution output would be {out}: the padding crops everything")
        grow = [max(st + o - n, 0) for st, o, n in zip(starts, out, sizes, strict=True)]
        if any(grow):
            full = F.pad(full, (0, grow[2], 0, grow[1], 0, grow[0]))
        y = full[..., starts[0]:starts[0] + out[0], starts[1]:starts[1] + out[1], starts[2]:starts[2] + out[2]]
        return y if self.bias is None else y + self.bias.reshape(-1, 1, 1, 1)


class Pooling3D(nn.Module):
    """A Core ML ``pooling3d`` layer: MAX or AVERAGE over (D, H, W) windows."""

    def __init__(self, p: Any, name: str = "") -> None:
        super().__init__()
        what = f"Pooling3D layer '{name}'"
        self.type = int(p.type)
        if self.type not in (MAX, AVERAGE):
            raise SpecError(f"{what} has unknown pooling type {self.type}; use MAX (0) or AVERAGE (1).")
        self.k = _positive(p, ("kernelDepth", "kernelHeight", "kernelWidth"), what)
        self.s = _positive(p, ("strideDepth", "strideHeight", "strideWidth"), what)
        self.mode = _padding_type(p, what)
        self.custom = _custom_pads(p, what)
        self.exclude_pad = bool(p.countExcludePadding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x)
        return fold(self._pool, x, keep=4)

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        sizes = tuple(int(v) for v in x.shape[-3:])
        pad = _spatial_pads(self.mode, self.custom, sizes, self.k, self.s, (1, 1, 1))
        padded = [n + pad[4 - 2 * i] + pad[5 - 2 * i] for i, n in enumerate(sizes)]
        if any(n < k for n, k in zip(padded, self.k, strict=True)):
            raise ValueError(f"the padded input {padded} is smaller than the {list(self.k)} pooling window")
        if self.type == MAX:
            xp = F.pad(x, pad, value=float("-inf")) if any(pad) else x
            return F.max_pool3d(xp, self.k, self.s)
        xp = F.pad(x, pad) if any(pad) else x
        y = F.avg_pool3d(xp, self.k, self.s)
        if self.exclude_pad and any(pad):
            # the share of real positions in each window, from a ones mask padded with zeros
            ones = torch.ones((1, 1, *sizes), dtype=x.dtype, device=x.device)
            share = F.avg_pool3d(F.pad(ones, pad), self.k, self.s)
            y = y / torch.clamp(share, min=1.0 / float(np.prod(self.k)))
        return y


class GlobalPooling3D(nn.Module):
    """A Core ML ``globalPooling3d`` layer: MAX or AVERAGE over all of (D, H, W), kept as size 1."""

    def __init__(self, p: Any, name: str = "") -> None:
        super().__init__()
        self.type = int(p.type)
        if self.type not in (MAX, AVERAGE):
            raise SpecError(f"GlobalPooling3D layer '{name}' has unknown pooling type {self.type}; use MAX (0) "
                            "or AVERAGE (1).")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x)
        if self.type == MAX:
            return torch.amax(x, dim=(-3, -2, -1), keepdim=True)
        return torch.mean(x, dim=(-3, -2, -1), keepdim=True)


def _nd_only(ctx: BuildContext, kind: str) -> None:
    if not ctx.nd:
        raise SpecError(f"Layer '{ctx.name}' ({kind}) needs an ND network (Core ML specification 5 layers cannot "
                        "be used with the rank-5 array mapping). Rebuild the model with exact array mapping.")


@register("convolution3d")
def _convolution3d(p: Any, ctx: BuildContext) -> nn.Module:
    _nd_only(ctx, "convolution3d")
    return Convolution3D(p, ctx.name)


@register("pooling3d")
def _pooling3d(p: Any, ctx: BuildContext) -> nn.Module:
    _nd_only(ctx, "pooling3d")
    return Pooling3D(p, ctx.name)


@register("globalPooling3d")
def _global_pooling3d(p: Any, ctx: BuildContext) -> nn.Module:
    _nd_only(ctx, "globalPooling3d")
    return GlobalPooling3D(p, ctx.name)
