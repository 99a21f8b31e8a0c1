"""Constants: ``loadConstant`` (rank-5 ``[1, 1, C, H, W]``, held as ``[1, C, H, W]``) and ``loadConstantND``."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from mlupdate.errors import SpecError
from mlupdate.layers import BuildContext, register
from mlupdate.layers.common import int_list
from mlupdate.layers.weights import weight_array


class LoadConstant(nn.Module):
    """A layer without inputs that outputs a constant tensor."""

    def __init__(self, value: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("value", torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32)))

    def forward(self) -> torch.Tensor:
        return self.value


@register("loadConstant")
def _load_constant(p: Any, ctx: BuildContext) -> nn.Module:
    shape = int_list(p.shape)
    if len(shape) != 3:
        raise SpecError(f"LoadConstant layer '{ctx.name}' has shape {shape}; Core ML needs [C, H, W].")
    data = weight_array(p.data, int(np.prod(shape)), f"LoadConstant layer '{ctx.name}' data")
    return LoadConstant(data.reshape([1, *shape]))


@register("loadConstantND")
def _load_constant_nd(p: Any, ctx: BuildContext) -> nn.Module:
    shape = int_list(p.shape)
    data = weight_array(p.data, int(np.prod(shape)), f"LoadConstantND layer '{ctx.name}' data")
    return LoadConstant(data.reshape([1, *shape]))
