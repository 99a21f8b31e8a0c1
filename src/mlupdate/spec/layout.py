"""Which parts of a model live outside its spec, and writing a model to the file kind it needs.

An ML Program (alone or as a pipeline stage) keeps its large constants in blob files under
``@model_path/weights/`` (:mod:`mlupdate.spec.package`), so it can only be written as an ``.mlpackage``
whose weights are copied, byte for byte, from the package it was read from. Every other model is
self-contained and may be written as either kind.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mlupdate.errors import ModelFileError
from mlupdate.spec.io import ModelSpec, write_spec

PACKAGE_SUFFIX = ".mlpackage"


def program_stages(spec: ModelSpec) -> list[Any]:
    """The ML Program specs in a model: itself, or the stages of its pipelines (nested ones too)."""
    kind = spec.WhichOneof("Type")
    if kind == "mlProgram":
        return [spec]
    if kind in ("pipeline", "pipelineClassifier", "pipelineRegressor"):
        pipe = spec.pipeline if kind == "pipeline" else getattr(spec, kind).pipeline
        return [p for sub in pipe.models for p in program_stages(sub)]
    return []


def blob_files(message: Any) -> set[str]:
    """Every ``blobFileValue.fileName`` in a protobuf message (an ML Program), found by walking it."""
    found: set[str] = set()
    todo = [message]
    while todo:
        m = todo.pop()
        if m.DESCRIPTOR.name == "Value" and m.WhichOneof("value") == "blobFileValue":
            found.add(m.blobFileValue.fileName)
            continue
        for field, value in m.ListFields():
            if field.message_type is None:
                continue
            if field.message_type.GetOptions().map_entry:
                todo.extend(v for v in value.values() if hasattr(v, "ListFields"))
            elif field.label == field.LABEL_REPEATED:
                todo.extend(value)
            else:
                todo.append(value)
    return found


def write_model(spec: ModelSpec, path: str | os.PathLike[str], weights_from: Path | None) -> Path:
    """Write ``spec`` atomically as an ``.mlpackage`` (by its suffix, or over a package) or a ``.mlmodel`` file.

    Args:
        spec: The model's spec.
        path: The destination; a package folder when it ends in ``.mlpackage`` or is an existing package.
        weights_from: The folder ``@model_path`` meant where the model was read (its weights are copied
            unchanged); None for a model that was not read from a file.

    Returns:
        The destination.

    Raises:
        ModelFileError: An ML Program written as a ``.mlmodel`` file, or one whose weights are unknown.
    """
    dest = Path(path)
    stages = program_stages(spec)
    needs = sorted({name for p in stages for name in blob_files(p.mlProgram)})
    from mlupdate.spec.package import is_package, write_package

    if dest.suffix != PACKAGE_SUFFIX and not is_package(dest):
        if stages:
            raise ModelFileError(f"Cannot write {dest}: the model holds an ML Program, whose weights live in a "
                                 f"package. Write it as {dest.with_suffix(PACKAGE_SUFFIX).name} instead.")
        return write_spec(spec, dest)
    if dest.is_dir() and not is_package(dest):
        raise ModelFileError(f"Cannot write the package to {dest}: it is a folder but not a package (no "
                             "Manifest.json), which writing would replace. Choose another path.")
    if needs and weights_from is None:
        raise ModelFileError(f"Cannot write {dest}: the model's ML Program keeps weights in {needs[0]}, but the "
                             "model was not read from a package, so they are unknown. Load it from its "
                             ".mlpackage and write that.")
    return write_package(spec, dest, weights_from)
