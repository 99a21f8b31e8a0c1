"""conv, conv_transpose, conv_quantized (MIL conv.py)."""

from __future__ import annotations
