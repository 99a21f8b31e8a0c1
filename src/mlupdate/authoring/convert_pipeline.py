"""``mlupdate.convert(..., format="mlpackage")``: Apple's recommended updatable layout from a PyTorch module.

The module is split at its first updatable layer (:mod:`mlupdate.authoring.split_torch`); the part
before it becomes an ML Program feature extractor (coremltools' converter, ``convert_to="mlprogram"``),
the rest an updatable neural-network head (the ``format="mlmodel"`` path: rename, repair,
make_updatable), and the two are joined with ``coremltools.utils.make_pipeline`` into one
``.mlpackage``. A classifier head makes the pipeline a ``pipelineClassifier`` with the head's
predicted-feature names; the pipeline is marked updatable with the extractor's input and the head's
target as training inputs, as Core ML's pipeline validator wants (only the last model updatable).
"""

from __future__ import annotations

import tempfile
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from mlupdate.errors import ConversionError

FEATURES = "features"


def convert_pipeline(module: torch.nn.Module, example: torch.Tensor, name: str,
                     image_input: dict[str, Any] | bool | None, class_labels: Sequence[Any] | None,
                     updatable: Sequence[str], make_head: Any, compute_precision: str) -> Any:
    """Split, convert both parts and join them; returns the loaded pipeline (an :class:`mlupdate.Model`).

    Args:
        module: The whole network.
        example: One example input, batch first.
        name: The input feature's name.
        image_input: As :func:`mlupdate.convert`.
        class_labels: As :func:`mlupdate.convert`.
        updatable: Qualified names of the updatable modules (already checked to exist).
        make_head: ``make_head(head_module, features_example) -> mlupdate.Model``, the updatable
            neural-network conversion of the head (``format="mlmodel"``) with the caller's options.
        compute_precision: The extractor's precision, ``float16`` (coremltools' default) or ``float32``.

    Returns:
        The pipeline, read back from a package in a private temporary folder (removed with the
        model); ``model.write("X.mlpackage")`` saves it.

    Raises:
        ConversionError: The module does not split, or coremltools cannot convert a part.
    """
    from mlupdate.authoring.split_torch import split_module
    from mlupdate.authoring.torch_coreml import coreml_model, resolve_layers
    from mlupdate.spec.io import import_coremltools

    ct = import_coremltools()
    qualified = resolve_layers(updatable, {q: q for q, _ in module.named_modules() if q}, module)
    was_training = module.training
    module.eval()
    try:
        extractor, head, first = split_module(module, qualified)
        with torch.no_grad():
            features = extractor(example)
    finally:
        module.train(was_training)
    if not isinstance(features, torch.Tensor):
        raise ConversionError(f"The layers before '{first}' return a {type(features).__name__}, not one tensor.")
    if name == FEATURES:
        raise ConversionError(f"The input may not be named '{FEATURES}' in the mlpackage layout: that is the name "
                              "of the extractor's output. Choose another input_name.")
    ml_extractor = coreml_model(extractor, example, name, image_input, None, FEATURES, convert_to="mlprogram",
                                compute_precision=compute_precision)
    head_model = make_head(head, features)
    ml_head = ct.models.MLModel(head_model.get_spec(), skip_model_load=True)
    joined = ct.utils.make_pipeline(ml_extractor, ml_head)
    spec = _updatable_pipeline(joined.get_spec(), head_model.get_spec(), class_labels is not None)
    folder = tempfile.TemporaryDirectory(prefix="mlupdate-convert-")
    path = Path(folder.name) / "Model.mlpackage"
    ct.models.MLModel(spec, weights_dir=joined.weights_dir, skip_model_load=True).save(str(path))
    from mlupdate.runtime.model import load

    model = load(path)
    weakref.finalize(model, folder.cleanup)
    model.notes.extend([f"Split at '{first}': the layers before it are an ML Program feature extractor "
                        f"({compute_precision}), the rest an updatable neural network.", *head_model.notes])
    return model


def _updatable_pipeline(joined: Any, head: Any, classifier: bool) -> Any:
    """Mark the joined pipeline updatable (a ``pipelineClassifier`` for a classifier head)."""
    from mlupdate.spec.io import Model_pb2

    spec = Model_pb2.Model()
    spec.specificationVersion = joined.specificationVersion
    spec.description.CopyFrom(joined.description)
    if classifier:
        spec.pipelineClassifier.pipeline.CopyFrom(joined.pipeline)
        spec.description.predictedFeatureName = head.description.predictedFeatureName
        spec.description.predictedProbabilitiesName = head.description.predictedProbabilitiesName
    else:
        spec.pipeline.CopyFrom(joined.pipeline)
    spec.isUpdatable = True
    produced = {o.name for o in joined.pipeline.models[0].description.output}
    del spec.description.trainingInput[:]
    spec.description.trainingInput.extend(spec.description.input)
    spec.description.trainingInput.extend(t for t in head.description.trainingInput if t.name not in produced)
    return spec
