"""read_state, write_state, coreml_update_state (MIL states.py)."""

from __future__ import annotations
