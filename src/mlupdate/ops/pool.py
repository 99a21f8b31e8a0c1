"""avg_pool, max_pool, l2_pool (MIL pool.py)."""

from __future__ import annotations
