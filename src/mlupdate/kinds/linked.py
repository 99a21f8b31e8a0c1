"""Linked models (the ``linkedModel`` type): a stage that runs another model file.

``LinkedModel.proto`` names the file (``linkedModelFile.linkedModelFileName``, e.g.
``"FeatureExtractor.mlmodelc"``) and a ``:``-separated ``linkedModelSearchPath`` whose entries are
absolute or relative to the model holding the link (empty means ``"."``). mlupdate resolves the link
by this rule:

1. the folders of ``linkedModelSearchPath`` in order (relative ones against the folder of the file
   being loaded), then that folder itself; ``$BUNDLE_MAIN`` and ``$BUNDLE_IDENTIFIER(...)`` entries
   name app bundles, which exist only on Apple's systems, and are skipped;
2. in each folder, the file as named, and for a ``Foo.mlmodelc`` name the source ``Foo.mlmodel``
   (mlupdate reads source models, not compiled ones);
3. the first file found is read and built like any model (its own links resolve against its folder).
   Within one load a file linked by several stages is read and built once; a file that links back to
   itself is an error.

The linked model must produce every output the link declares. A link in a spec that was not loaded
from a file (``mlupdate.Model(spec)``) has no folder to search and is an error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mlupdate.errors import ModelNotFoundError, SpecError
from mlupdate.kinds.load import build_program
from mlupdate.kinds.registry import Build, Kind, register
from mlupdate.runtime.cache import content_key
from mlupdate.spec import io as spec_io


def link_target(spec: Any, where: str = "The model") -> tuple[str, list[str]]:
    """The file name and search-path entries of a ``linkedModel`` spec.

    Raises:
        SpecError: If the link names no file.
    """
    link = spec.linkedModel
    if link.WhichOneof("LinkType") != "linkedModelFile" or not link.linkedModelFile.linkedModelFileName.defaultValue:
        raise SpecError(f"{where} is a LinkedModel that names no file; set linkedModelFile.linkedModelFileName."
                        "defaultValue to the linked model's file name.")
    f = link.linkedModelFile
    return f.linkedModelFileName.defaultValue, f.linkedModelSearchPath.defaultValue.split(":")


@dataclass
class LinkContext:
    """What resolving links needs during one load: the folder of the file, and the models built so far.

    Attributes:
        folder: The folder of the file whose links are resolved (None for a spec not read from a file).
        built: Programs already built, by resolved path (shared by every stage of the load).
        loading: The files being built now, to refuse a link cycle.
    """

    folder: Path | None
    built: dict[Path, Any] = field(default_factory=dict)
    loading: set[Path] = field(default_factory=set)

    def beside(self, path: Path) -> LinkContext:
        """The context for the links of the model at ``path`` (same cache, its own folder)."""
        return LinkContext(path.parent, self.built, self.loading)


def resolve(spec: Any, folder: Path | None) -> Path:
    """The file a ``linkedModel`` spec refers to, by the rule of this module.

    Raises:
        SpecError: If the spec was not loaded from a file.
        ModelNotFoundError: If no folder searched holds the file, naming the file and every place searched.
    """
    name, entries = link_target(spec)
    if folder is None:
        raise SpecError(f"The model links to '{name}', but it was not loaded from a file, so there is no folder to "
                        "find the linked file in. Write the model to a file beside the linked model and "
                        "mlupdate.load that file.")
    folders: list[Path] = []
    for entry in [*entries, "."]:
        if entry.startswith("$"):
            continue
        d = (folder / (entry or ".")).resolve()
        if d not in folders:
            folders.append(d)
    names = [name, name[:-1]] if name.endswith(".mlmodelc") else [name]
    tried = [d / n for d in folders for n in names]
    for path in tried:
        if path.is_file():
            return path
    compiled = [str(p) for p in tried if p.is_dir()]
    hint = (f" Found the compiled {', '.join(compiled)}; mlupdate reads source models, so put the .mlmodel it was "
            "compiled from beside it." if compiled else "")
    skipped = [e for e in entries if e.startswith("$")]
    bundles = f" Skipped {', '.join(skipped)}: app bundles exist only on Apple's systems." if skipped else ""
    raise ModelNotFoundError(f"The linked model '{name}' is not in any folder searched; looked for "
                         f"{', '.join(str(p) for p in tried)}.{hint}{bundles} Put the file there or fix "
                         "linkedModelSearchPath.")


class LinkedProgram:
    """Runs the model a ``linkedModel`` spec refers to, returning the outputs the link declares.

    Args:
        spec: A ``Model_pb2.Model`` of type ``linkedModel``.
        build: The load's settings; ``build.links`` is the folder to resolve against and the programs built
            so far in this load (None: a spec not read from a file).

    Raises:
        SpecError, ModelFileError: If the link cannot be resolved, loops, or the linked model lacks an output.
    """

    def __init__(self, spec: Any, build: Build) -> None:
        context = build.links or LinkContext(None)
        path = resolve(spec, context.folder)
        self.path = path
        if path in context.loading:
            raise SpecError(f"The linked model {path} links back to itself (through its own links); break the "
                            "cycle.")
        if path not in context.built:
            linked = spec_io.read_spec(path)
            context.loading.add(path)
            try:
                inner = replace(build, cache_key=content_key(linked), links=context.beside(path))
                context.built[path] = (build_program(linked, inner), {o.name for o in linked.description.output})
            finally:
                context.loading.discard(path)
        program, produced = context.built[path]
        self.outputs = [o.name for o in spec.description.output]
        missing = [o for o in self.outputs if o not in produced]
        if missing:
            raise SpecError(f"The link to {path} declares outputs {missing} that the linked model does not produce "
                            f"(it produces {sorted(produced)}); fix the link's description.")
        self.programs = [program]

    def predict_batch(self, examples: Sequence[dict[str, Any]], crop_and_scale: str) -> list[dict[str, Any]]:
        """The linked model's predictions, limited to the outputs the link declares."""
        results = self.programs[0].predict_batch(examples, crop_and_scale)
        return [{k: r[k] for k in self.outputs if k in r} for r in results]


def _lint(spec: Any, errors_only: bool, folder: Path | None) -> list[Any]:
    from mlupdate.authoring.lint_rules import Problem  # torch: lint_rules runs networks

    link = spec.linkedModel
    if link.WhichOneof("LinkType") == "linkedModelFile" and not link.linkedModelFile.linkedModelFileName.defaultValue:
        return [Problem("error", "linked-model", "The linked model has an empty file name; set linkedModelFileName "
                                                 "(e.g. 'Extractor.mlmodelc').")]
    return []


def _check(spec: Any, where: str) -> None:
    link_target(spec, where)  # the file is resolved when the program is built (it needs the model's folder)


register(Kind("linkedModel", "linked", program=LinkedProgram, check=_check, lint=_lint,
              update_hint="Linked models cannot be updatable."))
