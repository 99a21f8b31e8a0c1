"""PyTorch to Core ML through coremltools' converter: the converter call and the layer names it produces.

Shared by :func:`mlupdate.convert` (:mod:`mlupdate.authoring.convert_torch`) and the modern layout's split
(:mod:`mlupdate.authoring.convert_pipeline`).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from mlupdate.authoring.torch_patches import frontend_fixes
from mlupdate.errors import ConversionError
from mlupdate.layers.weights import weight_array
from mlupdate.spec.io import import_coremltools

_WEIGHT_LAYERS = ("innerProduct", "convolution", "batchedMatmul")


def coreml_model(module: torch.nn.Module, example: torch.Tensor, name: str, image_input: dict[str, Any] | bool | None,
                 class_labels: Sequence[Any] | None, output_name: str | None,
                 predicted_feature_name: str = "classLabel", convert_to: str = "neuralnetwork",
                 compute_precision: str = "float16") -> Any:
    """Run coremltools' converter on ``module`` (traced with ``example``); returns coremltools' ``MLModel``.

    ``convert_to="mlprogram"`` makes an ML Program with the given ``compute_precision`` (``float16``,
    coremltools' default, or ``float32``); its weights stay in the ``MLModel``'s ``weights_dir``.
    """
    ct = import_coremltools()

    shape = tuple(example.shape)
    if image_input:
        options = {} if image_input is True else dict(image_input)
        if len(shape) != 4 or shape[1] not in (1, 3):
            raise ConversionError(f"An image input needs an example of shape [1, 3 or 1, H, W], got {list(shape)}.")
        try:
            inp = ct.ImageType(name=name, shape=shape, **options)
        except (TypeError, ValueError) as exc:
            raise ConversionError(f"image_input {image_input!r} is not valid for coremltools.ImageType: {exc}. Use "
                                  "keys scale, bias and color_layout ('RGB', 'BGR' or 'G').") from None
    else:
        inp = ct.TensorType(name=name, shape=shape)
    kwargs: dict[str, Any] = {"inputs": [inp], "convert_to": convert_to}
    if convert_to == "mlprogram":
        if compute_precision not in ("float16", "float32"):
            raise ConversionError(f"compute_precision must be 'float16' or 'float32', got {compute_precision!r}.")
        kwargs["compute_precision"] = getattr(ct.precision, compute_precision.upper())
    if class_labels is not None:
        kwargs["classifier_config"] = ct.ClassifierConfig(list(class_labels),
                                                          predicted_feature_name=predicted_feature_name)
    if output_name:
        kwargs["outputs"] = [ct.TensorType(name=output_name)]
    was_training = module.training
    module.eval()
    log = logging.getLogger("coremltools")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(module, example)
            with frontend_fixes():
                ml = ct.convert(traced, **kwargs)
    except ConversionError:
        raise
    except Exception as exc:  # noqa: BLE001 - coremltools raises anything; report it with the fix
        raise ConversionError(
            f"coremltools could not convert {type(module).__name__}: {type(exc).__name__}: {exc}. Make shapes "
            "static (no data-dependent control flow; compute paddings from a fixed input size), or replace the "
            "failing operation; see docs/conversion.md for the known limits."
        ) from exc
    finally:
        log.setLevel(level)
        module.train(was_training)
    return ml


# -- name mapping -----------------------------------------------------------------------------------
def _nn(spec: Any) -> Any:
    return getattr(spec, spec.WhichOneof("Type"))


def _torch_weights(mod: torch.nn.Module) -> np.ndarray:
    return mod.weight.detach().cpu().float().numpy()


def _layer_weights(layer: Any) -> np.ndarray | None:
    kind = layer.WhichOneof("layer")
    p = getattr(layer, kind)
    if kind == "batchedMatmul":
        if not p.weightMatrixFirstDimension:
            return None
        w = weight_array(p.weights, None, layer.name)
        w = w.reshape(p.weightMatrixFirstDimension, p.weightMatrixSecondDimension)
        return np.ascontiguousarray(w.T)
    return weight_array(p.weights, None, layer.name)


def _scaled_rows(fused: np.ndarray, orig: np.ndarray) -> bool:
    """Whether ``fused`` is ``orig`` with each output row scaled (a batchnorm folded into a convolution)."""
    f, w = fused.reshape(orig.shape[0], -1).astype(np.float64), orig.reshape(orig.shape[0], -1).astype(np.float64)
    denom = (w * w).sum(1)
    if np.any(denom == 0):
        return False
    scale = (f * w).sum(1) / denom
    return bool(np.allclose(f, scale[:, None] * w, rtol=1e-4, atol=1e-6 * float(np.abs(f).max() or 1.0)))


def rename_layers(spec: Any, module: torch.nn.Module) -> tuple[dict[str, str], list[str]]:
    """Rename the Core ML layers holding each ``nn.Linear``/``nn.Conv2d``'s weights to its qualified name.

    A module matches the first unclaimed layer (in network order) whose weights equal its own (transposed
    for ``batchedMatmul``). A convolution whose batchnorm coremltools folded into it matches when its
    weights are the module's with each output channel scaled. Layer names change; blob names do not.

    Returns:
        ``{module name: layer name}`` for every module found, and notes for the user.
    """
    layers = list(_nn(spec).layers)
    weights: dict[int, np.ndarray] = {}
    for i, layer in enumerate(layers):
        if layer.WhichOneof("layer") in _WEIGHT_LAYERS:
            w = _layer_weights(layer)
            if w is not None:
                weights[i] = w
    claimed: dict[int, str] = {}
    folded: set[str] = set()
    for qual, mod in module.named_modules():
        if not qual or not isinstance(mod, torch.nn.Linear | torch.nn.Conv2d):
            continue
        ref = _torch_weights(mod)
        free = [i for i in weights if i not in claimed and weights[i].size == ref.size]
        hit = next((i for i in free if np.array_equal(weights[i], ref.reshape(-1))), None)
        if hit is None:
            hit = next((i for i in free if np.allclose(weights[i], ref.reshape(-1), rtol=1e-6, atol=1e-7)), None)
        if hit is None and isinstance(mod, torch.nn.Conv2d):
            hit = next((i for i in free if layers[i].WhichOneof("layer") == "convolution"
                        and _scaled_rows(weights[i], ref)), None)
            if hit is not None:
                folded.add(qual)
        if hit is not None:
            claimed[hit] = qual
    taken = {layer.name for layer in layers}
    notes = []
    for i, qual in claimed.items():
        layer = _nn(spec).layers[i]
        if layer.name == qual:
            continue
        for j, other in enumerate(_nn(spec).layers):
            if j != i and other.name == qual:  # free the name (layer names only; blobs are untouched)
                new = _unique(f"{qual}__renamed", taken)
                taken.add(new)
                other.name = new
        notes.append(f"Renamed layer '{layer.name}' ({layer.WhichOneof('layer')}) to PyTorch module '{qual}'."
                     + (" coremltools folded the batchnorm after it into its weights." if qual in folded else ""))
        taken.add(qual)
        layer.name = qual
    return {qual: qual for qual in claimed.values()}, notes


def _unique(name: str, taken: set[str]) -> str:
    n, k = name, 1
    while n in taken:
        k += 1
        n = f"{name}{k}"
    return n


def resolve_layers(requested: Sequence[str], mapping: dict[str, str], module: torch.nn.Module) -> list[str]:
    """Core ML layer names for the requested PyTorch module names.

    A name matches a qualified module name exactly, or else the one module whose qualified name ends in
    ``"." + name``.

    Raises:
        ConversionError: For an unknown, ambiguous or unmapped name; the message lists the candidates.
    """
    if isinstance(requested, str):
        requested = [requested]
    kinds = {q: type(m).__name__ for q, m in module.named_modules()
             if q and isinstance(m, torch.nn.Linear | torch.nn.Conv2d)}
    out = []
    for name in requested:
        qual = name if name in kinds else None
        if qual is None:
            ends = [q for q in kinds if q.endswith("." + name)]
            if len(ends) > 1:
                raise ConversionError(f"'{name}' matches several modules ({', '.join(ends)}); pass the full name.")
            qual = ends[0] if ends else None
        if qual is None:
            listing = ", ".join(f"{q} ({k})" for q, k in kinds.items()) or "none"
            raise ConversionError(
                f"No nn.Linear or nn.Conv2d module named '{name}'. Updatable layers must be one of the module's "
                f"Linear/Conv2d modules: {listing}."
            )
        if qual not in mapping:
            mapped = ", ".join(mapping) or "none"
            raise ConversionError(
                f"Module '{qual}' ({kinds[qual]}) has no Core ML layer with its weights: coremltools fused or "
                f"rewrote it (e.g. merged it with the next layer). Layers that could be mapped: {mapped}."
            )
        out.append(mapping[qual])
    return out
