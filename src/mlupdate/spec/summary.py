"""A plain-dict summary of a spec (what ``mlupdate inspect`` prints)."""

from __future__ import annotations

from typing import Any

from mlupdate.models import REFUSED
from mlupdate.spec.description import Description
from mlupdate.spec.mil import program_summary
from mlupdate.spec.params import optimizer_of, update_parameters
from mlupdate.spec.validate import RUNNABLE


def summarize(spec: Any) -> dict[str, Any]:
    """Summarize a ``Model_pb2.Model``: interface, metadata, layers, update configuration.

    ``runs`` is True for a type mlupdate runs, else the reason it does not (pipelines: per stage).
    """
    d = Description.from_spec(spec)
    kind = spec.WhichOneof("Type")
    info: dict[str, Any] = {
        "type": kind,
        "runs": True if kind in RUNNABLE else REFUSED.get(kind or "", "a model type this version does not know"),
        "specification_version": spec.specificationVersion,
        "is_updatable": spec.isUpdatable,
        "inputs": [str(f) for f in d.inputs.values()],
        "outputs": [str(f) for f in d.outputs.values()],
        "training_inputs": [str(f) for f in d.training_inputs.values()],
        "class_labels": d.class_labels,
        "predicted_feature_name": d.predicted_feature_name,
        "predicted_probabilities_name": d.predicted_probabilities_name,
        "metadata": d.metadata,
        "layers": [],
        "update": None,
    }
    if kind and kind.startswith("neuralNetwork"):
        nn = getattr(spec, kind)
        info["layers"] = [{"name": layer.name, "type": layer.WhichOneof("layer"), "inputs": list(layer.input),
                           "outputs": list(layer.output), "updatable": layer.isUpdatable} for layer in nn.layers]
        if nn.HasField("updateParams"):
            info["update"] = _update_info(spec, nn.updateParams)
    elif kind == "kNearestNeighborsClassifier":
        knn = spec.kNearestNeighborsClassifier
        index = knn.nearestNeighborsIndex
        info["knn"] = {"dimensions": index.numberOfDimensions, "samples": len(index.floatSamples),
                       "index": index.WhichOneof("IndexType"), "weighting": knn.WhichOneof("WeightingScheme"),
                       "k": update_parameters(spec)["number_of_neighbors"].describe()}
    elif kind == "mlProgram":  # ML Programs (issue 17): one call, for the model-kind registry
        info["program"] = program_summary(spec)
    elif kind and kind.startswith("pipeline"):
        pipe = spec.pipeline if kind == "pipeline" else getattr(spec, kind).pipeline
        info["models"] = [summarize(m) for m in pipe.models]
    return info


def _update_info(spec: Any, up: Any) -> dict[str, Any]:
    losses = []
    for loss in up.lossLayers:
        which = loss.WhichOneof("LossLayerType") or "none"
        body = getattr(loss, which) if which != "none" else None
        losses.append({"name": loss.name, "type": which.replace("LossLayer", ""),
                       "input": body.input if body else "", "target": body.target if body else ""})
    params = update_parameters(spec)
    opt_kind, _ = optimizer_of(up)
    opt_keys = ("learning_rate", "mini_batch_size", "momentum", "beta1", "beta2", "eps")
    return {
        "losses": losses,
        "optimizer": {"type": opt_kind, "parameters": {k: params[k].describe() for k in opt_keys if k in params}}
        if opt_kind else None,
        "epochs": params["epochs"].describe() if "epochs" in params else None,
        "shuffle": params["shuffle"].default if "shuffle" in params else None,
        "seed": params["seed"].default if "seed" in params else None,
    }
