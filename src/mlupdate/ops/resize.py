"""resize, upsample, crop, affine, resample (MIL image_resizing.py)."""

from __future__ import annotations
