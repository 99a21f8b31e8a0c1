"""scaled_dot_product_attention (MIL transformers.py).

PyTorch's ``scaled_dot_product_attention`` without dropout or ``is_causal`` (which the op does not have):
``softmax(Q K^T / sqrt(E) + mask) V``, where a bool mask keeps the positions that are True. Computed in the
inputs' dtype (fp16 included) with the matrix products and softmax of torch; exports to ONNX.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from mlupdate.ops import OpContext
from mlupdate.ops.tensor import kernel, op_error


@kernel("scaled_dot_product_attention", since=18)
def _scaled_dot_product_attention(ctx: OpContext, inputs: dict[str, Any]) -> torch.Tensor:
    q, k, v = inputs["query"], inputs["key"], inputs["value"]
    if q.dim() < 3 or k.dim() != q.dim() or v.dim() != q.dim() or q.shape[-1] != k.shape[-1] \
            or k.shape[-2] != v.shape[-2]:
        raise op_error(ctx, f"query {list(q.shape)}, key {list(k.shape)} and value {list(v.shape)} must be "
                            "[B, *, L, E], [B, *, S, E] and [B, *, S, EV]")
    scores = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(int(q.shape[-1])))
    mask = inputs.get("attn_mask")
    if mask is not None:
        try:
            torch.broadcast_shapes(mask.shape, scores.shape)
        except RuntimeError:
            raise op_error(ctx, f"attn_mask {list(mask.shape)} does not broadcast to the scores "
                                f"{list(scores.shape)}") from None
        if mask.dtype == torch.bool:
            scores = scores.masked_fill(~mask, float("-inf"))
        else:
            scores = scores + mask.to(scores.dtype)
    return torch.softmax(scores, dim=-1) @ v
