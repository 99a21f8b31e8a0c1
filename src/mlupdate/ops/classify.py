"""classify (MIL classify.py)."""

from __future__ import annotations
