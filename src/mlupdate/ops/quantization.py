"""quantize, dequantize (MIL quantization_ops.py)."""

from __future__ import annotations
