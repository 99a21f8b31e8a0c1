"""Load-time validation: what mlupdate can run, with errors that say how to fix the model."""

from __future__ import annotations

from typing import Any

from mlupdate.errors import SpecError, UnsupportedModelError

RUNNABLE = ("neuralNetwork", "neuralNetworkClassifier", "neuralNetworkRegressor",
            "kNearestNeighborsClassifier", "pipeline", "pipelineClassifier", "pipelineRegressor")


def check_model_type(spec: Any, where: str = "The model") -> str:
    """Return the model type, or raise a clear error for types mlupdate cannot run.

    Raises:
        UnsupportedModelError: For mlProgram, linked models and other non-NN types.
    """
    kind = spec.WhichOneof("Type")
    if kind == "mlProgram":
        raise UnsupportedModelError(
            f"{where} is an ML Program (spec version {spec.specificationVersion}). Core ML cannot update ML "
            "Programs on device, and neither can mlupdate. Convert the source model with "
            "coremltools.convert(..., convert_to='neuralnetwork', minimum_deployment_target=ct.target.iOS13), "
            "or use mlupdate.convert(torch_module, ...)."
        )
    if kind == "linkedModel":
        raise UnsupportedModelError(
            f"{where} is a LinkedModel, which refers to a compiled .mlmodelc on an Apple device. Put the "
            "referenced .mlmodel in the pipeline instead of the link."
        )
    if kind not in RUNNABLE:
        raise UnsupportedModelError(
            f"{where} is of type '{kind}'. mlupdate runs and updates neural networks, k-NN classifiers and "
            f"pipelines of them ({', '.join(RUNNABLE)})."
        )
    if kind in ("neuralNetworkClassifier",):
        nn = spec.neuralNetworkClassifier
        if nn.WhichOneof("ClassLabels") is None:
            raise SpecError(f"{where} is a classifier without class labels; add stringClassLabels or int64ClassLabels.")
    if kind.startswith("pipeline"):
        pipe = spec.pipeline if kind == "pipeline" else getattr(spec, kind).pipeline
        if not pipe.models:
            raise SpecError(f"{where} is a pipeline with no models; add at least one model.")
        for i, sub in enumerate(pipe.models):
            check_model_type(sub, f"Model {i} of the pipeline")
    return kind
