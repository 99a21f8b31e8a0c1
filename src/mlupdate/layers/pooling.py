"""Pooling (``pooling``): max, average and L2; valid, same and includeLastPixel padding; global."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mlupdate.layers import BuildContext, register
from mlupdate.layers.conv import same_padding

MAX, AVERAGE, L2 = 0, 1, 2


class Pooling(nn.Module):
    """A Core ML pooling layer."""

    def __init__(self, p: Any) -> None:
        super().__init__()
        self.type = int(p.type)
        self.k = tuple(int(v) for v in p.kernelSize) or (3, 3)
        self.s = tuple(int(v) for v in p.stride) or (1, 1)
        self.glob = bool(p.globalPooling)
        self.exclude_pad = bool(p.avgPoolExcludePadding)
        self.mode = p.WhichOneof("PoolingPaddingType") or "valid"
        self.top_left = self.mode == "same" and p.same.asymmetryMode == 1
        amounts = (0, 0, 0, 0)
        src = p.valid if self.mode == "valid" else p.includeLastPixel if self.mode == "includeLastPixel" else None
        if self.mode == "valid" and len(src.paddingAmounts.borderAmounts) == 2:
            h, w = src.paddingAmounts.borderAmounts
            amounts = (int(h.startEdgeSize), int(h.endEdgeSize), int(w.startEdgeSize), int(w.endEdgeSize))
        elif self.mode == "includeLastPixel":
            ph, pw = (list(src.paddingAmounts) + [0, 0])[:2]
            amounts = (int(ph), int(ph), int(pw), int(pw))
        self.amounts = amounts

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.glob:
            if self.type == MAX:
                return torch.amax(x, dim=(-2, -1), keepdim=True)
            if self.type == AVERAGE:
                return torch.mean(x, dim=(-2, -1), keepdim=True)
            return torch.sqrt(torch.sum(x * x, dim=(-2, -1), keepdim=True))
        if self.mode == "includeLastPixel":
            return self._ceil_mode(x)
        if self.mode == "same":
            ph = same_padding(x.shape[-2], self.k[0], self.s[0], 1, self.top_left)
            pw = same_padding(x.shape[-1], self.k[1], self.s[1], 1, self.top_left)
            pad = (pw[0], pw[1], ph[0], ph[1])
        else:
            t, b, l, r = self.amounts
            pad = (l, r, t, b)
        return self._pool(x, pad)

    def _pool(self, x: torch.Tensor, pad: tuple[int, int, int, int]) -> torch.Tensor:
        if self.type == MAX:
            if any(pad):
                x = F.pad(x, pad, value=float("-inf"))
            return F.max_pool2d(x, self.k, self.s)
        area = float(self.k[0] * self.k[1])
        if self.type == L2:
            xp = F.pad(x * x, pad) if any(pad) else x * x
            return torch.sqrt(F.avg_pool2d(xp, self.k, self.s) * area)
        xp = F.pad(x, pad) if any(pad) else x
        out = F.avg_pool2d(xp, self.k, self.s)
        if self.exclude_pad and any(pad):
            ones = F.pad(torch.ones_like(x[:1, :1]), pad)
            count = F.avg_pool2d(ones, self.k, self.s)
            out = out / count
        return out

    def _ceil_mode(self, x: torch.Tensor) -> torch.Tensor:
        ph, pw = self.amounts[0], self.amounts[2]
        if self.type == MAX:
            return F.max_pool2d(x, self.k, self.s, (ph, pw), ceil_mode=True)
        if self.type == L2:
            area = float(self.k[0] * self.k[1])
            return torch.sqrt(F.avg_pool2d(x * x, self.k, self.s, (ph, pw), ceil_mode=True,
                                           count_include_pad=True) * area)
        return F.avg_pool2d(x, self.k, self.s, (ph, pw), ceil_mode=True,
                            count_include_pad=not self.exclude_pad)


@register("pooling")
def _pooling(p: Any, ctx: BuildContext) -> nn.Module:
    return Pooling(p)
