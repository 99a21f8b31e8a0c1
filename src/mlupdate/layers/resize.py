"""Spatial layers: padding (constant, reflection, replication)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mlupdate.layers import BuildContext, register


class Padding(nn.Module):
    """``padding``: pad H and W with a constant, by reflection or by replication."""

    def __init__(self, p: Any) -> None:
        super().__init__()
        self.mode = p.WhichOneof("PaddingType") or "constant"
        self.value = float(p.constant.value) if self.mode == "constant" else 0.0
        b = list(p.paddingAmounts.borderAmounts)
        h = (int(b[0].startEdgeSize), int(b[0].endEdgeSize)) if len(b) > 0 else (0, 0)
        w = (int(b[1].startEdgeSize), int(b[1].endEdgeSize)) if len(b) > 1 else (0, 0)
        self.pad = (w[0], w[1], h[0], h[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "constant":
            return F.pad(x, self.pad, value=self.value)
        return F.pad(x, self.pad, mode="reflect" if self.mode == "reflection" else "replicate")


@register("padding")
def _padding(p: Any, ctx: BuildContext) -> nn.Module:
    return Padding(p)
