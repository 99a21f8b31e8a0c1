"""classify (MIL ``iOS15/classify.py``).

``classify(probabilities, classes)`` makes a program a classifier: its outputs are the top class and the
dictionary of class to probability, which no tensor can hold. The kernel passes the fp32 probabilities through
for both outputs; the runtime (:mod:`mlupdate.runtime.mlprogram`) turns them into the label (the class of the
largest probability, the first on ties, as ``argmax``) and the dictionary, with the classes the compiler read from
the op's constant ``classes``.
"""

from __future__ import annotations

from typing import Any

import torch

from mlupdate.errors import LayerError
from mlupdate.ops import OpContext, register


@register("classify")
def classify(ctx: OpContext, inputs: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """The probabilities, once per output (label and dictionary)."""
    probs = inputs["probabilities"]
    classes = ctx.const("classes")
    count = len(classes) if isinstance(classes, (list, tuple)) else int(getattr(classes, "size", 0))
    if probs.numel() != count:
        raise LayerError(f"Op '{ctx.name}' (classify) has {count} classes but {probs.numel()} probabilities.")
    flat = probs.reshape(-1).to(torch.float32)
    return flat, flat
