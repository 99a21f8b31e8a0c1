"""concat, split, stack, tile, pad, topk, ... (MIL tensor_operation.py)."""

from __future__ import annotations
