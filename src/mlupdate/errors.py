"""Every error a user can cause is a subclass of :class:`Error`.

Each message names the thing that is wrong and says how to fix it.
"""

from __future__ import annotations


class Error(Exception):
    """Base class of all mlupdate errors."""


class ModelFileError(Error):
    """The file is missing, unreadable, truncated or not a Core ML model."""


class UnsupportedModelError(Error):
    """The model type (for example mlProgram) cannot be run or updated by mlupdate."""


class UnsupportedLayerError(Error):
    """A neural-network layer kind that mlupdate does not implement."""


class SpecError(Error):
    """The model's specification is inconsistent (missing blobs, wrong weight counts, ...)."""


class LayerError(Error):
    """A layer failed while running: its parameters do not fit the inputs it was given."""


class FeatureError(Error):
    """A prediction or training feature is missing or has the wrong type or shape."""


class ImageError(FeatureError):
    """An image feature could not be decoded or does not satisfy the model's image constraint."""


class UpdateError(Error):
    """An update task could not run or failed while running."""


class NotUpdatableError(UpdateError):
    """The model is not marked updatable, or the requested layers cannot be updated."""


class TrainingDataError(UpdateError):
    """The training data is empty or does not match the model's training inputs."""


class ParameterError(Error):
    """An update parameter is unknown or outside the range or set the model declares."""


class AuthoringError(Error):
    """make_updatable, a repair or a builder was asked for something Core ML does not allow."""


class ConversionError(Error):
    """A PyTorch or Keras model could not be converted to a Core ML neural network."""


class ExportError(Error):
    """The compiled graph could not be exported to ONNX (mlupdate then falls back to PyTorch)."""
