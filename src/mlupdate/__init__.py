"""mlupdate: Core ML updatable models and MLUpdateTask on any machine with Python.

Public API::

    model = mlupdate.load("CatDog.mlmodel")
    model.predict({"image": "cat.jpg"})
"""

from mlupdate.errors import (
    AuthoringError,
    ConversionError,
    Error,
    ExportError,
    FeatureError,
    ImageError,
    LayerError,
    MissingDependencyError,
    ModelFileError,
    ModelNotFoundError,
    ModelTypeError,
    NotUpdatableError,
    ParameterError,
    SpecError,
    TrainingDataError,
    UnsupportedLayerError,
    UnsupportedModelError,
    UpdateError,
)
from mlupdate.features.images import ImageConstraint
from mlupdate.runtime.model import Model, load
from mlupdate.spec.description import Description, FeatureDescription
from mlupdate.version import __version__ as __version__

# Names that live in heavier modules are imported on first use (keeps `import mlupdate` fast).
_LAZY = {
    "make_updatable": "mlupdate.authoring.updatable",
    "SGD": "mlupdate.authoring.optimizers",
    "Adam": "mlupdate.authoring.optimizers",
    "lint": "mlupdate.authoring.lint",
    "Problem": "mlupdate.authoring.lint",
    "convert": "mlupdate.authoring.convert_torch",
    "convert_keras": "mlupdate.authoring.keras_h5",
    "knn_classifier": "mlupdate.authoring.knn",
    "pipeline_classifier": "mlupdate.authoring.knn",
    "UpdateTask": "mlupdate.update.task",
    "UpdateContext": "mlupdate.update.task",
    "ProgressHandlers": "mlupdate.update.task",
    "supported_layers": "mlupdate.layers",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'mlupdate' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value

__all__ = [
    "AuthoringError", "ConversionError", "Description", "Error", "ExportError", "FeatureDescription",
    "FeatureError", "ImageConstraint", "ImageError", "LayerError", "MissingDependencyError", "Model", "ModelFileError",
    "ModelNotFoundError",
    "ModelTypeError", "NotUpdatableError",
    "ParameterError", "SpecError", "TrainingDataError", "UnsupportedLayerError", "UnsupportedModelError",
    "UpdateError", "load", *_LAZY,
]
