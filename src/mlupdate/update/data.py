"""Training data: the batch provider as a list of feature dicts, checked against the model up front.

Checks that cost nothing (every example is a dict, every training input is present, every label
is a class label, every multiarray has the declared shape) run when the task is created; images
are decoded once, when the task runs, and a bad one fails the task with an ``ImageError`` naming
the example.

Labelled files on disk (the one reader of ``mlupdate update``, ``federate`` and ``personalize-fleet``)
live in :mod:`mlupdate.update.files`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from mlupdate.errors import FeatureError, TrainingDataError
from mlupdate.features.arrays import check_array
from mlupdate.spec.description import FeatureDescription


def as_examples(training_data: Any) -> list[Mapping[str, Any]]:
    """Normalise a batch provider into a list of feature dicts.

    Accepts a sequence (or iterable) of dicts, or a dict of equally long lists (like
    ``MLArrayBatchProvider(dictionary:)``).

    Raises:
        TrainingDataError: If the data is empty, not dicts, or the lists differ in length.
    """
    if isinstance(training_data, Mapping):
        lengths = {k: len(v) for k, v in training_data.items() if isinstance(v, Sequence) and not isinstance(v, str)}
        if len(lengths) != len(training_data) or len(set(lengths.values())) > 1:
            raise TrainingDataError(
                "A dict of training data must map each feature name to a list, all of the same length "
                f"(got lengths {lengths}). Or pass a list of feature dicts."
            )
        n = next(iter(lengths.values()), 0)
        examples: list[Mapping[str, Any]] = [{k: v[i] for k, v in training_data.items()} for i in range(n)]
    elif isinstance(training_data, Iterable) and not isinstance(training_data, (str, bytes)):
        examples = list(training_data)
    else:
        raise TrainingDataError(
            f"training_data must be a list of feature dicts, got {type(training_data).__name__}, e.g. "
            "[{'image': 'cat.jpg', 'classLabel': 'cat'}, ...]."
        )
    if not examples:
        raise TrainingDataError("The training data is empty: pass at least one example (a dict of feature values).")
    for i, ex in enumerate(examples):
        if not isinstance(ex, Mapping):
            raise TrainingDataError(
                f"Training example {i} is a {type(ex).__name__}, not a dict of feature name to value."
            )
    return examples


def require_features(examples: Sequence[Mapping[str, Any]], features: Sequence[FeatureDescription],
                     all_names: Iterable[str]) -> None:
    """Check every example holds every named feature (and multiarrays have the declared shape).

    Raises:
        TrainingDataError: For a missing training input (the message lists the training inputs).
        FeatureError: For a multiarray of the wrong type or shape, naming the example.
    """
    for i, ex in enumerate(examples):
        for f in features:
            if f.name not in ex:
                raise TrainingDataError(
                    f"Training example {i} has no '{f.name}'. Every example needs the model's training inputs: "
                    f"{', '.join(all_names)} (it has {', '.join(map(str, ex)) or 'nothing'})."
                )
            if f.type == "multiArray":
                annotate(i, lambda f=f, ex=ex: check_array(ex[f.name], f))


def annotate(index: int, fn: Any) -> Any:
    """Run ``fn()``; re-raise a ``FeatureError`` (or subclass) with the example's index in front."""
    try:
        return fn()
    except FeatureError as exc:
        raise type(exc)(f"Training example {index}: {exc}") from None


@dataclass(frozen=True)
class Target:
    """How one training input becomes the loss target.

    Attributes:
        name: The training input holding the target.
        kind: ``label`` (a class label mapped to its index), ``index`` (a class index) or ``array``.
        labels: The class labels (``label`` kind).
        classes: Number of classes (``label`` and ``index`` kinds).
        shape: Per-example target shape (``array`` kind).
    """

    name: str
    kind: str
    labels: tuple[Any, ...] = ()
    classes: int = 0
    shape: tuple[int, ...] = ()

    def value(self, index: int, raw: Any) -> Any:
        """One example's target: a class index (int) or a float32 array.

        Raises:
            TrainingDataError: For a label that is not a class label, or an index out of range.
        """
        if self.kind == "label":
            key = raw.item() if isinstance(raw, np.generic) else raw
            if isinstance(key, (str, int)) and not isinstance(key, bool) and key in self.labels:
                return self.labels.index(key)
            shown = ", ".join(repr(lab) for lab in self.labels[:20]) + (" ..." if len(self.labels) > 20 else "")
            raise TrainingDataError(
                f"Training example {index}: label {raw!r} ('{self.name}') is not one of the model's class labels "
                f"({shown}). Use one of them; a new class needs a model with that label."
            )
        if self.kind == "index":
            arr = np.asarray(raw)
            if arr.size != 1 or not np.issubdtype(arr.dtype, np.number) or float(arr.reshape(-1)[0]) % 1:
                raise TrainingDataError(
                    f"Training example {index}: '{self.name}' must be a class index (an int, or a 1-element "
                    f"array), got {raw!r}."
                )
            k = int(arr.reshape(-1)[0])
            if k < 0 or (self.classes and k >= self.classes):
                raise TrainingDataError(
                    f"Training example {index}: class index {k} ('{self.name}') must be >= 0 and below the "
                    f"number of classes ({self.classes or 'the softmax size'})."
                )
            return k
        fd = FeatureDescription(self.name, "multiArray", self.shape)
        return annotate(index, lambda: check_array(raw, fd)).astype(np.float32)

    def tensor(self, examples: Sequence[Mapping[str, Any]]) -> torch.Tensor:
        """Targets of all examples: int64 class indices ``[N]`` or float32 ``[N, *shape]``."""
        values = [self.value(i, ex[self.name]) for i, ex in enumerate(examples)]
        if self.kind == "array":
            return torch.from_numpy(np.stack(values).astype(np.float32))
        return torch.tensor(values, dtype=torch.int64)
