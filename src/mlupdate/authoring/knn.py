"""Updatable k-nearest-neighbours classifiers and the drawing-classifier pipeline (Core ML 3).

``knn_classifier`` writes the same spec as coremltools' ``KNearestNeighborsClassifierBuilder``
(spec version 4, updatable, FLOAT32 ``[dimensions]`` input, a label output and a ``<label>Probs``
dictionary, training inputs ``[input, label]``). ``pipeline_classifier`` wraps a feature extractor
and such a k-NN in an updatable ``pipelineClassifier`` as in coremltools' "updatable tiny drawing
classifier" guide: the extractor is frozen, the k-NN learns by storing new samples.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import numpy as np

from mlupdate.errors import AuthoringError, ModelFileError
from mlupdate.runtime.execution import TORCH_CPU
from mlupdate.runtime.model import Model
from mlupdate.runtime.network import NetworkProgram
from mlupdate.spec.io import Model_pb2, read_spec, resolve_spec
from mlupdate.spec.model_types import UPDATABLE_SPEC_VERSION

WEIGHTINGS = ("uniform", "inverse_distance")
INDEXES = ("linear", "kd_tree")
_FLOAT32 = Model_pb2.ArrayFeatureType.FLOAT32


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise AuthoringError(f"{name} must be a positive integer, got {value!r}.")
    return value


def knn_classifier(dimensions: int, k: int = 3, weighting: str = "uniform", index: str = "linear",
                   leaf_size: int = 30, default_label: str | int = "defaultLabel", input_name: str = "features",
                   output_name: str = "label", k_range: tuple[int, int] | None = (1, 1000),
                   k_set: Iterable[int] | None = None) -> Model:
    """An empty, updatable k-NN classifier (``kNearestNeighborsClassifier``).

    Args:
        dimensions: Length of the input vectors.
        k: Default number of neighbours (``numberOfNeighbors``).
        weighting: ``"uniform"`` (one vote per neighbour) or ``"inverse_distance"`` (votes of 1/distance).
        index: ``"linear"`` (brute force) or ``"kd_tree"``.
        leaf_size: Leaf size of the kd-tree (kept only for ``index="kd_tree"``).
        default_label: What the empty model predicts; its type (str or int) fixes the label type.
        input_name: Name of the ``[dimensions]`` FLOAT32 multiarray input.
        output_name: Name of the label output; the probabilities are ``output_name + "Probs"``.
        k_range: Allowed range of k, ``(min, max)``; ignored when ``k_set`` is given.
        k_set: Allowed values of k (instead of a range).

    Returns:
        The model (spec version 4, ``isUpdatable``).

    Raises:
        AuthoringError: For a value Core ML would reject; the message says which and why.
    """
    _positive_int("dimensions", dimensions)
    _positive_int("k", k)
    if weighting not in WEIGHTINGS:
        raise AuthoringError(f"weighting must be one of {', '.join(WEIGHTINGS)}, got {weighting!r}.")
    if index not in INDEXES:
        raise AuthoringError(f"index must be one of {', '.join(INDEXES)}, got {index!r}.")
    if index == "kd_tree":
        _positive_int("leaf_size", leaf_size)
    if isinstance(default_label, bool) or not isinstance(default_label, str | int):
        raise AuthoringError(f"default_label must be a str or an int (it sets the label type), got {default_label!r}.")
    if not input_name or not output_name or input_name in (output_name, output_name + "Probs"):
        raise AuthoringError(f"input_name ({input_name!r}) and output_name ({output_name!r}) must be distinct "
                             "non-empty names (the probabilities output is output_name + 'Probs').")

    spec = Model_pb2.Model()
    spec.specificationVersion = UPDATABLE_SPEC_VERSION
    spec.isUpdatable = True
    knn = spec.kNearestNeighborsClassifier
    knn.nearestNeighborsIndex.numberOfDimensions = dimensions
    d = spec.description
    for feats in (d.input, d.trainingInput):
        f = feats.add()
        f.name = input_name
        f.type.multiArrayType.dataType = _FLOAT32
        f.type.multiArrayType.shape.append(dimensions)
    label, probs = d.output.add(), d.output.add()
    label.name, probs.name = output_name, output_name + "Probs"
    target = d.trainingInput.add()
    target.name = output_name
    if isinstance(default_label, str):
        label.type.stringType.SetInParent()
        target.type.stringType.SetInParent()
        probs.type.dictionaryType.stringKeyType.SetInParent()
        knn.stringClassLabels.SetInParent()
        knn.defaultStringLabel = default_label
    else:
        label.type.int64Type.SetInParent()
        target.type.int64Type.SetInParent()
        probs.type.dictionaryType.int64KeyType.SetInParent()
        knn.int64ClassLabels.SetInParent()
        knn.defaultInt64Label = default_label
    d.predictedFeatureName = label.name
    d.predictedProbabilitiesName = probs.name
    _set_k(knn.numberOfNeighbors, k, k_range, k_set)
    if weighting == "inverse_distance":
        knn.inverseDistanceWeighting.SetInParent()
    else:
        knn.uniformWeighting.SetInParent()
    if index == "kd_tree":
        knn.nearestNeighborsIndex.singleKdTreeIndex.leafSize = leaf_size
    else:
        knn.nearestNeighborsIndex.linearIndex.SetInParent()
    knn.nearestNeighborsIndex.squaredEuclideanDistance.SetInParent()
    return Model(spec)


def _set_k(param: Any, k: int, k_range: tuple[int, int] | None, k_set: Iterable[int] | None) -> None:
    param.defaultValue = k
    if k_set is not None:
        values = list(k_set)
        if not values:
            raise AuthoringError("k_set is empty; give the allowed values of k (it must contain k).")
        for v in values:
            _positive_int("every value of k_set", v)
        if len(set(values)) != len(values):
            raise AuthoringError(f"k_set {values} has duplicates; the allowed values must be unique.")
        if k not in values:
            raise AuthoringError(f"k={k} is not in k_set {values}; Core ML rejects a default outside its set.")
        param.set.values.extend(sorted(values))
        return
    if k_range is None:
        return
    try:
        lo, hi = (int(v) for v in k_range)
    except (TypeError, ValueError):
        raise AuthoringError(f"k_range must be a (min, max) pair of integers, got {k_range!r}.") from None
    if lo <= 0 or hi < lo:
        raise AuthoringError(f"k_range=({lo}, {hi}) must satisfy 0 < min <= max.")
    if not lo <= k <= hi:
        raise AuthoringError(f"k={k} lies outside k_range ({lo}, {hi}); choose k inside the range or widen it.")
    param.range.minValue, param.range.maxValue = lo, hi


def _spec_of(model: Any, what: str) -> Any:
    if isinstance(model, str | os.PathLike):
        return read_spec(model)
    try:
        return resolve_spec(model)
    except ModelFileError:
        raise AuthoringError(f"{what} must be an mlupdate.Model, a Model_pb2.Model or a .mlmodel path, "
                             f"got {type(model).__name__}.") from None


def _output_size(spec: Any, name: str) -> int:
    """Values per example in an undeclared-shape output (coremltools leaves NN output shapes empty): run it once."""
    kind = spec.WhichOneof("Type")
    if not (kind or "").startswith("neuralNetwork"):
        raise AuthoringError(f"The feature extractor is a {kind}; it must be a neural network producing '{name}'.")
    prog = NetworkProgram(spec, TORCH_CPU)
    blobs = prog.run(prog.sample_inputs())
    if name not in blobs:
        raise AuthoringError(f"The feature extractor declares output '{name}' but computes no such blob.")
    return int(blobs[name].size)


def pipeline_classifier(feature_extractor: Any, knn: Any) -> Model:
    """The drawing-classifier pattern: a frozen feature extractor feeding an updatable k-NN.

    Args:
        feature_extractor: A neural network (``mlupdate.Model``, spec or path) whose output is the k-NN's input.
        knn: An updatable k-NN classifier, e.g. from :func:`knn_classifier`.

    Returns:
        An updatable ``pipelineClassifier`` (spec version >= 4) with the extractor's inputs, the k-NN's
        outputs, and training inputs ``[extractor's input, k-NN label]``.

    Raises:
        AuthoringError: If the k-NN is not a k-NN classifier, or the extractor's output does not feed the
            k-NN's input by name and size.
    """
    fx, kn = _spec_of(feature_extractor, "feature_extractor"), _spec_of(knn, "knn")
    if kn.WhichOneof("Type") != "kNearestNeighborsClassifier":
        raise AuthoringError(f"knn must be a kNearestNeighborsClassifier, got {kn.WhichOneof('Type')}; build one "
                             "with mlupdate.knn_classifier(dimensions, ...).")
    if fx.WhichOneof("Type") in ("kNearestNeighborsClassifier", "pipelineClassifier"):
        raise AuthoringError(f"feature_extractor is a {fx.WhichOneof('Type')}; it must be a model that outputs the "
                             "k-NN's feature vector (a neural network).")
    knn_in = kn.description.input[0]
    outs = {o.name: o for o in fx.description.output}
    if knn_in.name not in outs:
        raise AuthoringError(
            f"The feature extractor's outputs ({', '.join(outs) or 'none'}) do not include the k-NN's input "
            f"'{knn_in.name}'. Build the k-NN with input_name equal to the extractor's embedding output."
        )
    dims = kn.kNearestNeighborsClassifier.nearestNeighborsIndex.numberOfDimensions
    out = outs[knn_in.name]
    if out.type.WhichOneof("Type") != "multiArrayType":
        raise AuthoringError(f"Extractor output '{out.name}' is not a multiarray; the k-NN needs a feature vector.")
    shape = [int(s) for s in out.type.multiArrayType.shape]
    size = int(np.prod(shape)) if shape else _output_size(fx, out.name)
    if size != dims:
        raise AuthoringError(
            f"Extractor output '{out.name}' holds {size} values (shape {shape or 'undeclared'}) but the k-NN takes "
            f"{dims} dimensions. Build the k-NN with dimensions={size}."
        )
    fx.isUpdatable = False
    del fx.description.trainingInput[:]
    kn.isUpdatable = True
    spec = Model_pb2.Model()
    spec.specificationVersion = max(UPDATABLE_SPEC_VERSION, fx.specificationVersion, kn.specificationVersion)
    spec.isUpdatable = True
    d = spec.description
    d.input.extend(fx.description.input)
    d.output.extend(kn.description.output)
    d.predictedFeatureName = kn.description.predictedFeatureName
    d.predictedProbabilitiesName = kn.description.predictedProbabilitiesName
    images = [f for f in fx.description.input if f.type.WhichOneof("Type") == "imageType"]
    d.trainingInput.append((images or list(fx.description.input))[0])
    d.trainingInput.extend(f for f in kn.description.trainingInput if f.name == kn.description.predictedFeatureName)
    spec.pipelineClassifier.pipeline.models.extend([fx, kn])
    return Model(spec)
