"""``mlupdate.make_updatable``: the coremltools tutorial's five builder calls in one, done right.

The spec written is the one coremltools' ``NeuralNetworkBuilder`` produces for
``make_updatable`` + ``set_categorical_cross_entropy_loss`` / ``set_mean_squared_error_loss`` +
``set_sgd_optimizer`` / ``set_adam_optimizer`` + ``set_epochs`` (+ ``set_shuffle``), after the
exactly-equivalent repairs of :mod:`mlupdate.authoring.repairs`, and it is linted with Core ML's
validator rules before it is returned.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from typing import Any

from mlupdate.authoring import netgraph as ng
from mlupdate.authoring import repairs
from mlupdate.authoring.lint import lint
from mlupdate.authoring.optimizers import SGD, Adam
from mlupdate.authoring.repairs import RepairWarning, convertible_matmul
from mlupdate.errors import AuthoringError, NotUpdatableError, ParameterError
from mlupdate.runtime.model import Model
from mlupdate.spec.io import Model_pb2, resolve_spec
from mlupdate.spec.model_types import NN_TYPES, UPDATABLE_LAYERS, UPDATABLE_SPEC_VERSION, network_of

LOSSES = {"categorical_cross_entropy": "cce", "cce": "cce", "mean_squared_error": "mse", "mse": "mse"}
INT32 = Model_pb2.ArrayFeatureType.INT32
DOUBLE = Model_pb2.ArrayFeatureType.DOUBLE
DEFAULT_OPTIMIZER = SGD()  # coremltools' SgdParams() defaults: lr 0.01 in [0, 1], batch 10 in {10}, momentum 0


def make_updatable(model_or_path: str | os.PathLike[str] | Any, layers: Iterable[str] | str,
                   loss: str = "categorical_cross_entropy", optimizer: SGD | Adam = DEFAULT_OPTIMIZER, epochs: int = 1,
                   shuffle: bool = True, seed: int | None = None, *, epochs_allowed: Iterable[int] | None = None,
                   loss_input: str | None = None, loss_name: str = "lossLayer", repair: bool = True) -> Model:
    """Make a neural network updatable on device, as Core ML 3 expects.

    Args:
        model_or_path: A ``.mlmodel`` path, an :class:`mlupdate.Model`, a coremltools ``MLModel`` or
            a spec. It is copied; the user's file or object is never modified.
        layers: Names of the ``innerProduct`` / ``convolution`` layers to train.
        loss: ``"categorical_cross_entropy"`` (``"cce"``) or ``"mean_squared_error"`` (``"mse"``).
        optimizer: :class:`mlupdate.SGD` or :class:`mlupdate.Adam` (with allowed ranges and sets).
        epochs: Default number of epochs.
        shuffle: Whether the training data are shuffled between epochs.
        seed: Seed of the shuffle, if any.
        epochs_allowed: Allowed epoch values (default ``[epochs]``, as coremltools).
        loss_input: The blob the loss reads (default: the classifier's probabilities, or the
            model's first output computed by a layer).
        loss_name: Name of the loss layer.
        repair: Apply the exactly-equivalent repairs (final softmaxND, batchedMatmul, reshapes).

    Returns:
        The updatable model; ``model.notes`` lists the repairs applied (also emitted as
        :class:`~mlupdate.authoring.repairs.RepairWarning`).

    Raises:
        NotUpdatableError: An ML Program or another non-network model, an unknown layer, a layer that
            cannot be updatable, float16 or quantized weights, or a result Core ML would reject.
        AuthoringError: Bad arguments (loss, layer list, names).
        ParameterError: Epochs or seed out of what Core ML allows.
    """
    spec = resolve_spec(model_or_path)
    kind = spec.WhichOneof("Type")
    _check_model_type(kind, spec)
    names = _layer_names(layers)
    loss_kind = LOSSES.get(str(loss).lower())
    if loss_kind is None:
        raise AuthoringError(f"Unknown loss {loss!r}: use 'categorical_cross_entropy' (or 'cce') or "
                             "'mean_squared_error' (or 'mse'), the two losses Core ML supports.")
    if not isinstance(optimizer, (SGD, Adam)):
        raise AuthoringError(f"optimizer must be mlupdate.SGD(...) or mlupdate.Adam(...), "
                             f"got {type(optimizer).__name__}.")
    allowed = _epochs(epochs, epochs_allowed)
    if not isinstance(shuffle, bool):
        raise ParameterError(f"shuffle must be True or False, got {shuffle!r}.")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ParameterError(f"seed must be an integer or None, got {seed!r}.")

    nn = network_of(spec)
    _check_layers_exist(spec, nn, names)
    blob = loss_input or default_loss_input(spec)
    _check_loss_names(spec, nn, blob, loss_name, loss_kind)
    notes: list[str] = []
    if repair:
        spec, notes = repairs.repair(spec, names, blob, loss_kind)
        nn = network_of(spec)
    _check_layer_kinds(spec, nn, names)
    _check_weight_formats(nn, names)

    notes += _mark(spec, nn, names)
    up = nn.updateParams
    up.Clear()
    up.shuffle.SetInParent()
    up.shuffle.defaultValue = shuffle
    if seed is not None:
        up.seed.defaultValue = seed
    _add_loss(spec, nn, blob, loss_name, loss_kind)
    optimizer.write(up.optimizer)
    up.epochs.defaultValue = epochs
    up.epochs.set.values.extend(allowed)
    spec.specificationVersion = max(spec.specificationVersion, UPDATABLE_SPEC_VERSION)

    errors = [p for p in lint(spec) if p.severity == "error"]
    if errors:
        raise NotUpdatableError("Core ML would reject the updatable model:\n" +
                                "\n".join(f"  - {p.message}" for p in errors))
    model = Model(spec)
    model.notes = list(notes)
    for note in notes:
        warnings.warn(note, RepairWarning, stacklevel=2)
    return model


# -- arguments ---------------------------------------------------------------------------------------
def _check_model_type(kind: str | None, spec: Any) -> None:
    if kind in NN_TYPES:
        return
    if kind == "mlProgram":
        raise NotUpdatableError(
            f"The model is an ML Program (specification version {spec.specificationVersion}); Core ML cannot "
            "update ML Programs on device. Convert the source model with coremltools.convert(..., "
            "convert_to='neuralnetwork'), or use mlupdate.convert(torch_module, ...)."
        )
    if kind == "kNearestNeighborsClassifier":
        raise NotUpdatableError("A k-NN classifier is updated by adding samples: build it with "
                                "mlupdate.knn_classifier(...), which is updatable already.")
    if kind and kind.startswith("pipeline"):
        raise NotUpdatableError("make_updatable takes one neural network. Make the pipeline's last model "
                                "updatable, then wrap it with mlupdate.pipeline_classifier(...).")
    raise NotUpdatableError(f"A model of type '{kind}' cannot be updatable: only neural networks (and k-NN "
                            "classifiers and pipelines of them) support on-device update.")


def _layer_names(layers: Iterable[str] | str) -> list[str]:
    names = [layers] if isinstance(layers, str) else list(layers)
    if not names:
        raise AuthoringError("No layers given: name at least one innerProduct or convolution layer to train.")
    for n in names:
        if not isinstance(n, str):
            raise AuthoringError(f"Layer names must be strings, got {n!r}.")
    if len(set(names)) != len(names):
        raise AuthoringError(f"Layer names {names} repeat a layer; name each layer once.")
    return names


def _epochs(epochs: Any, allowed: Iterable[Any] | None) -> list[int]:
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs <= 0:
        raise ParameterError(f"epochs must be a positive integer (Core ML requires it), got {epochs!r}.")
    values = [epochs] if allowed is None else list(allowed)
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise ParameterError(f"epochs_allowed must hold positive integers, got {v!r}.")
    if len(set(values)) != len(values):
        raise ParameterError(f"epochs_allowed {values} has duplicates; allowed values must be unique.")
    if epochs not in values:
        raise ParameterError(f"epochs={epochs} is not in epochs_allowed {values}; Core ML requires the default "
                             "to be one of the allowed values. Add it.")
    return values


def _candidates(spec: Any) -> str:
    nn = network_of(spec)
    shapes: dict[str, tuple[int, ...]] = {}
    if any(ng.kind_of(layer) == "batchedMatmul" for layer in nn.layers):
        try:
            shapes = ng.blob_shapes(spec)
        except Exception:  # noqa: BLE001 - only used to refine the list of candidates
            shapes = {}
    found = [f"{layer.name} ({ng.kind_of(layer)})" for layer in nn.layers
             if ng.kind_of(layer) in UPDATABLE_LAYERS
             or (ng.kind_of(layer) == "batchedMatmul" and convertible_matmul(layer, shapes) is None)]
    return ", ".join(found) if found else "none (the network has no innerProduct or convolution layer)"


def _check_layers_exist(spec: Any, nn: Any, names: list[str]) -> None:
    known = {layer.name for layer in nn.layers}
    missing = [n for n in names if n not in known]
    if missing:
        raise NotUpdatableError(f"Layer(s) {', '.join(repr(n) for n in missing)} do not exist in the model. "
                                f"Layers that can be trained: {_candidates(spec)}.")


def default_loss_input(spec: Any) -> str:
    """The blob a loss reads by default: a classifier's probabilities, else the first computed output.

    For a classifier: the blob named ``predictedProbabilitiesName`` if a layer produces it, else
    ``labelProbabilityLayerName``, else the last layer's output.
    """
    nn = network_of(spec)
    produced = [o for layer in nn.layers for o in layer.output]
    if not produced:
        raise NotUpdatableError("The network has no layers; there is nothing to train.")
    if spec.WhichOneof("Type") == "neuralNetworkClassifier":
        probs = spec.description.predictedProbabilitiesName
        if probs and probs in produced:
            return probs
        if nn.labelProbabilityLayerName:
            return nn.labelProbabilityLayerName
        return nn.layers[-1].output[0]
    for o in spec.description.output:
        if o.name in produced:
            return o.name
    return nn.layers[-1].output[0]


def _check_loss_names(spec: Any, nn: Any, blob: str, loss_name: str, loss_kind: str) -> None:
    if not isinstance(loss_name, str) or not loss_name:
        raise AuthoringError("loss_name must be a non-empty string.")
    if loss_name in {layer.name for layer in nn.layers}:
        raise AuthoringError(f"The loss name '{loss_name}' is already used by a layer; pass another loss_name.")
    produced = {o for layer in nn.layers for o in layer.output}
    if blob not in produced:
        where = "is a model input" if blob in {i.name for i in spec.description.input} else "is not a blob"
        raise AuthoringError(f"The loss input '{blob}' {where}: the loss must read a blob that a layer computes. "
                             "Pass loss_input= one of the layer outputs.")
    target = f"{blob}_true"
    if target in {o.name for o in spec.description.output}:
        raise AuthoringError(f"The loss target '{target}' is a model output; rename that output first.")
    if target in produced:
        raise AuthoringError(f"The loss target '{target}' is already a blob inside the network; Core ML needs "
                             "the target to come from the training data. Rename that layer output.")


def _check_layer_kinds(spec: Any, nn: Any, names: list[str]) -> None:
    by_name = {layer.name: layer for layer in nn.layers}
    for n in names:
        layer = by_name[n]
        kind = ng.kind_of(layer)
        if kind in UPDATABLE_LAYERS:
            continue
        why = ""
        if kind == "batchedMatmul":
            reason = convertible_matmul(layer, ng.blob_shapes(spec))
            why = (f" It could not be rewritten as innerProduct because {reason}." if reason else
                   " Pass repair=True to rewrite it as innerProduct.")
        raise NotUpdatableError(f"Layer '{n}' is a {kind} layer; Core ML can only update innerProduct and "
                                f"convolution layers.{why} Layers that can be trained: {_candidates(spec)}.")


def _check_weight_formats(nn: Any, names: list[str]) -> None:
    # Every layer is checked (coremltools checks only the first one: apple/coremltools PR #2858).
    by_name = {layer.name: layer for layer in nn.layers}
    bad = [(n, ng.weight_format_problem(by_name[n])) for n in names]
    bad = [(n, why) for n, why in bad if why]
    if bad:
        listing = "; ".join(f"'{n}': {why}" for n, why in bad)
        raise NotUpdatableError(
            f"Core ML cannot update layers whose weights are not float32 ({listing}). Re-export the model "
            "without weight quantization (coremltools' quantize_weights), with float32 weights."
        )


def _mark(spec: Any, nn: Any, names: list[str]) -> list[str]:
    notes = []
    spec.isUpdatable = True
    wanted = set(names)
    for layer in nn.layers:
        if layer.isUpdatable and layer.name not in wanted:
            notes.append(f"Layer '{layer.name}' was updatable before and is not any more (only {names} are).")
            layer.isUpdatable = False
            for _, wp in ng.weight_params(layer):
                wp.isUpdatable = False
        if layer.name in wanted:
            layer.isUpdatable = True
            for _, wp in ng.weight_params(layer):
                wp.isUpdatable = True
    return notes


def _add_loss(spec: Any, nn: Any, blob: str, loss_name: str, loss_kind: str) -> None:
    target = f"{blob}_true"
    loss = nn.updateParams.lossLayers.add()
    loss.name = loss_name
    body = loss.categoricalCrossEntropyLossLayer if loss_kind == "cce" else loss.meanSquaredErrorLossLayer
    body.input = blob
    body.target = target
    d = spec.description
    del d.trainingInput[:]
    d.trainingInput.extend(d.input)
    ti = d.trainingInput.add()
    classifier = spec.WhichOneof("Type") == "neuralNetworkClassifier"
    probs = {d.predictedProbabilitiesName, nn.labelProbabilityLayerName if classifier else ""} - {""}
    if loss_kind == "cce" and classifier and blob in probs:
        ti.name = d.predictedFeatureName
        label_out = next((o for o in d.output if o.name == d.predictedFeatureName), None)
        is_int = (label_out.type.WhichOneof("Type") == "int64Type" if label_out is not None
                  else nn.WhichOneof("ClassLabels") == "int64ClassLabels")
        (ti.type.int64Type if is_int else ti.type.stringType).SetInParent()
    elif loss_kind == "cce":
        ti.name = target
        ti.type.multiArrayType.shape.append(1)
        ti.type.multiArrayType.dataType = INT32
    else:
        ti.name = target
        ti.type.multiArrayType.shape.extend(_loss_input_shape(spec, blob))
        ti.type.multiArrayType.dataType = DOUBLE


def _loss_input_shape(spec: Any, blob: str) -> list[int]:
    for o in spec.description.output:
        if o.name == blob and o.type.WhichOneof("Type") == "multiArrayType" and len(o.type.multiArrayType.shape):
            return [int(s) for s in o.type.multiArrayType.shape]
    shape = list(ng.blob_shapes(spec)[blob])
    if ng.is_nd(network_of(spec)):
        return shape
    shape = shape[1:]  # legacy layout [B, C, H, W]: drop the batch, describe [C] when H == W == 1
    return shape[:1] if len(shape) == 3 and shape[1:] == [1, 1] else shape
