"""constexpr_* compressed weights: LUT, affine, blockwise, sparse (MIL constexpr_ops.py, compression.py)."""

from __future__ import annotations
