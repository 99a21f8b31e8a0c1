"""lstm, gru, rnn (MIL recurrent.py)."""

from __future__ import annotations
