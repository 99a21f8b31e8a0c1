"""Load-time checks every model type shares: declared sizes, and weights that are not finite.

What each type checks besides is declared by its entry in :mod:`mlupdate.kinds`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mlupdate.errors import SpecError
from mlupdate.spec.limits import MAX_ARRAY_ELEMENTS_ENV, MAX_IMAGE_PIXELS_ENV, max_array_elements, max_image_pixels
from mlupdate.spec.model_types import NN_TYPES


def declared_size_problems(spec: Any, where: str = "The model") -> list[str]:
    """What is wrong with the sizes a model's inputs and outputs declare (nothing allocated).

    Negative or zero dimensions, and images or arrays over the limits above, each with the fix.
    """
    max_pixels = max_image_pixels()
    max_elements = max_array_elements()
    out: list[str] = []
    for fd in (*spec.description.input, *spec.description.output):
        kind = fd.type.WhichOneof("Type")
        if kind == "imageType":
            w, h = int(fd.type.imageType.width), int(fd.type.imageType.height)
            if w <= 0 or h <= 0:
                out.append(f"{where}: image '{fd.name}' declares {w}x{h} pixels; width and height must be positive.")
            elif w * h > max_pixels:
                out.append(f"{where}: image '{fd.name}' declares {w}x{h} pixels, more than the limit of {max_pixels} "
                           f"(set {MAX_IMAGE_PIXELS_ENV} to allow more).")
        elif kind == "multiArrayType":
            shape = [int(d) for d in fd.type.multiArrayType.shape]
            if any(d <= 0 for d in shape):
                out.append(f"{where}: array '{fd.name}' declares shape {shape}; every dimension must be positive.")
            elif math.prod(shape) > max_elements:
                out.append(f"{where}: array '{fd.name}' declares shape {shape} ({math.prod(shape)} values), more than "
                           f"the limit of {max_elements} (set {MAX_ARRAY_ELEMENTS_ENV} to allow more).")
    return out


def check_declared_sizes(spec: Any, where: str = "The model") -> None:
    """Raise ``SpecError`` listing :func:`declared_size_problems`, if any."""
    problems = declared_size_problems(spec, where)
    if problems:
        raise SpecError(" ".join(problems) + " Fix the model's interface.")


def nonfinite_weights(spec: Any) -> list[str]:
    """Names of the layers of a neural network whose float weights hold NaN or infinity."""
    kind = spec.WhichOneof("Type")
    if kind not in NN_TYPES:
        return []
    bad = []
    for layer in getattr(spec, kind).layers:
        if any(not np.isfinite(np.asarray(w.floatValue, np.float32)).all() for w in _weight_params(layer)):
            bad.append(layer.name)
    return bad


def _weight_params(msg: Any) -> list[Any]:
    found = []
    for field, value in msg.ListFields():
        if field.message_type is None:
            continue
        repeated = field.is_repeated if hasattr(field, "is_repeated") else field.label == field.LABEL_REPEATED
        values = value if repeated else [value]
        for v in values:
            found += [v] if field.message_type.name == "WeightParams" else _weight_params(v)
    return found


def loss_target_problems(spec: Any) -> list[str]:
    """Where an updatable network's loss target disagrees with what its loss reads (declared types and shapes).

    An MSE target must be a multiArray holding as many values as the loss input, and a loss input that
    is a model output must be declared a multiArray; a cross-entropy target that is a class index must
    hold one value. Each message names both features, their shapes and the fix.
    """
    kind = spec.WhichOneof("Type")
    if kind not in NN_TYPES:
        return []
    d = spec.description
    training = {t.name: t for t in d.trainingInput}
    outputs = {o.name: o for o in d.output}
    out: list[str] = []
    for loss in getattr(spec, kind).updateParams.lossLayers:
        which = loss.WhichOneof("LossLayerType")
        if which == "meanSquaredErrorLossLayer":
            body = loss.meanSquaredErrorLossLayer
            target, source = training.get(body.target), outputs.get(body.input)
            if target is None:
                continue
            if target.type.WhichOneof("Type") != "multiArrayType":
                out.append(f"Training input '{target.name}', the target of MSE loss '{loss.name}', is declared a "
                           f"{target.type.WhichOneof('Type') or 'feature without a type'}; an MSE target must be a "
                           "multiArray. Declare it as a multiArray shaped like the loss input.")
                continue
            if source is None:  # an inner blob: its shape is known only when the network runs
                continue
            if source.type.WhichOneof("Type") != "multiArrayType":
                out.append(f"MSE loss '{loss.name}' reads '{source.name}', which the model declares a "
                           f"{source.type.WhichOneof('Type') or 'feature without a type'} output; an MSE loss "
                           "compares a multiArray output with its target. Declare the output as a multiArray "
                           f"shaped like '{target.name}'.")
                continue
            want, got = _declared_shape(source), _declared_shape(target)
            if want and got and math.prod(want) != math.prod(got):
                out.append(f"Training input '{target.name}' declares shape {got} but MSE loss '{loss.name}' compares "
                           f"it with '{source.name}', declared {want}; they must hold the same number of values. "
                           f"Declare '{target.name}' with shape {want}.")
        elif which == "categoricalCrossEntropyLossLayer" and (kind != "neuralNetworkClassifier"
                                                               or d.predictedFeatureName not in training):
            target = training.get(loss.categoricalCrossEntropyLossLayer.target)
            if target is not None and target.type.WhichOneof("Type") == "multiArrayType":
                got = _declared_shape(target)
                if got and math.prod(got) != 1:
                    out.append(f"Training input '{target.name}', the class-index target of cross-entropy loss "
                               f"'{loss.name}', declares shape {got}; a class index is one value. Declare it with "
                               "shape [1].")
    return out


def _declared_shape(fd: Any) -> list[int]:
    return [int(v) for v in fd.type.multiArrayType.shape]
