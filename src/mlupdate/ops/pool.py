"""avg_pool, max_pool, l2_pool (MIL pool.py).

Every pool pads explicitly and then runs unpadded, so asymmetric pads work the same on every backend:
``max_pool`` pads with -inf (padding never wins), ``avg_pool`` and ``l2_pool`` with zeros. Padding follows
:func:`mlupdate.ops.conv.explicit_pads` (``valid``, ``custom``, ``same``, ``same_lower``; ``valid`` when
``pad_type`` is absent; ``same_lower`` from iOS16 on). ``ceil_mode`` (1-D and 2-D pools with ``valid`` or
symmetric ``custom`` padding, as the definition requires) sizes the output with the definition's rule:
``ceil((D_in + pads - K) / S) + 1``, one less when the last window would start past ``D_in + pad_before`` and
there is padding. Windows that reach past the padding are cut there. The average divides by the positions
counted: inside the padded extent, or inside the input alone with ``exclude_padding_from_average`` (PyTorch's
``count_include_pad`` rules).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from mlupdate.ops import OpContext
from mlupdate.ops.conv import explicit_pads, pad_spatial, register_padded, spatial_list
from mlupdate.ops.elementwise import flag, op_error

_MAX = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def _geometry(ctx: OpContext, x: torch.Tensor, max_spatial: int
              ) -> tuple[list[int], list[int], list[tuple[int, int]], list[int]]:
    """Kernel sizes, strides, (before, after) pads and the extra end padding of each spatial axis."""
    n = x.dim() - 2
    if not 1 <= n <= max_spatial:
        raise op_error(ctx, f"x must have rank 3 to {max_spatial + 2} ([n, C, 1 to {max_spatial} spatial axes]), "
                            f"not {x.dim()}")
    if ctx.const("kernel_sizes") is None:
        raise op_error(ctx, "the input 'kernel_sizes' is required")
    kernel = spatial_list(ctx, "kernel_sizes", n, 1)
    strides = spatial_list(ctx, "strides", n, 1)
    sizes = [int(s) for s in x.shape[2:]]
    pads = explicit_pads(ctx, sizes, kernel, strides, [1] * n)
    ceil = bool(flag(ctx, "ceil_mode", False))
    if ceil and (n > 2 or str(flag(ctx, "pad_type", "valid")) not in ("valid", "custom")
                 or any(before != after for before, after in pads)):
        raise op_error(ctx, "ceil_mode needs a 1-D or 2-D pool with valid or symmetric custom padding (the "
                            "definition's rule)")
    extra = []
    for size, k, s, (before, after) in zip(sizes, kernel, strides, pads, strict=True):
        span = size + before + after
        if span < k:
            raise op_error(ctx, f"the padded input ({span}) is smaller than the kernel ({k}) on a spatial axis")
        if ceil:
            out = math.ceil((span - k) / s) + 1
            if (out - 1) * s >= size + before and before + after > 0:
                out -= 1
        else:
            out = (span - k) // s + 1
        extra.append(max((out - 1) * s + k - span, 0))
    return kernel, strides, pads, extra


def _sum_pool(x: torch.Tensor, kernel: list[int], strides: list[int]) -> torch.Tensor:
    """Window sums (a depthwise convolution with ones; runs in fp16 on the CPU too)."""
    c = int(x.shape[1])
    ones = torch.ones((c, 1, *kernel), dtype=x.dtype, device=x.device)
    return _CONV[len(kernel)](x, ones, stride=strides, groups=c)


def _counts(sizes: list[int], kernel: list[int], strides: list[int], pads: list[tuple[int, int]], extra: list[int],
            include_pad: bool) -> np.ndarray:
    """How many counted positions each output window covers (per the average's rule), as [1, 1, *out]."""
    per_axis = []
    for size, k, s, (before, after), more in zip(sizes, kernel, strides, pads, extra, strict=True):
        mask = np.zeros(before + size + after + more)
        if include_pad:
            mask[: before + size + after] = 1
        else:
            mask[before: before + size] = 1
        starts = range(0, len(mask) - k + 1, s)
        per_axis.append(np.array([mask[i: i + k].sum() for i in starts]))
    counts = per_axis[0]
    for axis in per_axis[1:]:
        counts = np.multiply.outer(counts, axis)
    return np.maximum(counts, 1)[None, None]


def _padded(x: torch.Tensor, pads: list[tuple[int, int]], extra: list[int], value: float) -> torch.Tensor:
    return pad_spatial(x, [(b, a + e) for (b, a), e in zip(pads, extra, strict=True)], value)


def _max_pool(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
    x = inputs["x"]
    kernel, strides, pads, extra = _geometry(ctx, x, 3)
    return _MAX[len(kernel)](_padded(x, pads, extra, float("-inf")), kernel, strides)


def _avg_pool(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
    x = inputs["x"]
    kernel, strides, pads, extra = _geometry(ctx, x, 3)
    sums = _sum_pool(_padded(x, pads, extra, 0.0), kernel, strides)
    exclude = bool(flag(ctx, "exclude_padding_from_average", False))
    counts = _counts([int(s) for s in x.shape[2:]], kernel, strides, pads, extra, not exclude)
    return sums / torch.from_numpy(counts).to(device=x.device, dtype=x.dtype)


def _l2_pool(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
    x = inputs["x"]
    kernel, strides, pads, extra = _geometry(ctx, x, 2)
    return torch.sqrt(_sum_pool(_padded(x * x, pads, extra, 0.0), kernel, strides))


register_padded("max_pool", _max_pool)
register_padded("avg_pool", _avg_pool)
register_padded("l2_pool", _l2_pool)
