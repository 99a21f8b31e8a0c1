"""``mlupdate.lint``: what Core ML's validator would say about an updatable model, before you ship it.

Covers Core ML's updatable neural-network rules (:mod:`mlupdate.authoring.lint_rules`), the update
failures its validator misses (:mod:`mlupdate.authoring.lint_device`, warnings), the pipeline rules
(only the last model updatable), the k-NN classifier rules and linked models.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mlupdate.authoring import netgraph as ng
from mlupdate.authoring.lint_device import device_problems
from mlupdate.authoring.lint_rules import Problem, int64_problems, network_problems
from mlupdate.errors import Error
from mlupdate.spec.io import folder_of, resolve_spec
from mlupdate.spec.validate import declared_size_problems, nonfinite_weights

__all__ = ["Problem", "lint"]

UPDATABLE_TYPES = (*ng.NN_TYPES, "kNearestNeighborsClassifier", "pipeline", "pipelineClassifier", "pipelineRegressor")
MINIMUM_UPDATABLE_SPEC_VERSION = 4


def lint(model_or_path: str | os.PathLike[str] | Any, errors_only: bool = False,
         folder: str | os.PathLike[str] | None = None) -> list[Problem]:
    """Check a model against Core ML's rules for updatable models.

    Args:
        model_or_path: A ``.mlmodel`` path, an :class:`mlupdate.Model`, a coremltools ``MLModel`` or a spec.
        errors_only: Skip the rules that can only warn (the scan of every weight for NaN or infinity);
            what an update task needs before it starts.
        folder: Where linked models are looked for (default: the folder of the file, when a path or a
            loaded model is given).

    Returns:
        Every problem found, errors first; an empty list for a clean updatable model.

    Raises:
        ModelFileError: If the file is missing or not a Core ML model.
    """
    spec = resolve_spec(model_or_path)
    refused = _load_problem(spec, Path(folder) if folder is not None else folder_of(model_or_path))
    try:
        problems = _model(spec, "", errors_only)
    except Error:
        if refused is None:
            raise
        problems = []  # the rules below need a network that loads; the load problem says why it does not
    if refused is not None and not any(p.severity == "error" for p in problems):
        problems.append(refused)  # no specific rule explains why load refuses it: say what load says
    return sorted(problems, key=lambda p: p.severity != "error")


def _load_problem(spec: Any, folder: Path | None) -> Problem | None:
    """What ``mlupdate.load`` would refuse the model for (the same checks, run the same way), if anything.

    A network whose export is in the compiled-model cache loaded before with the same content: it loads.
    """
    from mlupdate.models.linked import LinkContext
    from mlupdate.runtime.model import build_program
    from mlupdate.runtime.network import NN_TYPES, is_compiled

    if spec.WhichOneof("Type") in NN_TYPES and is_compiled(spec):
        return None
    try:
        build_program(spec, "cpu_only", None, executor="torch", links=LinkContext(folder))
    except Error as exc:
        return Problem("error", "load", f"mlupdate cannot load this model: {exc}")
    return None


def _prefixed(problems: list[Problem], where: str) -> list[Problem]:
    if not where:
        return problems
    return [Problem(p.severity, p.rule, f"{where}: {p.message}", p.layer) for p in problems]


def _model(spec: Any, where: str, errors_only: bool = False) -> list[Problem]:
    kind = spec.WhichOneof("Type")
    out: list[Problem] = [Problem("error", "declared-size", msg) for msg in declared_size_problems(spec)]
    if out:  # the other rules run the network on inputs of the declared sizes
        return _prefixed(out, where)
    out += [Problem("warning", "non-finite", f"Layer '{name}' has NaN or infinite weights; its outputs will be NaN. "
                                             "Re-export the model from a trained source.", name)
            for name in ([] if errors_only else nonfinite_weights(spec))]
    if spec.isUpdatable:
        if kind not in UPDATABLE_TYPES:
            hint = (" ML Programs cannot be updated: convert with convert_to='neuralnetwork'."
                    if kind == "mlProgram" else " Linked models cannot be updatable." if kind == "linkedModel" else "")
            out.append(Problem("error", "model-type", f"The model ({kind}) is marked updatable, but this model type "
                                                      f"does not support on-device update.{hint}"))
        if spec.specificationVersion < MINIMUM_UPDATABLE_SPEC_VERSION:
            out.append(Problem("error", "spec-version", f"Specification version {spec.specificationVersion} is too "
                                                        "old for an updatable model; it must be 4 (iOS 13) or above. "
                                                        "Set specificationVersion = 4 (make-updatable does)."))
    if kind in ng.NN_TYPES:
        out += _network(spec)
    elif kind == "kNearestNeighborsClassifier":
        out += knn_problems(spec)
    elif kind and kind.startswith("pipeline"):
        out += _pipeline(spec, kind, errors_only)
    elif kind == "linkedModel":
        out += _linked(spec)
    return _prefixed(out, where)


def _network(spec: Any) -> list[Problem]:
    nn = ng.network(spec)
    if spec.isUpdatable:
        return network_problems(spec) + device_problems(spec)
    flagged = [layer.name for layer in nn.layers if layer.isUpdatable]
    if flagged or nn.updateParams.lossLayers:
        return [Problem("warning", "not-updatable", f"Layers {flagged} or a loss are set up for training, but the "
                                                    "model is not marked updatable, so Core ML ignores them. Set "
                                                    "isUpdatable on the model (make-updatable does).")]
    return [Problem("warning", "not-updatable", "The model is not updatable: Core ML will not train it. Make it "
                                                "updatable with mlupdate make-updatable MODEL OUT --layers ...")]


def _pipeline(spec: Any, kind: str, errors_only: bool) -> list[Problem]:
    pipe = spec.pipeline if kind == "pipeline" else getattr(spec, kind).pipeline
    models = list(pipe.models)
    out: list[Problem] = []
    if pipe.names:
        if len(pipe.names) != len(models):
            out.append(Problem("error", "pipeline-names", f"The pipeline names {len(pipe.names)} models but holds "
                                                          f"{len(models)}; give one name per model."))
        dup = sorted({n for n in pipe.names if list(pipe.names).count(n) > 1})
        if dup:
            out.append(Problem("error", "pipeline-names", f"Pipeline model names {dup} repeat; names must be unique."))
    if spec.isUpdatable:
        if not models:
            out.append(Problem("error", "pipeline-updatable", "The updatable pipeline has no models; add them."))
        for i, sub in enumerate(models[:-1]):
            if sub.isUpdatable:
                out.append(Problem("error", "pipeline-updatable", f"Model {i} of the pipeline is marked updatable; "
                                                                  "only the last model of an updatable pipeline may "
                                                                  "be. Clear its isUpdatable flag."))
        if models and not models[-1].isUpdatable:
            out.append(Problem("error", "pipeline-updatable", "The last model of the updatable pipeline is not "
                                                              "marked updatable; make it updatable (it is the one "
                                                              "Core ML trains)."))
    else:
        for i, sub in enumerate(models):
            if sub.isUpdatable:
                out.append(Problem("error", "pipeline-updatable", f"Model {i} is updatable inside a pipeline that is "
                                                                  "not; mark the pipeline updatable (with "
                                                                  "specification version 4) or clear the flag."))
    for i, sub in enumerate(models):
        found = _model(sub, f"pipeline model {i}", errors_only)
        # A non-updatable feature extractor is expected in a pipeline: drop its "not updatable" notice.
        out += [p for p in found if not (p.rule == "not-updatable" and i < len(models) - 1)]
    return out


def knn_problems(spec: Any) -> list[Problem]:
    """Core ML's k-NN classifier rules (KNearestNeighborsClassifierValidator.cpp)."""
    knn = spec.kNearestNeighborsClassifier
    index = knn.nearestNeighborsIndex
    out = int64_problems("numberOfNeighbors", knn.numberOfNeighbors, True, "knn-k")
    if knn.WhichOneof("WeightingScheme") is None:
        out.append(Problem("error", "knn-weighting", "The k-NN classifier has no weighting scheme; set uniform or "
                                                     "inverse-distance weighting."))
    labels_kind = knn.WhichOneof("ClassLabels")
    default_kind = knn.WhichOneof("DefaultClassLabel")
    if labels_kind is None and default_kind is None:
        out.append(Problem("error", "knn-default-label", "The k-NN classifier has neither labels nor a default label; "
                                                         "set a default label (what an empty model predicts)."))
    if labels_kind and default_kind and (labels_kind == "stringClassLabels") != (default_kind == "defaultStringLabel"):
        out.append(Problem("error", "knn-default-label", "The k-NN default label's type does not match the type of "
                                                         "its labels; use string labels with a string default, or "
                                                         "integers with an integer default."))
    n_labels = len(getattr(knn, labels_kind).vector) if labels_kind else 0
    if n_labels != len(index.floatSamples):
        out.append(Problem("error", "knn-samples", f"The k-NN classifier stores {len(index.floatSamples)} samples but "
                                                   f"{n_labels} labels; every sample needs exactly one label."))
    bad = [i for i, s in enumerate(index.floatSamples) if len(s.vector) != index.numberOfDimensions]
    if bad:
        out.append(Problem("error", "knn-samples", f"Samples {bad[:5]} do not have {index.numberOfDimensions} values "
                                                   "(numberOfDimensions); store vectors of that length."))
    which = index.WhichOneof("IndexType")
    if which is None:
        out.append(Problem("error", "knn-index", "The k-NN index type is not set; use a linear index or a kd-tree."))
    elif which == "singleKdTreeIndex" and index.singleKdTreeIndex.leafSize <= 0:
        out.append(Problem("error", "knn-index", f"The kd-tree leaf size is {index.singleKdTreeIndex.leafSize}; it "
                                                 "must be positive (coremltools uses 30)."))
    if index.WhichOneof("DistanceFunction") is None:
        out.append(Problem("error", "knn-distance", "The k-NN index has no distance function; set squared Euclidean "
                                                    "distance."))
    return out


def _linked(spec: Any) -> list[Problem]:
    link = spec.linkedModel
    if link.WhichOneof("LinkType") == "linkedModelFile" and not link.linkedModelFile.linkedModelFileName.defaultValue:
        return [Problem("error", "linked-model", "The linked model has an empty file name; set linkedModelFileName "
                                                 "(e.g. 'Extractor.mlmodelc').")]
    return []
