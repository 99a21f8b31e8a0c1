"""reduce_* ops (MIL reduction.py)."""

from __future__ import annotations
