"""Updating a k-NN classifier: the training examples are appended to its samples.

Index type (linear or kd-tree), weighting (uniform or inverse distance) and the distance
function are kept; ``number_of_neighbors`` (if overridden) becomes the updated model's k.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from mlupdate.errors import NotUpdatableError, TrainingDataError
from mlupdate.spec.description import Description, FeatureDescription
from mlupdate.spec.io import copy_spec
from mlupdate.spec.model_types import not_updatable
from mlupdate.update.data import annotate, require_features


def _check_vector(index: int, value: Any, fd: FeatureDescription, dims: int) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64) if not isinstance(value, str) else None
    if arr is None or arr.size != dims:
        raise TrainingDataError(
            f"Training example {index}: '{fd.name}' must hold {dims} numbers (the k-NN's dimensions), got "
            f"{getattr(arr, 'size', type(value).__name__)}."
        )
    return arr.reshape(-1).astype(np.float32)


class KNNUpdate:
    """One update of a ``kNearestNeighborsClassifier``.

    Args:
        spec: A private copy of the spec; samples are appended in place by ``train``.
        values: Resolved parameters (``number_of_neighbors``).
        examples: Feature dicts with the k-NN's input and its label.
        features: Precomputed input vectors (a pipeline passes its extractor's outputs); None reads them.

    Raises:
        NotUpdatableError: If the model is not updatable.
        TrainingDataError: Missing inputs, wrong vector length or a label of the wrong type.
    """

    def __init__(self, spec: Any, values: Mapping[str, Any], examples: Sequence[Mapping[str, Any]],
                 features: Callable[[], list[Any]] | None = None) -> None:
        not_updatable(spec)
        self.spec, self.values, self.examples, self._features = spec, dict(values), examples, features
        knn = spec.kNearestNeighborsClassifier
        desc = Description.from_spec(spec)
        self.dims = int(knn.nearestNeighborsIndex.numberOfDimensions)
        self.input = next(iter(desc.inputs.values()))
        label_name = desc.predicted_feature_name or next((n for n in desc.training_inputs if n not in desc.inputs), "")
        if not label_name:
            raise NotUpdatableError("The k-NN declares no label (predictedFeatureName); re-author it.")
        self.label = label_name
        which = knn.WhichOneof("ClassLabels")
        default = knn.WhichOneof("DefaultClassLabel")
        self.int_labels = which == "int64ClassLabels" or (which is None and default == "defaultInt64Label")
        label_fd = FeatureDescription(label_name, "int64" if self.int_labels else "string")
        need = [label_fd] if features is not None else [self.input, label_fd]
        require_features(examples, need, [f.name for f in need])
        self.labels = [self._label(i, ex[label_name]) for i, ex in enumerate(examples)]
        if features is None:
            self.vectors = [_check_vector(i, ex[self.input.name], self.input, self.dims)
                            for i, ex in enumerate(examples)]
        self.last_metrics: dict[str, Any] = {}

    def _label(self, index: int, value: Any) -> Any:
        value = value.item() if isinstance(value, np.generic) else value
        if self.int_labels and isinstance(value, int) and not isinstance(value, bool):
            return int(value)
        if not self.int_labels and isinstance(value, str):
            return value
        raise TrainingDataError(
            f"Training example {index}: label {value!r} ('{self.label}') must be "
            f"{'an int' if self.int_labels else 'a string'}, like the k-NN's labels."
        )

    def validate(self) -> None:
        """Compute (for pipelines) and check the input vectors."""
        self._vectors()

    def _vectors(self) -> list[np.ndarray]:
        if self._features is None:
            return self.vectors
        return [annotate(i, lambda i=i, v=v: _check_vector(i, v, self.input, self.dims))
                for i, v in enumerate(self._features())]

    def train(self, control: Any) -> Any:
        """Append the examples (one epoch of one mini-batch); returns the updated spec."""
        vectors = self._vectors()
        control.emit("training_begin", {"loss": None, "epoch_index": 0, "mini_batch_index": 0}, self.snapshot)
        control.check_cancel()
        knn = self.spec.kNearestNeighborsClassifier
        for v in vectors:
            knn.nearestNeighborsIndex.floatSamples.add().vector.extend(v.tolist())
        target = knn.int64ClassLabels if self.int_labels else knn.stringClassLabels
        target.vector.extend(self.labels)
        if self.values.get("number_of_neighbors") is not None:
            knn.numberOfNeighbors.defaultValue = int(self.values["number_of_neighbors"])
        self.last_metrics = {"loss": None, "epoch_index": 0, "mini_batch_index": 0}
        control.emit("mini_batch_end", self.last_metrics, self.snapshot)
        control.emit("epoch_end", self.last_metrics, self.snapshot)
        return self.spec

    def snapshot(self) -> Callable[[], Any]:
        """The spec as it is now (copied when the handler asks for the model)."""
        frozen = copy_spec(self.spec)
        return lambda: frozen
