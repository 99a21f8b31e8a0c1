"""``mlupdate.convert``: a PyTorch module to a (possibly updatable) Core ML neural network in one call.

The conversion itself is coremltools' (``coremltools.convert(traced, convert_to="neuralnetwork")``),
run with scoped fixes for torch 2.13 / numpy 2 (:mod:`mlupdate.authoring.torch_patches`). Afterwards
the Core ML layers that hold the weights of each ``nn.Linear`` / ``nn.Conv2d`` are found by comparing
weights and renamed to the module's qualified name (``"classifier.1"``, ``"dense_5"``), so users name
layers as in their own code. Blob names are left as coremltools wrote them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from mlupdate.authoring.torch_coreml import coreml_model, rename_layers, resolve_layers
from mlupdate.authoring.updatable import make_updatable
from mlupdate.errors import ConversionError
from mlupdate.runtime.model import Model


def convert(torch_module: torch.nn.Module, example_input: torch.Tensor, *,
            image_input: dict[str, Any] | bool | None = None, class_labels: Sequence[str] | Sequence[int] | None = None,
            updatable: Sequence[str] | None = None,
            loss: str = "categorical_cross_entropy", optimizer: Any = None, epochs: int = 1, shuffle: bool = True,
            seed: int | None = None, input_name: str | None = None, output_name: str | None = None,
            predicted_feature_name: str = "classLabel", format: str = "mlmodel",  # noqa: A002 - coremltools' word
            compute_precision: str = "float16") -> Model:
    """Convert a PyTorch module to a Core ML neural network, optionally updatable.

    ``format="mlpackage"`` makes Apple's recommended updatable layout instead: the module is split at its
    first updatable layer into an ML Program feature extractor and an updatable neural-network head,
    joined in one pipeline (:mod:`mlupdate.authoring.convert_pipeline`); write it with
    ``model.write("Model.mlpackage")``.

    Args:
        torch_module: The module (put in eval mode and traced with ``example_input``).
        example_input: One example input tensor, batch first (e.g. ``torch.rand(1, 3, 224, 224)``).
        image_input: None for a multiarray input; a dict of coremltools ``ImageType`` options
            (``scale``, ``bias``, ``color_layout``) for an image input; ``True`` for ImageType's defaults.
        class_labels: Labels, one per output score: makes a classifier.
        updatable: PyTorch module names (``"classifier.1"``) of ``nn.Linear``/``nn.Conv2d`` layers to
            make updatable; None leaves the model non-updatable.
        loss: ``"categorical_cross_entropy"`` or ``"mean_squared_error"`` (only with ``updatable``).
        optimizer: ``mlupdate.SGD(...)`` or ``mlupdate.Adam(...)`` (None: make_updatable's default).
        epochs: Default number of epochs.
        shuffle: Whether the update shuffles the data every epoch.
        seed: Random seed of the update, if any.
        input_name: Name of the input feature (default ``"image"`` for images, ``"input"`` otherwise).
        output_name: Name of the output (for classifiers, the probabilities dictionary).
        predicted_feature_name: Name of a classifier's top-label output.
        format: ``"mlmodel"`` (one neural network) or ``"mlpackage"`` (ML Program extractor + updatable
            neural-network head; needs ``updatable``).
        compute_precision: The ML Program extractor's precision with ``format="mlpackage"``: ``"float16"``
            (coremltools' default) or ``"float32"``.

    Returns:
        The converted model; ``model.notes`` says which layers were renamed and what was repaired.

    Raises:
        ConversionError: coremltools could not convert the module, or an ``updatable`` name is not a
            ``nn.Linear``/``nn.Conv2d`` found in the converted network.
    """
    if not isinstance(torch_module, torch.nn.Module):
        raise ConversionError(f"convert takes a torch.nn.Module, got {type(torch_module).__name__}. "
                              "For a Keras .h5 file use mlupdate.convert_keras(path).")
    if not isinstance(example_input, torch.Tensor):
        raise ConversionError("example_input must be one torch.Tensor (batch first), got "
                              f"{type(example_input).__name__}.")
    name = input_name or ("image" if image_input else "input")
    if format not in ("mlmodel", "mlpackage"):
        raise ConversionError(f"format must be 'mlmodel' or 'mlpackage', got {format!r}.")
    if format == "mlpackage":
        if not updatable:
            raise ConversionError("format='mlpackage' splits the module at its first updatable layer: pass "
                                  "updatable=[...] (for a plain ML Program use coremltools.convert).")
        from mlupdate.authoring.convert_pipeline import FEATURES, convert_pipeline

        if FEATURES in (output_name, predicted_feature_name):
            raise ConversionError(f"'{FEATURES}' names the extractor's output in the mlpackage layout; give the "
                                  "model's outputs other names.")

        def make_head(head: torch.nn.Module, features: torch.Tensor) -> Model:
            return convert(head, features, class_labels=class_labels, updatable=updatable, loss=loss,
                           optimizer=optimizer, epochs=epochs, shuffle=shuffle, seed=seed, input_name=FEATURES,
                           output_name=output_name, predicted_feature_name=predicted_feature_name)

        return convert_pipeline(torch_module, example_input, name, image_input, class_labels, updatable, make_head,
                                compute_precision)
    spec = _coreml_spec(torch_module, example_input, name, image_input, class_labels, output_name,
                        predicted_feature_name)
    mapping, notes = rename_layers(spec, torch_module)
    if updatable is None:
        model = Model(spec)
        model.notes.extend(notes)
        return model
    layers = resolve_layers(updatable, mapping, torch_module)
    kwargs: dict[str, Any] = {"loss": loss, "epochs": epochs, "shuffle": shuffle, "seed": seed}
    if optimizer is not None:
        kwargs["optimizer"] = optimizer
    updated = make_updatable(spec, layers, **kwargs)  # compiles the network once, after the repairs
    updated.notes[:0] = notes
    return updated


def _coreml_spec(module: torch.nn.Module, example: torch.Tensor, name: str, image_input: dict[str, Any] | bool | None,
                 class_labels: Sequence[Any] | None, output_name: str | None, predicted_feature_name: str) -> Any:
    return coreml_model(module, example, name, image_input, class_labels, output_name,
                        predicted_feature_name).get_spec()
