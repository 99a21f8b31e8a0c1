"""``mlupdate.lint``: what Core ML's validator would say about an updatable model, before you ship it.

The rules each model type follows are declared by its entry in :mod:`mlupdate.kinds` (Core ML's updatable
neural-network rules in :mod:`mlupdate.authoring.lint_rules` and the update failures its validator misses in
:mod:`mlupdate.authoring.lint_device`, the pipeline rules, the k-NN classifier rules, linked models); this module
adds what ``mlupdate.load`` would refuse.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mlupdate.authoring.lint_rules import Problem
from mlupdate.errors import Error
from mlupdate.kinds import Build, build_program, lint_model
from mlupdate.kinds.linked import LinkContext
from mlupdate.runtime.execution import TORCH_CPU
from mlupdate.runtime.network import is_compiled
from mlupdate.spec.io import folder_of, resolve_spec

__all__ = ["Problem", "lint"]


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
        problems = lint_model(spec, "", errors_only, folder_of(model_or_path))
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
    if is_compiled(spec):
        return None
    try:
        build_program(spec, Build(TORCH_CPU, None, LinkContext(folder)))
    except Error as exc:
        return Problem("error", "load", f"mlupdate cannot load this model: {exc}")
    return None
