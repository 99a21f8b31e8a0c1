"""Every error a user can cause is a subclass of :class:`Error`.

Each message names the thing that is wrong and says how to fix it. Each class also derives from the
matching built-in exception (as scikit-learn's do), so ``except ValueError`` in user code catches a bad
value, ``except TypeError`` an argument of the wrong type and ``except OSError`` a file problem.
"""

from __future__ import annotations


class Error(Exception):
    """Base class of all mlupdate errors."""


class ModelFileError(Error, OSError):
    """The file is missing, unreadable, truncated or not a Core ML model."""


class ModelNotFoundError(ModelFileError, FileNotFoundError):
    """No file at the path given (or a linked model's file is in no folder searched)."""


class ModelTypeError(ModelFileError, TypeError):
    """What should be a model is none of a path, a spec, an ``mlupdate.Model`` or a coremltools ``MLModel``."""


class UnsupportedModelError(Error, ValueError):
    """The model type (for example mlProgram) cannot be run or updated by mlupdate."""


class UnsupportedLayerError(Error, ValueError):
    """A neural-network layer kind that mlupdate does not implement."""


class SpecError(Error, ValueError):
    """The model's specification is inconsistent (missing blobs, wrong weight counts, ...)."""


class LayerError(Error, ValueError):
    """A layer failed while running: its parameters do not fit the inputs it was given."""


class FeatureError(Error, ValueError, TypeError):
    """A prediction or training feature is missing or has the wrong type or shape."""


class ImageError(FeatureError):
    """An image feature could not be decoded or does not satisfy the model's image constraint."""


class UpdateError(Error, RuntimeError):
    """An update task could not run or failed while running."""


class NotUpdatableError(UpdateError, ValueError):
    """The model is not marked updatable, or the requested layers cannot be updated."""


class TrainingDataError(UpdateError, ValueError):
    """The training data is empty or does not match the model's training inputs."""


class ParameterError(Error, ValueError):
    """An update parameter is unknown or outside the range or set the model declares."""


class AuthoringError(Error, ValueError):
    """make_updatable, a repair or a builder was asked for something Core ML does not allow."""


class ConversionError(Error, ValueError):
    """A PyTorch or Keras model could not be converted to a Core ML neural network."""


class MissingDependencyError(Error, ImportError):
    """A command or feature needs an optional dependency (an extra) that is not installed; names the extra."""


class ExportError(Error, RuntimeError):
    """The compiled graph could not be exported to ONNX (mlupdate then falls back to PyTorch)."""
