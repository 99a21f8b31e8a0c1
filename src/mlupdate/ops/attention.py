"""scaled_dot_product_attention (MIL transformers.py)."""

from __future__ import annotations
