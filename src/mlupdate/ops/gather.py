"""gather, scatter and their variants (MIL scatter_gather.py)."""

from __future__ import annotations
