"""reshape, transpose, slice_*, squeeze, ... (MIL tensor_transformation.py)."""

from __future__ import annotations
