"""const, cond, while_loop and lists (MIL control_flow.py)."""

from __future__ import annotations
