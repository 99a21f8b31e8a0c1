"""Non-maximum suppression of bounding boxes (the ``nonMaximumSuppression`` model type) as a program.

Semantics (``NonMaximumSuppression.proto`` and Core ML's validator; mlupdate's choices where they say
nothing, marked *choice*):

* Inputs: the confidences ``[N, C]`` and the boxes ``[N, 4]`` as ``(x_center, y_center, width, height)``,
  named by ``confidenceInputFeatureName`` / ``coordinatesInputFeatureName``; optional double inputs
  named by ``iouThresholdInputFeatureName`` / ``confidenceThresholdInputFeatureName`` override the
  thresholds for that prediction. Every declared input and output must be one of the named ones, and
  all four arrays share one element type (DOUBLE; FLOAT32 too from specification version 5). A
  network stage may hand on ``[1, N, C]``; leading axes of size 1 are dropped.
* A box's confidence is its largest class confidence and its label that class (the first on a tie).
  Boxes whose confidence is below ``confidenceThreshold`` are dropped (a box at the threshold stays,
  *choice*). PickTop then takes the remaining boxes by descending confidence (stable, so equal
  confidences keep input order, *choice*), keeps each box not yet suppressed and suppresses every
  later box whose IoU with it exceeds ``iouThreshold`` (the proto's wording is inverted; at 1.0
  nothing is suppressed, as it says). With ``perClass`` only boxes of the same label suppress each
  other.
* Outputs: the kept rows of both inputs, in the order kept. When the output declares its row count
  (a fixed ``shape`` or a ``shapeRange`` on axis 0) the rows are cut to the most and padded with
  zero rows to the least, as the proto describes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from mlupdate.errors import FeatureError, SpecError
from mlupdate.models.values import feature, number, outputs_of, within_limit
from mlupdate.spec.description import FeatureDescription

_KIND = "nonMaximumSuppression"
_DOUBLE, _FLOAT32 = 65600, 65568


def _rows_range(fd: Any) -> tuple[int, int]:
    """The least and most rows an output may have (``(0, -1)`` when it does not say)."""
    ma = fd.type.multiArrayType
    flex = ma.WhichOneof("ShapeFlexibility")
    ranges = list(ma.shapeRange.sizeRanges) if flex == "shapeRange" else []
    if flex not in (None, "shapeRange") or (ma.shape and ranges) or len(ma.shape) + len(ranges) not in (0, 2):
        raise SpecError(f"The {_KIND}'s output '{fd.name}' must declare no shape, a 2-D shape or a 2-D shapeRange "
                        "(not both); fix the model's description.")
    if ma.shape:
        return int(ma.shape[0]), int(ma.shape[0])
    if ranges:
        return int(ranges[0].lowerBound), int(ranges[0].upperBound)
    return 0, -1


def _matrix(value: Any, fd: FeatureDescription, width: int | None) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise FeatureError(f"Input '{fd.name}' must be a numeric [N, {width or 'C'}] array.") from None
    while arr.ndim > 2 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2 or (arr.shape[1] != width if width else arr.shape[1] < 1):
        raise FeatureError(f"Input '{fd.name}' must be an [N, {width or 'C'}] array (one row per box), got shape "
                           f"{list(arr.shape)}.")
    return arr


def iou_matrix(boxes: np.ndarray) -> np.ndarray:
    """``[N, N]`` intersection over union of center-size boxes (0 where the union is empty)."""
    lo, hi = boxes[:, :2] - boxes[:, 2:] / 2, boxes[:, :2] + boxes[:, 2:] / 2
    sides = np.clip(np.minimum(hi[:, None], hi[None]) - np.maximum(lo[:, None], lo[None]), 0, None)
    inter = sides.prod(axis=2)
    area = boxes[:, 2] * boxes[:, 3]
    union = area[:, None] + area[None] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


class NonMaximumSuppressionProgram:
    """Suppresses overlapping boxes with a ``nonMaximumSuppression`` spec.

    Args:
        spec: A ``Model_pb2.Model`` of type ``nonMaximumSuppression``.

    Raises:
        SpecError: If the feature names, types, shapes or thresholds are not as Core ML requires.
    """

    def __init__(self, spec: Any) -> None:
        nms = spec.nonMaximumSuppression
        if nms.WhichOneof("SuppressionMethod") != "pickTop":
            raise SpecError(f"The {_KIND} sets no suppression method; set pickTop (the only one Core ML defines).")
        self.per_class = nms.pickTop.perClass
        names = {"confidenceInputFeatureName": nms.confidenceInputFeatureName,
                 "coordinatesInputFeatureName": nms.coordinatesInputFeatureName,
                 "iouThresholdInputFeatureName": nms.iouThresholdInputFeatureName,
                 "confidenceThresholdInputFeatureName": nms.confidenceThresholdInputFeatureName,
                 "confidenceOutputFeatureName": nms.confidenceOutputFeatureName,
                 "coordinatesOutputFeatureName": nms.coordinatesOutputFeatureName}
        declared = {**{f.name: f for f in spec.description.input}, **{f.name: f for f in spec.description.output}}
        for fd in declared.values():
            if fd.name not in names.values():
                raise SpecError(f"The {_KIND} declares feature '{fd.name}', which none of its *FeatureName fields "
                                "names; remove it or name it.")
        fds = {}
        for field, name in names.items():
            fd = declared.get(name)
            optional = field.endswith("ThresholdInputFeatureName")
            want = "doubleType" if optional else "multiArrayType"
            if (fd is None and not (optional and not name)) or (fd is not None and fd.type.WhichOneof("Type") != want):
                raise SpecError(f"The {_KIND}'s {field} is '{name}'; declare that feature as a "
                                f"{want[:-4]}. Fix the model's description.")
            fds[field[:-len("FeatureName")]] = fd
        arrays = [fds[k] for k in ("confidenceInput", "coordinatesInput", "confidenceOutput", "coordinatesOutput")]
        dtypes = {fd.type.multiArrayType.dataType for fd in arrays}
        allowed = {_DOUBLE, _FLOAT32} if spec.specificationVersion >= 5 else {_DOUBLE}
        if len(dtypes) != 1 or not dtypes <= allowed:
            raise SpecError(f"The {_KIND}'s confidence and coordinates inputs and outputs must all be DOUBLE "
                            f"multiarrays{' (or all FLOAT32)' if len(allowed) > 1 else ''}; fix the description.")
        if not 0.0 <= nms.iouThreshold <= 1.0 or not nms.confidenceThreshold >= 0.0:
            raise SpecError(f"The {_KIND}'s iouThreshold ({nms.iouThreshold}) must be in [0, 1] and its "
                            f"confidenceThreshold ({nms.confidenceThreshold}) 0 or more.")
        self.iou, self.confidence = float(nms.iouThreshold), float(nms.confidenceThreshold)
        said = {_rows_range(fds[k]) for k in ("confidenceOutput", "coordinatesOutput")} - {(0, -1)}
        if len(said) > 1:
            raise SpecError(f"The {_KIND}'s confidence and coordinates outputs declare different numbers of rows "
                            f"{sorted(said)}; they must agree along axis 0.")
        self.rows = said.pop() if said else (0, -1)
        within_limit(self.rows[0], f"The {_KIND}'s least number of output rows")
        self.features = {k: FeatureDescription.from_proto(fd) for k, fd in fds.items() if fd is not None}
        self.out = {fd.name: fd for fd in outputs_of(spec)}

    def _threshold(self, example: dict[str, Any], key: str, default: float, top: float | None) -> float:
        fd = self.features.get(key)
        if fd is None or example.get(fd.name) is None:
            return default
        value = number(example[fd.name], fd)
        if not (value >= 0.0 and (top is None or value <= top)):
            raise FeatureError(f"Input '{fd.name}' must be between 0 and {top}, got {value}." if top is not None else
                               f"Input '{fd.name}' must be 0 or more, got {value}.")
        return value

    def keep(self, confidence: np.ndarray, boxes: np.ndarray, iou: float, threshold: float) -> np.ndarray:
        """Indices of the boxes PickTop keeps, in the order kept."""
        best, label = confidence.max(axis=1), confidence.argmax(axis=1)
        order = np.flatnonzero(best >= threshold)
        order = order[np.argsort(-best[order], kind="stable")]
        overlap = iou_matrix(boxes[order]) > iou
        if self.per_class:
            overlap &= label[order][:, None] == label[order][None]
        suppressed = np.zeros(len(order), dtype=bool)
        kept = []
        for i in range(len(order)):
            if not suppressed[i]:
                kept.append(order[i])
                suppressed |= overlap[i]
        return np.asarray(kept, dtype=np.int64)

    def _fit(self, rows: np.ndarray, fd: FeatureDescription) -> np.ndarray:
        least, most = self.rows
        rows = rows[:most] if most >= 0 else rows
        pad = np.zeros((max(least - len(rows), 0), rows.shape[1]))
        return np.concatenate([rows, pad]).astype(self.out[fd.name].dtype or "float64")

    def predict_batch(self, examples: Sequence[dict[str, Any]], crop_and_scale: str) -> list[dict[str, Any]]:
        """The kept confidences and boxes of every example."""
        f = self.features
        out = []
        for ex in examples:
            boxes = _matrix(feature(ex, f["coordinatesInput"]), f["coordinatesInput"], 4)
            conf = _matrix(feature(ex, f["confidenceInput"]), f["confidenceInput"], None)
            if len(conf) != len(boxes):
                raise FeatureError(f"Inputs '{f['confidenceInput'].name}' and '{f['coordinatesInput'].name}' must "
                                   f"have one row per box, but have {len(conf)} and {len(boxes)} rows.")
            kept = self.keep(conf, boxes, self._threshold(ex, "iouThresholdInput", self.iou, 1.0),
                             self._threshold(ex, "confidenceThresholdInput", self.confidence, None))
            out.append({f["confidenceOutput"].name: self._fit(conf[kept], f["confidenceOutput"]),
                        f["coordinatesOutput"].name: self._fit(boxes[kept], f["coordinatesOutput"])})
        return out
