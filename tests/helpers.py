"""Test helpers: converting torch modules with coremltools (the ground-truth path)."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import torch

logging.getLogger("coremltools").setLevel(logging.ERROR)


def ct_convert(module: torch.nn.Module, example: torch.Tensor, path: Path, *, image: dict[str, Any] | None = None,
               labels: list[str] | None = None, input_name: str = "input") -> Path:
    """Convert with ``coremltools.convert(..., convert_to="neuralnetwork")`` and save to ``path``."""
    import coremltools as ct

    module = module.eval()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(module, example)
        if image is not None:
            inp = ct.ImageType(name=input_name, shape=example.shape, **image)
        else:
            inp = ct.TensorType(name=input_name, shape=example.shape)
        kwargs: dict[str, Any] = {}
        if labels is not None:
            kwargs["classifier_config"] = ct.ClassifierConfig(labels)
        ml = ct.convert(traced, inputs=[inp], convert_to="neuralnetwork", **kwargs)
    ml.save(str(path))
    return path
