"""Pooling (``pooling``): max, average and L2; valid, same and includeLastPixel padding; global.

Every mode is computed the same way: pad explicitly (``-inf`` for max, zeros otherwise) so that
each window lies inside the padded input, pool with no implicit padding, and divide average
sums by the number of counted positions (real pixels only with ``avgPoolExcludePadding``,
real pixels plus the declared padding otherwise).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mlupdate.layers import BuildContext, register
from mlupdate.layers.common import fold
from mlupdate.layers.conv import border_amounts, same_padding

MAX, AVERAGE, L2 = 0, 1, 2


def include_last_pixel_size(size: int, k: int, s: int, pad: int) -> int:
    """Output size of ``ValidCompletePadding`` (``includeLastPixel``), per the proto."""
    out = math.ceil((size + 2 * pad - k) / s) + 1
    if pad > 0 and (out - 1) * s >= size + pad:
        out -= 1
    return out


class Pooling(nn.Module):
    """A Core ML pooling layer over the last two axes (leading axes are batch)."""

    def __init__(self, p: Any) -> None:
        super().__init__()
        self.type = int(p.type)
        self.k = tuple(int(v) for v in p.kernelSize) or (3, 3)
        self.s = tuple(int(v) for v in p.stride) or (1, 1)
        self.glob = bool(p.globalPooling)
        self.exclude_pad = bool(p.avgPoolExcludePadding)
        self.mode = p.WhichOneof("PoolingPaddingType") or "valid"
        self.top_left = self.mode == "same" and p.same.asymmetryMode == 1
        self.amounts = (0, 0, 0, 0)
        if self.mode == "valid":
            self.amounts = border_amounts(p.valid)
        elif self.mode == "includeLastPixel":
            ph, pw = ([int(v) for v in p.includeLastPixel.paddingAmounts] + [0, 0])[:2]
            self.amounts = (ph, ph, pw, pw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fold(self._forward, x)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.glob:
            if self.type == MAX:
                return torch.amax(x, dim=(-2, -1), keepdim=True)
            if self.type == AVERAGE:
                return torch.mean(x, dim=(-2, -1), keepdim=True)
            return torch.sqrt(torch.sum(x * x, dim=(-2, -1), keepdim=True))
        h, w = int(x.shape[-2]), int(x.shape[-1])
        if self.mode == "same":
            t, b = same_padding(h, self.k[0], self.s[0], 1, self.top_left)
            l, r = same_padding(w, self.k[1], self.s[1], 1, self.top_left)
            extra_h = extra_w = 0
        else:
            t, b, l, r = self.amounts
            extra_h = extra_w = 0
            if self.mode == "includeLastPixel":
                oh = include_last_pixel_size(h, self.k[0], self.s[0], t)
                ow = include_last_pixel_size(w, self.k[1], self.s[1], l)
                extra_h = max((oh - 1) * self.s[0] + self.k[0] - (h + t + b), 0)
                extra_w = max((ow - 1) * self.s[1] + self.k[1] - (w + l + r), 0)
        pad = (l, r + extra_w, t, b + extra_h)
        if self.type == MAX:
            xp = F.pad(x, pad, value=float("-inf")) if any(pad) else x
            return F.max_pool2d(xp, self.k, self.s)
        area = float(self.k[0] * self.k[1])
        v = x * x if self.type == L2 else x
        total = F.avg_pool2d(F.pad(v, pad) if any(pad) else v, self.k, self.s) * area
        if self.type == L2:
            return torch.sqrt(total)
        if not any(pad):
            return total / area
        ones = torch.ones((1, 1, h, w), dtype=x.dtype, device=x.device)
        counted = F.pad(ones, pad) if self.exclude_pad else F.pad(F.pad(ones, (l, r, t, b), value=1.0),
                                                                   (0, extra_w, 0, extra_h))
        count = F.avg_pool2d(counted, self.k, self.s) * area
        return total / count


@register("pooling")
def _pooling(p: Any, ctx: BuildContext) -> nn.Module:
    return Pooling(p)
