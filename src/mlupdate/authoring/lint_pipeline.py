"""Core ML's pipeline interface rules (``PipelineValidator.cpp``) and those for ML Program stages.

The rules beyond "only the last model updatable" (in :mod:`mlupdate.authoring.lint`), for pipelines in
general and for Apple's recommended updatable layout (an ML Program extractor and an NN head).

Core ML builds a table of feature types from the pipeline's inputs and each model's outputs in turn:
every model's input must be in it with an equivalent type, and every pipeline output must be. ML
Program stages cannot be updatable; a pipeline holding one needs specification version 6 (iOS 15) or
above; each stage's weights must lie in the package, in a blob file of its own (``make_pipeline``
renames them ``{i}-weight.bin``).
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

from mlupdate.authoring.lint_rules import Problem
from mlupdate.spec.layout import blob_files
from mlupdate.spec.package import MODEL_PATH

ML_PROGRAM_SPEC_VERSION = 6  # iOS 15, the first with ML Programs (Model.proto's version table)


def _type_key(ft: Any) -> tuple[Any, ...]:
    """What Core ML compares of a feature type (its kind and the details that fix the values' layout)."""
    kind = ft.WhichOneof("Type")
    if kind == "multiArrayType":
        m = ft.multiArrayType
        return kind, m.dataType, tuple(m.shape)
    if kind == "imageType":
        i = ft.imageType
        return kind, i.width, i.height, i.colorSpace
    if kind == "dictionaryType":
        return kind, ft.dictionaryType.WhichOneof("KeyType")
    return (kind,)


def _equivalent(a: Any, b: Any) -> bool:
    ka, kb = _type_key(a), _type_key(b)
    if ka[0] == "multiArrayType" and kb[0] == "multiArrayType" and (not ka[2] or not kb[2]):
        return ka[1] == kb[1]  # one side leaves the shape open (flexible): only the data type must agree
    return ka == kb


def interface_problems(spec: Any, models: list[Any]) -> list[Problem]:
    """Each model's inputs come from the pipeline's inputs or an earlier model, with the same type.

    The pipeline's outputs must come from them too.
    """
    table = {f.name: f.type for f in spec.description.input}
    out: list[Problem] = []
    for i, sub in enumerate(models):
        for f in sub.description.input:
            known = table.get(f.name)
            if known is None:
                out.append(Problem("error", "pipeline-input", f"Input '{f.name}' of pipeline model {i} is neither a "
                                                              "pipeline input nor an output of an earlier model; "
                                                              "rename it or add the input to the pipeline."))
            elif not _equivalent(known, f.type):
                out.append(Problem("error", "pipeline-type", f"Input '{f.name}' of pipeline model {i} is "
                                                             f"{_describe(f.type)}, but the pipeline input or earlier "
                                                             f"model gives {_describe(known)}; make the names and "
                                                             "shapes match."))
        table.update({f.name: f.type for f in sub.description.output})
    for f in spec.description.output:
        known = table.get(f.name)
        if known is None:
            out.append(Problem("error", "pipeline-output", f"Pipeline output '{f.name}' is produced by no model of "
                                                           "the pipeline; remove it or rename it."))
        elif not _equivalent(known, f.type):
            out.append(Problem("error", "pipeline-type", f"Pipeline output '{f.name}' is {_describe(f.type)}, but "
                                                         f"its model produces {_describe(known)}."))
    return out


def _describe(ft: Any) -> str:
    key = _type_key(ft)
    if key[0] == "multiArrayType":
        from mlupdate.spec.io import Model_pb2

        names = dict(Model_pb2.ArrayFeatureType.ArrayDataType.items())
        dtype = next((n for n, v in names.items() if v == key[1]), f"data type {key[1]}")
        return f"a {dtype} multiarray of shape {list(key[2])}"
    if key[0] == "imageType":
        return f"a {key[1]}x{key[2]} image"
    return f"a {key[0] or 'untyped feature'}"


def program_stage_problems(spec: Any, models: list[Any], package: Path | None) -> list[Problem]:
    """The rules for ML Program stages: not updatable, spec version 6+, weights present and not shared.

    Args:
        spec: The pipeline.
        models: Its models.
        package: The folder ``@model_path`` means (the package's ``Data/com.apple.CoreML``), when the
            pipeline was read from a package; None skips the check that the weight files exist.
    """
    out: list[Problem] = []
    owners: dict[str, int] = {}
    for i, sub in enumerate(models):
        if sub.WhichOneof("Type") != "mlProgram":
            continue
        if spec.specificationVersion < ML_PROGRAM_SPEC_VERSION:
            out.append(Problem("error", "spec-version", f"Pipeline model {i} is an ML Program, which needs "
                                                        f"specification version {ML_PROGRAM_SPEC_VERSION} (iOS 15) "
                                                        f"or above; the pipeline declares "
                                                        f"{spec.specificationVersion}. Raise it (make_pipeline sets "
                                                        "the largest of its models')."))
        for name in sorted(blob_files(sub.mlProgram)):
            if owners.setdefault(name, i) != i:
                out.append(Problem("error", "pipeline-weights", f"Pipeline models {owners[name]} and {i} both keep "
                                                                f"weights in {name}; each ML Program stage needs a "
                                                                "weight file of its own (make_pipeline names them "
                                                                "'@model_path/weights/{i}-weight.bin')."))
            elif package is not None and not _resolve(package, name).is_file():
                out.append(Problem("error", "pipeline-weights", f"Pipeline model {i} keeps weights in {name}, which "
                                                                "the package lacks; copy the whole .mlpackage."))
    return out


def _resolve(package: Path, name: str) -> Path:
    parts = PurePosixPath(name).parts
    return package.joinpath(*parts[1:]) if parts[:1] == (MODEL_PATH,) else package / name
