"""``mlupdate.convert_keras``: a Keras 2 ``model.h5`` to a Core ML neural network, without TensorFlow.

The file is read with h5py: the ``model_config`` attribute holds the architecture as JSON and
``model_weights/<layer>`` holds each layer's weights, listed in order by the group's ``weight_names``
attribute. Keras 2 (``"<layer>/kernel:0"``) and Keras 3 (``"<model>/<layer>/kernel"``) name the
datasets differently; both are found through ``weight_names``. The network is then built with
coremltools' ``NeuralNetworkBuilder`` the way the classic coremltools Keras converter built it: a
legacy rank-5 network (spec version 1), layer names kept, activations of Conv2D/Dense split into a
layer named ``<layer>__activation__``, blobs named ``<layer>_output``, Dropout removed, Flatten in
CHANNEL_LAST mode, and the output named ``output1`` unless told otherwise.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mlupdate.authoring.keras_layers import CONVERTERS, FUSED_ACTIVATION, SKIPPED, KerasOp, activation_name, output_rank
from mlupdate.errors import ConversionError
from mlupdate.extras import require
from mlupdate.runtime.execution import TORCH_CPU
from mlupdate.runtime.model import Model
from mlupdate.runtime.network import NetworkProgram
from mlupdate.spec.io import import_coremltools


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def read_h5(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, list[np.ndarray]], str]:
    """The model config, each layer's weights (Keras order) and the Keras version of a ``.h5`` file.

    Raises:
        ConversionError: If the file is missing, not HDF5, or holds weights only.
    """
    h5py = require("h5py", "keras", "Reading Keras .h5 files")
    p = Path(path)
    if not p.is_file():
        raise ConversionError(f"No Keras file at {p}: check the path.")
    try:
        f = h5py.File(p, "r")
    except OSError:
        raise ConversionError(f"{p} is not an HDF5 file. Save the Keras model with model.save('model.h5'); the "
                              "newer .keras zip format is not a Keras 2 .h5 file.") from None
    with f:
        if "model_config" not in f.attrs:
            raise ConversionError(f"{p} has no model_config: it holds weights only (model.save_weights). Save the "
                                  "whole model with model.save('model.h5').")
        config = json.loads(_text(f.attrs["model_config"]))
        version = _text(f.attrs.get("keras_version", "2"))
        group = f["model_weights"] if "model_weights" in f else f
        weights: dict[str, list[np.ndarray]] = {}
        for name in (_text(n) for n in group.attrs.get("layer_names", [])):
            g = group[name]
            weights[name] = [np.asarray(g[_text(w)][()], dtype=np.float32) for w in g.attrs.get("weight_names", [])]
    return config, weights, version


def _inbound(layer: dict[str, Any]) -> list[str]:
    names: list[str] = []
    for node in layer.get("inbound_nodes", []):
        if isinstance(node, dict):  # Keras 3: {"args": [keras tensor, ...], "kwargs": {...}}
            stack: list[Any] = [node.get("args", [])]
            while stack:
                item = stack.pop()
                if isinstance(item, list):
                    stack.extend(item)
                elif isinstance(item, dict) and "keras_history" in item.get("config", {}):
                    names.append(item["config"]["keras_history"][0])
        else:  # Keras 2: [[name, node_index, tensor_index, kwargs], ...]
            names.extend(entry[0] for entry in node)
    return names


def _layers_in_order(config: dict[str, Any]) -> tuple[list[dict[str, Any]], list[int] | None]:
    """The model's layers as a chain from input to output, and the input's batch shape if declared."""
    kind = config.get("class_name")
    body = config.get("config", {})
    layers = body if isinstance(body, list) else body.get("layers", [])
    if kind not in ("Sequential", "Functional", "Model"):
        raise ConversionError(f"The file holds a Keras '{kind}'; mlupdate converts Sequential models and "
                              "Functional models that are a single chain of layers.")
    for layer in layers:
        if layer.get("class_name") in ("Sequential", "Functional", "Model"):
            raise ConversionError(f"Layer '{layer['config'].get('name')}' is a nested model; flatten it into one "
                                  "Sequential model before saving.")
    if kind != "Sequential":
        by_name = {layer.get("name") or layer["config"]["name"]: layer for layer in layers}
        consumers: dict[str, list[str]] = {n: [] for n in by_name}
        for name, layer in by_name.items():
            ins = _inbound(layer)
            if len(ins) > 1:
                raise ConversionError(f"Layer '{name}' has {len(ins)} inputs; mlupdate converts chains of layers "
                                      "(Sequential-like Functional models) only.")
            for i in ins:
                consumers[i].append(name)
        starts = [n for n, layer in by_name.items() if not _inbound(layer)]
        if len(starts) != 1:
            raise ConversionError(f"The model has {len(starts)} inputs; mlupdate converts single-input models.")
        order, cur = [], starts[0]
        while True:
            order.append(by_name[cur])
            nxt = consumers[cur]
            if len(nxt) > 1:
                raise ConversionError(f"Layer '{cur}' feeds {len(nxt)} layers; mlupdate converts chains only.")
            if not nxt:
                break
            cur = nxt[0]
        layers = order
    shape = None
    for layer in layers:
        c = layer.get("config", {})
        shape = c.get("batch_shape") or c.get("batch_input_shape")
        if shape:
            break
    return [layer for layer in layers if layer.get("class_name") != "InputLayer"], shape


def build_ops(config: dict[str, Any], weights: dict[str, list[np.ndarray]], keras3: bool) -> tuple[list[KerasOp],
                                                                                                   list[int]]:
    """The Core ML layers to emit, in order, and the input shape ``[H, W, C]`` or ``[D]``."""
    layers, shape = _layers_in_order(config)
    if not shape or any(d is None for d in shape[1:]):
        raise ConversionError(f"The model's input shape is {shape}; Core ML needs fixed sizes. Build the Keras model "
                              "with keras.Input(shape=(H, W, C)) before saving.")
    in_shape = [int(d) for d in shape[1:]]
    if len(in_shape) not in (1, 3):
        raise ConversionError(f"Input shape {in_shape} is not supported; use (H, W, C) images or (D,) vectors.")
    rank, ops = len(in_shape), []
    for layer in layers:
        kind, c = layer["class_name"], layer["config"]
        name = c["name"]
        if kind in SKIPPED:
            continue
        if kind not in CONVERTERS:
            raise ConversionError(f"Keras layer '{name}' of type {kind} is not supported. Supported: "
                                  f"{', '.join(sorted(set(CONVERTERS) | set(SKIPPED)))}.")
        op = KerasOp(name, kind, c, weights.get(name, []), rank, keras3)
        ops.append(op)
        rank = output_rank(op)
        if kind in FUSED_ACTIVATION and activation_name(c.get("activation")) != "linear":
            ops.append(KerasOp(f"{name}__activation__", "Activation", {"activation": c["activation"]}, [], rank,
                               keras3))
    if not ops:
        raise ConversionError("The Keras model has no layers to convert.")
    return ops, in_shape


def convert_keras(path: str | os.PathLike[str], *, input_name: str = "image",
                  image_input: dict[str, Any] | bool | None = None,
                  class_labels: Sequence[str] | Sequence[int] | str | os.PathLike[str] | None = None,
                  predicted_feature_name: str = "classLabel", output_name: str | None = None) -> Model:
    """Convert a Keras 2 ``.h5`` model (no TensorFlow needed) as the classic coremltools converter did.

    Args:
        path: The ``model.h5`` written by ``model.save``.
        input_name: Name of the input.
        image_input: None for a multiarray input ``[C, H, W]``; a dict with ``scale``, ``bias`` (3 values,
            or one for grayscale) and ``is_bgr`` for an image input; ``True`` for an unscaled RGB image.
        class_labels: Labels (or a text file, one label a line): makes a classifier.
        predicted_feature_name: Name of a classifier's top-label output.
        output_name: Name of the output (a classifier's probabilities); default ``output1``.

    Returns:
        The converted model (legacy rank-5 network, spec version 1).

    Raises:
        ConversionError: An unreadable file, an unsupported layer, or invalid options.
    """
    import_coremltools()
    from coremltools.models import datatypes
    from coremltools.models.neural_network import NeuralNetworkBuilder

    config, weights, version = read_h5(path)
    ops, in_shape = build_ops(config, weights, keras3=not version.startswith(("1", "2")))
    output_name = output_name or "output1"
    core_in = (in_shape[2], in_shape[0], in_shape[1]) if len(in_shape) == 3 else (in_shape[0],)
    labels = _labels(class_labels)
    builder = NeuralNetworkBuilder([(input_name, datatypes.Array(*core_in))],
                                   [(output_name, datatypes.Array(1))], mode="classifier" if labels else None)
    blob = input_name
    for i, op in enumerate(ops):
        out = output_name if i == len(ops) - 1 else f"{op.name}_output"
        try:
            CONVERTERS.get(op.class_name, CONVERTERS["Activation"])(builder, op, blob, out)
        except (IndexError, ValueError, TypeError) as exc:
            raise ConversionError(f"Keras layer '{op.name}' ({op.class_name}) could not be converted: {exc}. Check "
                                  "that the file's weights match its config.") from exc
        blob = out
    if labels:
        builder.set_class_labels(labels, predicted_feature_name=predicted_feature_name)
    if image_input:
        _image(builder, input_name, image_input, core_in)
    if not labels:
        _declare_output_shape(builder.spec, output_name)
    return Model(builder.spec)


def _declare_output_shape(spec: Any, name: str) -> None:
    """Declare the output shape (``[D]`` or ``[C, H, W]``, as the old converter did) by running the network once."""
    out = next(o for o in spec.description.output if o.name == name)
    del out.type.multiArrayType.shape[:]
    prog = NetworkProgram(spec, TORCH_CPU)
    c, h, w = prog.run(prog.sample_inputs())[name].shape[-3:]
    out.type.multiArrayType.shape.extend([c] if h == w == 1 else [c, h, w])


def _labels(class_labels: Any) -> list[Any] | None:
    if class_labels is None:
        return None
    if isinstance(class_labels, str | os.PathLike):
        p = Path(class_labels)
        if not p.is_file():
            raise ConversionError(f"Class labels file {p} does not exist; pass a list or a file with one label a line.")
        return [line.strip() for line in p.read_text().splitlines() if line.strip()]
    labels = list(class_labels)
    if not labels or not all(isinstance(v, str) for v in labels) and not all(isinstance(v, int) for v in labels):
        raise ConversionError("class_labels must be a non-empty list of all strings or all integers.")
    return labels


def _image(builder: Any, name: str, options: dict[str, Any] | bool, shape: tuple[int, ...]) -> None:
    if len(shape) != 3 or shape[0] not in (1, 3):
        raise ConversionError(f"An image input needs 1 or 3 channels, but the model's input is {list(shape)}.")
    opts = {} if options is True else dict(options)
    unknown = set(opts) - {"scale", "bias", "is_bgr"}
    if unknown:
        raise ConversionError(f"Unknown image_input options {sorted(unknown)}; use scale, bias and is_bgr.")
    bias = opts.get("bias", 0.0)
    kwargs: dict[str, Any] = {"image_scale": float(opts.get("scale", 1.0)), "is_bgr": bool(opts.get("is_bgr", False))}
    if shape[0] == 1:
        kwargs["gray_bias"] = float(np.asarray(bias).reshape(-1)[0])
    else:
        b = np.broadcast_to(np.asarray(bias, dtype=float).reshape(-1), (3,))
        kwargs.update(red_bias=float(b[0]), green_bias=float(b[1]), blue_bias=float(b[2]))
    builder.set_pre_processing_parameters(image_input_names=[name], **kwargs)
