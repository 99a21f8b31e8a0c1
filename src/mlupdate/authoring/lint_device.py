"""Core ML's update failures that its validator misses: the file compiles, the update fails or does nothing.

Each rule is a warning with a stable code, taken from a failure Core ML users reported (the
coremltools issue is named), the symptom on the device, the fix, and what mlupdate's own update
does with the same model (mlupdate computes every one of them; the warning is about the device).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from mlupdate.authoring import netgraph as ng
from mlupdate.authoring.lint_rules import Problem
from mlupdate.spec.model_types import NN_TYPES, network_of


@dataclass(frozen=True)
class DeviceRule:
    """One update failure Core ML's validator does not catch.

    Attributes:
        code: The stable code (the ``rule`` of its :class:`Problem`).
        symptom: What happens on the device.
        issue: Where it was reported (a coremltools issue), or where it was seen.
        fix: How to change the model so that the device can update it.
        mlupdate: Whether mlupdate's own update runs the model, and what it computes.
    """

    code: str
    symptom: str
    issue: str
    fix: str
    mlupdate: str


DEVICE_RULES: dict[str, DeviceRule] = {r.code: r for r in (
    DeviceRule(
        "device-linear-last-inner-product",
        "building the network for training fails: 'Espresso exception: \"Unsupported configuration\": inner_product "
        "needs at least 2 inputs for gradients, got 1'",
        "apple/coremltools#1983",
        "end the network with a ReLU, sigmoid or tanh activation layer after it (the activations Core ML "
        "back-propagates through; the reporter's model compiled with sigmoid), scaling the targets into its range",
        "mlupdate's update runs it: the MSE gradient of the linear layer, as PyTorch computes it"),
    DeviceRule(
        "device-inference-batchnorm",
        "building the network for training fails: '\"Unsupported configuration\": in order to take gradient of a "
        "inference mode batchnorm layer, 2 inputs (x, batchnorm_coef) are needed'",
        "apple/coremltools#492",
        "fold the batchnorm into the convolution or innerProduct before it (scale its weights and bias) before "
        "making the model updatable, or train only layers after the batchnorm",
        "mlupdate's update runs it: it back-propagates through the batchnorm as the fixed affine map of its stored "
        "mean, variance, gamma and beta (none of which change)"),
    DeviceRule(
        "device-lstm",
        "prediction works but the update crashes the app: 'Espresso::invalid_argument_error: "
        "generic_expand_dims_kernel: Output rank cannot be more than 5'",
        "apple/coremltools#2074",
        "compute the LSTM's features in a model of their own and train a small network on them: a pipeline of the "
        "LSTM network followed by an updatable network without recurrent layers",
        "mlupdate's update runs it: the LSTM runs forward (frozen) and the updatable layers train"),
    DeviceRule(
        "device-mse-image",
        "the update fails: 'Failed to train on the network Espresso exception: \"Invalid argument\": Error retrieving "
        "data point upon initializing espresso_training_data_source ... Failed to copy over image input'",
        "apple/coremltools#557",
        "declare the image as a multiArray and do the pixel conversion (and scaling) in the app, or train with a "
        "categorical cross-entropy loss",
        "mlupdate's update runs it: the image is decoded and preprocessed as for a prediction"),
    DeviceRule(
        "device-single-unit-softmax",
        "the update completes but changes nothing: a softmax over one unit is always 1, so the cross-entropy "
        "loss is always 0 and every gradient is 0",
        "no coremltools issue; seen in a published model",
        "give the final layer one output per class and the softmax that many units (a binary classifier needs 2)",
        "mlupdate's update runs it and computes exactly nothing: loss 0 in every epoch and the weights come back "
        "unchanged"),
)}


def device_problems(spec: Any) -> list[Problem]:
    """The device-only update failures of an updatable neural network, as warnings (none for other models)."""
    if spec.WhichOneof("Type") not in NN_TYPES or not spec.isUpdatable:
        return []
    nn = network_of(spec)
    return [_warning(code, where, layer) for code, where, layer in _findings(spec, nn)]


def update_warnings(spec: Any) -> list[Problem]:
    """:func:`device_problems` of the model an update trains (the last model of an updatable pipeline)."""
    kind = spec.WhichOneof("Type") or ""
    if kind.startswith("pipeline"):
        models = list((spec.pipeline if kind == "pipeline" else getattr(spec, kind).pipeline).models)
        return update_warnings(models[-1]) if models else []
    return device_problems(spec)


def _warning(code: str, where: str, layer: str | None) -> Problem:
    r = DEVICE_RULES[code]
    return Problem("warning", code, f"{where}. On a device {r.symptom} ({r.issue}). Fix: {r.fix}. {r.mlupdate}.",
                   layer)


def _losses(nn: Any) -> Iterator[tuple[str, str, Any]]:
    for loss in nn.updateParams.lossLayers:
        which = loss.WhichOneof("LossLayerType")
        if which == "meanSquaredErrorLossLayer":
            yield loss.name, "mse", loss.meanSquaredErrorLossLayer
        elif which == "categoricalCrossEntropyLossLayer":
            yield loss.name, "cce", loss.categoricalCrossEntropyLossLayer


def _findings(spec: Any, nn: Any) -> Iterator[tuple[str, str, str | None]]:
    layers = list(nn.layers)
    prod = ng.producers(layers)
    trained = ng.descendants(layers, [i for i, x in enumerate(layers) if x.isUpdatable])
    for name, kind, body in _losses(nn):
        src = prod.get(body.input)
        src_layer = layers[src] if src is not None else None
        if kind == "mse" and src_layer is not None and src_layer.isUpdatable and \
                ng.kind_of(src_layer) == "innerProduct":
            yield ("device-linear-last-inner-product", f"MSE loss '{name}' reads the output of updatable "
                   f"innerProduct '{src_layer.name}' with no activation after it", src_layer.name)
        for i in sorted(ng.ancestors(layers, body.input) & trained):
            bn = layers[i]
            if ng.kind_of(bn) == "batchnorm" and not bn.batchnorm.computeMeanVar:
                yield ("device-inference-batchnorm", f"Batchnorm '{bn.name}' (inference mode: stored mean and "
                       f"variance) lies between an updatable layer and loss '{name}'", bn.name)
        if kind == "mse":
            images = [f.name for f in (*spec.description.input, *spec.description.trainingInput)
                      if f.type.WhichOneof("Type") == "imageType"]
            if images:
                yield ("device-mse-image", f"MSE loss '{name}' trains a model with image feature(s) "
                       f"{sorted(set(images))}", None)
        if kind == "cce" and src_layer is not None and ng.kind_of(src_layer) == "softmax" and \
                _units(spec, layers, prod, src_layer) == 1:
            yield ("device-single-unit-softmax", f"Softmax '{src_layer.name}' before cross-entropy loss '{name}' "
                   "normalizes a single unit", src_layer.name)
    lstms = [x.name for x in layers if ng.kind_of(x) in ("uniDirectionalLSTM", "biDirectionalLSTM")]
    if lstms:
        yield ("device-lstm", f"The updatable network holds LSTM layer(s) {lstms}", lstms[0])


def _units(spec: Any, layers: list[Any], prod: dict[str, int], softmax: Any) -> int | None:
    """How many units the softmax normalizes, where the model says it without running (None: unknown)."""
    src = prod.get(softmax.input[0]) if softmax.input else None
    if src is not None:
        kind = ng.kind_of(layers[src])
        if kind in ("innerProduct", "convolution"):
            return int(getattr(layers[src], kind).outputChannels)
    for out in spec.description.output:
        if out.name == softmax.output[0] and out.type.WhichOneof("Type") == "multiArrayType":
            shape = list(out.type.multiArrayType.shape)
            if len(shape) == 1 or len(shape) >= 3:
                return int(shape[-3] if len(shape) >= 3 else shape[0])
    if spec.WhichOneof("Type") == "neuralNetworkClassifier":
        labels = getattr(spec.neuralNetworkClassifier, spec.neuralNetworkClassifier.WhichOneof("ClassLabels") or "",
                         None)
        return len(labels.vector) if labels is not None else None
    return None
