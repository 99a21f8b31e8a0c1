"""batch_norm, instance_norm, layer_norm, l2_norm, local_response_norm (MIL normalization.py)."""

from __future__ import annotations
