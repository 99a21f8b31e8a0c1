"""linear, matmul, einsum (MIL linear.py)."""

from __future__ import annotations
