"""k-nearest-neighbours classifiers (``kNearestNeighborsClassifier``).

Program: :class:`mlupdate.runtime.knn.KNNProgram`; update: :class:`mlupdate.update.knn.KNNUpdate` (the
examples are appended to the samples); lint: Core ML's k-NN validator rules (:func:`knn_problems`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlupdate.kinds.registry import Build, Kind, UpdateRequest, register
from mlupdate.spec.params import knn_parameters


def _program(spec: Any, build: Build) -> Any:
    from mlupdate.runtime.knn import KNNProgram  # scipy.spatial: only when a k-NN is loaded

    return KNNProgram(spec)


def _update(spec: Any, request: UpdateRequest) -> Any:
    from mlupdate.update.knn import KNNUpdate  # torch (through update.data): only when an update is made

    return KNNUpdate(spec, request.values, list(request.examples))


def _stage_update(spec: Any, request: UpdateRequest, pipeline: Any,
                  features: Callable[[], list[dict[str, Any]]]) -> Any:
    from mlupdate.update.knn import KNNUpdate  # torch (through update.data): only when an update is made

    name = spec.description.input[0].name
    return KNNUpdate(spec, request.values, list(request.examples), lambda: [f[name] for f in features()])


def _lint(spec: Any, errors_only: bool, folder: Path | None) -> list[Any]:
    return knn_problems(spec)


def _summary(spec: Any) -> dict[str, Any]:
    knn = spec.kNearestNeighborsClassifier
    index = knn.nearestNeighborsIndex
    return {"knn": {"dimensions": index.numberOfDimensions, "samples": len(index.floatSamples),
                    "index": index.WhichOneof("IndexType"), "weighting": knn.WhichOneof("WeightingScheme"),
                    "k": knn_parameters(spec)["number_of_neighbors"].describe()}}


def knn_problems(spec: Any) -> list[Any]:
    """Core ML's k-NN classifier rules (KNearestNeighborsClassifierValidator.cpp)."""
    from mlupdate.authoring.lint_rules import Problem, int64_problems  # torch: lint_rules runs networks

    knn = spec.kNearestNeighborsClassifier
    index = knn.nearestNeighborsIndex
    out = int64_problems("numberOfNeighbors", knn.numberOfNeighbors, True, "knn-k")
    if knn.WhichOneof("WeightingScheme") is None:
        out.append(Problem("error", "knn-weighting", "The k-NN classifier has no weighting scheme; set uniform or "
                                                     "inverse-distance weighting."))
    labels_kind = knn.WhichOneof("ClassLabels")
    default_kind = knn.WhichOneof("DefaultClassLabel")
    if labels_kind is None and default_kind is None:
        out.append(Problem("error", "knn-default-label", "The k-NN classifier has neither labels nor a default label; "
                                                         "set a default label (what an empty model predicts)."))
    if labels_kind and default_kind and (labels_kind == "stringClassLabels") != (default_kind == "defaultStringLabel"):
        out.append(Problem("error", "knn-default-label", "The k-NN default label's type does not match the type of "
                                                         "its labels; use string labels with a string default, or "
                                                         "integers with an integer default."))
    n_labels = len(getattr(knn, labels_kind).vector) if labels_kind else 0
    if n_labels != len(index.floatSamples):
        out.append(Problem("error", "knn-samples", f"The k-NN classifier stores {len(index.floatSamples)} samples but "
                                                   f"{n_labels} labels; every sample needs exactly one label."))
    bad = [i for i, s in enumerate(index.floatSamples) if len(s.vector) != index.numberOfDimensions]
    if bad:
        out.append(Problem("error", "knn-samples", f"Samples {bad[:5]} do not have {index.numberOfDimensions} values "
                                                   "(numberOfDimensions); store vectors of that length."))
    which = index.WhichOneof("IndexType")
    if which is None:
        out.append(Problem("error", "knn-index", "The k-NN index type is not set; use a linear index or a kd-tree."))
    elif which == "singleKdTreeIndex" and index.singleKdTreeIndex.leafSize <= 0:
        out.append(Problem("error", "knn-index", f"The kd-tree leaf size is {index.singleKdTreeIndex.leafSize}; it "
                                                 "must be positive (coremltools uses 30)."))
    if index.WhichOneof("DistanceFunction") is None:
        out.append(Problem("error", "knn-distance", "The k-NN index has no distance function; set squared Euclidean "
                                                    "distance."))
    return out


register(Kind("kNearestNeighborsClassifier", "knn", program=_program, update=_update, stage_update=_stage_update,
              lint=_lint, summary=_summary, parameters=knn_parameters))
