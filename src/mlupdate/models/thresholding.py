"""Class confidence thresholding (the ``classConfidenceThresholding`` model type) as a program.

Semantics (``ClassConfidenceThresholding.proto`` and Core ML's validator): the one input is a
multiarray of ``C`` class confidences; the one output, a ``[2, C]`` multiarray, holds the confidences
in row 0 and a presence flag per class in row 1. The proto says the model "currently ... simply takes
all the classes", so every flag is 1; the ``precisionRecallCurves`` (one per class, required and
checked as the validator checks them: non-empty, matched lengths, finite non-negative values) are
for the application to pick its own thresholds from and do not change the output.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from mlupdate.errors import SpecError
from mlupdate.models.values import array, feature, inputs_of, only, output, outputs_of

_KIND = "classConfidenceThresholding"


def _check_curves(curves: Any, classes: int | None) -> None:
    if not curves:
        raise SpecError(f"The {_KIND} has no precisionRecallCurves; add one per class label.")
    if classes is not None and len(curves) != classes:
        raise SpecError(f"The {_KIND} has {len(curves)} precisionRecallCurves for {classes} classes; give one per "
                        "class.")
    for i, curve in enumerate(curves):
        for values, thresholds in (("precisionValues", "precisionConfidenceThresholds"),
                                   ("recallValues", "recallConfidenceThresholds")):
            v, t = list(getattr(curve, values).vector), list(getattr(curve, thresholds).vector)
            if not v or len(v) != len(t):
                raise SpecError(f"Curve {i} of the {_KIND} has {len(v)} {values} and {len(t)} {thresholds}; give the "
                                "same, non-zero number of each.")
            if not all(math.isfinite(x) and x >= 0 for x in v + t):
                raise SpecError(f"Curve {i} of the {_KIND} has a negative, NaN or infinite value in {values} or "
                                f"{thresholds}; every value must be a finite number of 0 or more.")


class ClassConfidenceThresholdingProgram:
    """Runs a ``classConfidenceThresholding`` spec.

    Args:
        spec: A ``Model_pb2.Model`` of type ``classConfidenceThresholding``.

    Raises:
        SpecError: If the curves or the interface are not as Core ML requires.
    """

    def __init__(self, spec: Any) -> None:
        self.input = only(inputs_of(spec), _KIND, "input", ("multiArray",))
        self.output = only(outputs_of(spec), _KIND, "output", ("multiArray",))
        classes = math.prod(self.input.shape) if self.input.shape and not self.input.flexible else None
        _check_curves(spec.classConfidenceThresholding.precisionRecallCurves, classes)

    def predict_batch(self, examples: Sequence[dict[str, Any]], crop_and_scale: str) -> list[dict[str, Any]]:
        """``{output: [[confidences], [1, ..., 1]]}`` for every example."""
        out = []
        for ex in examples:
            conf = array(feature(ex, self.input), self.input).reshape(-1).astype(np.float64)
            out.append({self.output.name: output(np.stack([conf, np.ones_like(conf)]), self.output)})
        return out
