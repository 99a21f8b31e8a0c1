"""Names from ``Model.proto`` that several layers need: the neural-network and pipeline types.

What each model type *does* (its program, update, lint rules, summary) lives in :mod:`mlupdate.kinds`;
this module only names the types and reaches into their messages.
"""

from __future__ import annotations

from typing import Any

from mlupdate.errors import NotUpdatableError

#: The neural-network types; their messages share the ``NeuralNetwork`` fields (layers, updateParams, ...).
NN_TYPES = ("neuralNetwork", "neuralNetworkClassifier", "neuralNetworkRegressor")
#: The pipeline types; each holds a ``Pipeline`` message (``pipeline`` itself is one).
PIPELINE_TYPES = ("pipeline", "pipelineClassifier", "pipelineRegressor")
#: The layer kinds whose weights Core ML updates (coremltools builder: _SUPPORTED_UPDATABLE_LAYERS).
UPDATABLE_LAYERS = ("convolution", "innerProduct")
#: The first specification version with updatable models (iOS 13, Core ML 3).
UPDATABLE_SPEC_VERSION = 4


def network_of(spec: Any) -> Any:
    """The ``NeuralNetwork*`` message of a neural-network spec (None for any other type)."""
    kind = spec.WhichOneof("Type")
    return getattr(spec, kind) if kind in NN_TYPES else None


def pipeline_of(spec: Any) -> Any:
    """The ``Pipeline`` message of a pipeline spec (None for any other type)."""
    kind = spec.WhichOneof("Type")
    if kind == "pipeline":
        return spec.pipeline
    return getattr(spec, kind).pipeline if kind in PIPELINE_TYPES else None


def not_updatable(spec: Any) -> None:
    """Raise ``NotUpdatableError`` unless the spec is marked updatable."""
    if not spec.isUpdatable:
        raise NotUpdatableError(
            "The model is not updatable (isUpdatable is false). Make it updatable first: "
            "mlupdate.make_updatable(model, [layer names]) or `mlupdate make-updatable`."
        )
