"""Plain-Python views of a model's interface: features, training inputs, labels, metadata."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mlupdate.features.images import ImageConstraint

_ARRAY_DTYPES = {65568: "float32", 65600: "float64", 131104: "int32", 65552: "float16", 131080: "int8"}


@dataclass(frozen=True)
class FeatureDescription:
    """One input, output or training input.

    Attributes:
        name: Feature name.
        type: One of ``image``, ``multiArray``, ``string``, ``int64``, ``double``, ``dictionary``,
            ``sequence`` or ``state``.
        shape: Declared shape for multiarrays (empty otherwise).
        dtype: numpy dtype name for multiarrays, ``"str"``/``"int64"`` for dictionary keys.
        image_constraint: Size and colour space for image features.
        short_description: Free text from the model.
        optional: Whether the feature may be omitted.
        enumerated_shapes: The shapes a flexible multiarray may take (``enumeratedShapes``).
        shape_ranges: ``(lower, upper)`` per axis of a flexible multiarray (``shapeRange``; upper
            ``-1`` is unbounded).
    """

    name: str
    type: str
    shape: tuple[int, ...] = ()
    dtype: str | None = None
    image_constraint: ImageConstraint | None = None
    short_description: str = ""
    optional: bool = False
    enumerated_shapes: tuple[tuple[int, ...], ...] = ()
    shape_ranges: tuple[tuple[int, int], ...] = ()

    @classmethod
    def from_proto(cls, fd: Any) -> FeatureDescription:
        """Build from a ``FeatureDescription`` protobuf message."""
        kind = fd.type.WhichOneof("Type") or "unknown"
        kind = {"imageType": "image", "multiArrayType": "multiArray", "stringType": "string",
                "int64Type": "int64", "doubleType": "double", "dictionaryType": "dictionary",
                "sequenceType": "sequence", "stateType": "state"}.get(kind, kind)
        shape: tuple[int, ...] = ()
        dtype = None
        constraint = None
        enumerated: tuple[tuple[int, ...], ...] = ()
        ranges: tuple[tuple[int, int], ...] = ()
        if kind == "multiArray":
            ma = fd.type.multiArrayType
            shape = tuple(int(s) for s in ma.shape)
            dtype = _ARRAY_DTYPES.get(ma.dataType, "float32")
            flex = ma.WhichOneof("ShapeFlexibility")
            if flex == "enumeratedShapes":
                enumerated = tuple(tuple(int(d) for d in s.shape) for s in ma.enumeratedShapes.shapes)
            elif flex == "shapeRange":
                ranges = tuple((int(r.lowerBound), int(r.upperBound)) for r in ma.shapeRange.sizeRanges)
        elif kind == "image":
            constraint = ImageConstraint.from_proto(fd.type.imageType)
        elif kind == "dictionary":
            dtype = "int64" if fd.type.dictionaryType.WhichOneof("KeyType") == "int64KeyType" else "str"
        return cls(fd.name, kind, shape, dtype, constraint, fd.shortDescription, fd.type.isOptional, enumerated,
                   ranges)

    @property
    def flexible(self) -> bool:
        """Whether a multiarray feature accepts shapes other than its default ``shape``."""
        return bool(self.enumerated_shapes or self.shape_ranges)

    def accepts_shape(self, shape: tuple[int, ...]) -> bool:
        """Whether a multiarray of ``shape`` fits the declared shape or its flexibility."""
        if shape == self.shape or shape in self.enumerated_shapes:
            return True
        return len(shape) == len(self.shape_ranges) > 0 and all(
            lo <= d and (hi < 0 or d <= hi) for d, (lo, hi) in zip(shape, self.shape_ranges, strict=True))

    def shape_text(self) -> str:
        """The declared shape and its flexibility, e.g. ``[1, 3] or [2, 3]`` or ``[1..4, 3]``."""
        if self.enumerated_shapes:
            return " or ".join(str(list(s)) for s in self.enumerated_shapes)
        if self.shape_ranges:
            return "[" + ", ".join(f"{lo}..{'' if hi < 0 else hi}" if lo != hi else str(lo)
                                   for lo, hi in self.shape_ranges) + "]"
        return str(list(self.shape))

    def __str__(self) -> str:
        if self.type == "image" and self.image_constraint is not None:
            return f"{self.name}: {self.image_constraint}"
        if self.type == "multiArray":
            return f"{self.name}: MultiArray({self.dtype}, {self.shape_text()})"
        if self.type == "dictionary":
            return f"{self.name}: Dictionary({self.dtype} -> float)"
        return f"{self.name}: {self.type}"


@dataclass(frozen=True)
class Description:
    """What ``Model.description`` returns: the model's interface and metadata.

    Attributes:
        model_type: The spec's model type (``neuralNetworkClassifier``, ``pipelineClassifier``, ...).
        specification_version: The spec version (4 = iOS 13, the first with updatable models).
        inputs: Prediction inputs by name.
        outputs: Outputs by name.
        training_inputs: Training inputs by name (empty when the model is not updatable).
        class_labels: Labels of a classifier, in score order.
        predicted_feature_name: Output holding the top label (classifiers).
        predicted_probabilities_name: Output holding ``{label: probability}`` (classifiers).
        metadata: author, license, short_description, version and user_defined.
        is_updatable: ``Model.isUpdatable``.
    """

    model_type: str
    specification_version: int
    inputs: dict[str, FeatureDescription]
    outputs: dict[str, FeatureDescription]
    training_inputs: dict[str, FeatureDescription]
    class_labels: list[str] | list[int] | None
    predicted_feature_name: str | None
    predicted_probabilities_name: str | None
    metadata: dict[str, Any] = field(default_factory=dict)
    is_updatable: bool = False

    @classmethod
    def from_spec(cls, spec: Any) -> Description:
        """Build the description of a ``Model_pb2.Model``."""
        d = spec.description
        md = d.metadata
        metadata = {
            "author": md.author,
            "license": md.license,
            "short_description": md.shortDescription,
            "version": md.versionString,
            "user_defined": dict(md.userDefined),
        }
        return cls(
            model_type=spec.WhichOneof("Type") or "",
            specification_version=spec.specificationVersion,
            inputs={f.name: FeatureDescription.from_proto(f) for f in d.input},
            outputs={f.name: FeatureDescription.from_proto(f) for f in d.output},
            training_inputs={f.name: FeatureDescription.from_proto(f) for f in d.trainingInput},
            class_labels=class_labels_of(spec),
            predicted_feature_name=d.predictedFeatureName or None,
            predicted_probabilities_name=d.predictedProbabilitiesName or None,
            metadata=metadata,
            is_updatable=spec.isUpdatable,
        )


#: Classifier types whose message holds a ``ClassLabels`` oneof (string or int64 labels).
_LABELLED = ("neuralNetworkClassifier", "glmClassifier", "supportVectorClassifier", "treeEnsembleClassifier")


def class_labels_of(spec: Any) -> list[str] | list[int] | None:
    """Return a classifier's labels (the classifier types, or the last model of a pipeline)."""
    kind = spec.WhichOneof("Type")
    if kind in _LABELLED:
        return _labels(getattr(spec, kind)) or None
    if kind == "kNearestNeighborsClassifier":
        labels = _labels(spec.kNearestNeighborsClassifier)
        return sorted(set(labels), key=labels.index)
    if kind in ("pipelineClassifier", "pipeline", "pipelineRegressor"):
        models = getattr(spec, kind).pipeline.models if kind != "pipeline" else spec.pipeline.models
        return class_labels_of(models[-1]) if models else None
    return None


def _labels(msg: Any) -> list[Any]:
    which = msg.WhichOneof("ClassLabels")
    if which == "stringClassLabels":
        return list(msg.stringClassLabels.vector)
    if which == "int64ClassLabels":
        return [int(v) for v in msg.int64ClassLabels.vector]
    return []
