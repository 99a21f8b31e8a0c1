"""``mlupdate inspect``'s plain-dict summary of a spec: the shared fields, then its kind's own."""

from __future__ import annotations

from typing import Any

from mlupdate.kinds.registry import KINDS
from mlupdate.spec.description import Description


def summarize(spec: Any) -> dict[str, Any]:
    """Summarize a ``Model_pb2.Model``: interface, metadata, layers, update configuration.

    ``runs`` is True for a type mlupdate runs, else the reason it does not (pipelines: per stage).
    """
    d = Description.from_spec(spec)
    kind = KINDS.get(spec.WhichOneof("Type") or "")
    if kind is None:
        runs: bool | str = "a model type this version does not know"
    else:
        runs = True if kind.program is not None else kind.refusal or ""
    info: dict[str, Any] = {
        "type": spec.WhichOneof("Type"),
        "runs": runs,
        "specification_version": spec.specificationVersion,
        "is_updatable": spec.isUpdatable,
        "inputs": [str(f) for f in d.inputs.values()],
        "outputs": [str(f) for f in d.outputs.values()],
        "training_inputs": [str(f) for f in d.training_inputs.values()],
        "class_labels": d.class_labels,
        "predicted_feature_name": d.predicted_feature_name,
        "predicted_probabilities_name": d.predicted_probabilities_name,
        "metadata": d.metadata,
        "layers": [],
        "update": None,
    }
    if kind is not None and kind.summary is not None:
        info.update(kind.summary(spec))
    return info
