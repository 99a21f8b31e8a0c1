"""Activations: relu, gelu, softmax, ... (MIL activation.py)."""

from __future__ import annotations
