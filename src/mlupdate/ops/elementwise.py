"""Elementwise unary and binary ops, select, clip, cast (MIL elementwise_unary.py, elementwise_binary.py)."""

from __future__ import annotations
