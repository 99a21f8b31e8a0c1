"""Neural networks (``neuralNetwork``, ``neuralNetworkClassifier``, ``neuralNetworkRegressor``).

Program: :class:`mlupdate.runtime.network.NetworkProgram`; update: :class:`mlupdate.update.trainer.NetworkUpdate`;
lint: Core ML's updatable-network rules (:mod:`mlupdate.authoring.lint_rules`). The engines are imported
when a network is built: they bring torch, which a load from the compiled-model cache does without.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlupdate.errors import SpecError
from mlupdate.kinds.registry import Build, Kind, UpdateRequest, register
from mlupdate.runtime.network import NetworkProgram
from mlupdate.spec.description import Description
from mlupdate.spec.model_types import NN_TYPES, network_of
from mlupdate.spec.params import network_parameters, optimizer_of
from mlupdate.update.pipeline import LazyNetworkUpdate


def _program(spec: Any, build: Build) -> Any:
    return NetworkProgram(spec, build.execution, build.cache_key)


def _check_classifier(spec: Any, where: str) -> None:
    if spec.neuralNetworkClassifier.WhichOneof("ClassLabels") is None:
        raise SpecError(f"{where} is a classifier without class labels; add stringClassLabels or int64ClassLabels.")
    d = spec.description
    outputs = {o.name: o for o in d.output}
    for field, name, kind in (("predictedFeatureName", d.predictedFeatureName, None),
                              ("predictedProbabilitiesName", d.predictedProbabilitiesName, "dictionaryType")):
        if not name:
            continue
        out = outputs.get(name)
        if out is None:
            raise SpecError(f"{where}'s {field} is '{name}', which is not one of its outputs "
                            f"({', '.join(outputs) or 'none'}). Name the output that holds it, or declare it.")
        got = out.type.WhichOneof("Type")
        if kind is not None and got != kind:
            raise SpecError(f"{where}'s {field} names output '{name}', declared a {got or 'feature without a type'}; "
                            "a classifier's probabilities are a dictionary of class label to probability. Declare "
                            "it as a dictionary keyed like the class labels.")


def _update(spec: Any, request: UpdateRequest) -> Any:
    from mlupdate.update.trainer import NetworkUpdate  # torch: only when an update is made

    return NetworkUpdate(spec, request.values, request.execution, request.crop_and_scale,
                         list(request.examples), request.frozen_cache)


def _stage_update(spec: Any, request: UpdateRequest, pipeline: Any,
                  features: Callable[[], list[dict[str, Any]]]) -> Any:
    from mlupdate.update.data import require_features  # torch: only when an update is made

    training = Description.from_spec(pipeline).training_inputs
    require_features(request.examples, [f for f in training.values() if f.type != "image"], list(training))
    return LazyNetworkUpdate(spec, request.values, request.execution, request.crop_and_scale,
                             request.frozen_cache, features)


def _lint(spec: Any, errors_only: bool, folder: Path | None) -> list[Any]:
    from mlupdate.authoring.lint_device import device_problems  # torch: the rules run the network
    from mlupdate.authoring.lint_rules import Problem, network_problems

    nn = network_of(spec)
    if spec.isUpdatable:
        return network_problems(spec) + device_problems(spec)
    flagged = [layer.name for layer in nn.layers if layer.isUpdatable]
    if flagged or nn.updateParams.lossLayers:
        return [Problem("warning", "not-updatable", f"Layers {flagged} or a loss are set up for training, but the "
                                                    "model is not marked updatable, so Core ML ignores them. Set "
                                                    "isUpdatable on the model (make-updatable does).")]
    return [Problem("warning", "not-updatable", "The model is not updatable: Core ML will not train it. Make it "
                                                "updatable with mlupdate make-updatable MODEL OUT --layers ...")]


def _summary(spec: Any) -> dict[str, Any]:
    nn = network_of(spec)
    layers = [{"name": layer.name, "type": layer.WhichOneof("layer"), "inputs": list(layer.input),
               "outputs": list(layer.output), "updatable": layer.isUpdatable} for layer in nn.layers]
    return {"layers": layers, "update": _update_info(spec, nn.updateParams) if nn.HasField("updateParams") else None}


def _update_info(spec: Any, up: Any) -> dict[str, Any]:
    losses = []
    for loss in up.lossLayers:
        which = loss.WhichOneof("LossLayerType") or "none"
        body = getattr(loss, which) if which != "none" else None
        losses.append({"name": loss.name, "type": which.replace("LossLayer", ""),
                       "input": body.input if body else "", "target": body.target if body else ""})
    params = network_parameters(spec)
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


for _name in NN_TYPES:
    register(Kind(_name, "network", program=_program, update=_update, stage_update=_stage_update, lint=_lint,
                  summary=_summary, parameters=network_parameters,
                  check=_check_classifier if _name == "neuralNetworkClassifier" else None))
