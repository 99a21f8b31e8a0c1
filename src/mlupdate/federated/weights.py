"""The updatable layers' weights as named float32 arrays: what travels between the server and the nodes.

Keys are ``<layer>.weights`` and ``<layer>.bias`` for every layer marked updatable, in spec order; frozen
layers never leave the model. Shapes: innerProduct ``[out, in]``; convolution ``[out, in/groups, kH, kW]``
(deconvolution ``[in, out/groups, kH, kW]``), as Core ML stores them; biases ``[out]``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from mlupdate.errors import NotUpdatableError, UpdateError
from mlupdate.layers.weights import set_weights, weight_array
from mlupdate.spec.io import copy_spec
from mlupdate.spec.model_types import NN_TYPES, UPDATABLE_LAYERS, network_of


def _layers(spec: Any) -> list[Any]:
    if spec.WhichOneof("Type") not in NN_TYPES:
        raise NotUpdatableError(f"Federated updates need a neural-network model; this one is a "
                                f"{spec.WhichOneof('Type')}. Use mlupdate update for k-NN models and pipelines.")
    layers = [layer for layer in network_of(spec).layers if layer.isUpdatable]
    if not layers:
        raise NotUpdatableError("No layer of the model is marked updatable, so there is nothing to federate. "
                                "Mark layers with mlupdate make-updatable.")
    for layer in layers:
        if layer.WhichOneof("layer") not in UPDATABLE_LAYERS:
            raise NotUpdatableError(f"Updatable layer '{layer.name}' is a {layer.WhichOneof('layer')}; Core ML "
                                    f"updates only {', '.join(UPDATABLE_LAYERS)} layers.")
    return layers


def _shape(layer: Any) -> tuple[int, ...]:
    p = getattr(layer, layer.WhichOneof("layer"))
    if layer.WhichOneof("layer") == "innerProduct":
        return (int(p.outputChannels), int(p.inputChannels))
    kh, kw = list(p.kernelSize) or [3, 3]
    lead = int(p.kernelChannels) if p.isDeconvolution else int(p.outputChannels)
    return (lead, -1, int(kh), int(kw))


def updatable_arrays(spec: Any) -> dict[str, np.ndarray]:
    """The updatable layers' weights and biases, keyed ``<layer>.weights`` / ``<layer>.bias``, in spec order.

    Raises:
        NotUpdatableError: The model is not a neural network or has no updatable convolution/innerProduct.
    """
    out: dict[str, np.ndarray] = {}
    for layer in _layers(spec):
        p = getattr(layer, layer.WhichOneof("layer"))
        what = f"Layer '{layer.name}'"
        out[f"{layer.name}.weights"] = weight_array(p.weights, None, f"{what} weights").reshape(_shape(layer))
        if p.hasBias:
            out[f"{layer.name}.bias"] = weight_array(p.bias, None, f"{what} bias")
    return out


def with_arrays(spec: Any, arrays: Mapping[str, np.ndarray]) -> Any:
    """A copy of ``spec`` holding ``arrays`` in its updatable layers (every other byte unchanged).

    Raises:
        UpdateError: A key is missing or unknown, or an array has the wrong number of values.
    """
    expected = updatable_arrays(spec)
    if set(arrays) != set(expected):
        missing, extra = sorted(set(expected) - set(arrays)), sorted(set(arrays) - set(expected))
        raise UpdateError(f"The weights received do not match the model's updatable layers (missing {missing}, "
                          f"unexpected {extra}). Server and nodes must start from the same .mlmodel.")
    out = copy_spec(spec)
    for layer in _layers(out):
        p = getattr(layer, layer.WhichOneof("layer"))
        for key, wp in ((f"{layer.name}.weights", p.weights), (f"{layer.name}.bias", p.bias)):
            if key not in arrays:
                continue
            value = np.asarray(arrays[key], dtype=np.float32)
            if value.size != expected[key].size or not np.isfinite(value).all():
                raise UpdateError(f"'{key}' holds {value.size} values (finite: {bool(np.isfinite(value).all())}); "
                                  f"the model needs {expected[key].size} finite values.")
            set_weights(wp, value)
    return out


def digest(spec: Any) -> str:
    """A short hash of the whole model (weights included), to name what a node trained."""
    return hashlib.sha256(spec.SerializeToString(deterministic=True)).hexdigest()[:16]
