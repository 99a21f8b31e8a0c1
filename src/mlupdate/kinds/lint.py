"""Lint dispatch: the rules every model type shares, then its own (:attr:`Kind.lint`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlupdate.kinds.registry import KINDS
from mlupdate.spec.model_types import UPDATABLE_SPEC_VERSION
from mlupdate.spec.validate import declared_size_problems, nonfinite_weights


def lint_model(spec: Any, where: str = "", errors_only: bool = False, folder: Path | None = None) -> list[Any]:
    """Core ML's rules for ``spec`` (a model or a pipeline's stage ``where``), unsorted.

    Args:
        spec: The model.
        where: Prefixed to each message (``pipeline model 1``); empty for the model itself.
        errors_only: Skip the rules that can only warn (the scan of every weight for NaN or infinity).
        folder: The folder the model was read from (a package's model folder, holding its ML Program weights).
    """
    from mlupdate.authoring.lint_rules import Problem  # torch: lint_rules runs networks

    name = spec.WhichOneof("Type")
    kind = KINDS.get(name or "")
    out: list[Any] = [Problem("error", "declared-size", msg) for msg in declared_size_problems(spec)]
    if out:  # the other rules run the network on inputs of the declared sizes
        return prefixed(out, where)
    out += [Problem("warning", "non-finite", f"Layer '{layer}' has NaN or infinite weights; its outputs will be NaN. "
                                             "Re-export the model from a trained source.", layer)
            for layer in ([] if errors_only else nonfinite_weights(spec))]
    if spec.isUpdatable:
        if kind is None or kind.update is None:
            hint = f" {kind.update_hint}" if kind is not None and kind.update_hint else ""
            out.append(Problem("error", "model-type", f"The model ({name}) is marked updatable, but this model type "
                                                      f"does not support on-device update.{hint}"))
        if spec.specificationVersion < UPDATABLE_SPEC_VERSION:
            out.append(Problem("error", "spec-version", f"Specification version {spec.specificationVersion} is too "
                                                        "old for an updatable model; it must be "
                                                        f"{UPDATABLE_SPEC_VERSION} (iOS 13) or above. "
                                                        f"Set specificationVersion = {UPDATABLE_SPEC_VERSION} "
                                                        "(make-updatable does)."))
    if kind is not None and kind.lint is not None:
        out += kind.lint(spec, errors_only, folder)
    return prefixed(out, where)


def prefixed(problems: list[Any], where: str) -> list[Any]:
    """``problems`` with ``where: `` before each message (unchanged when ``where`` is empty)."""
    from mlupdate.authoring.lint_rules import Problem  # torch: lint_rules runs networks

    if not where:
        return problems
    return [Problem(p.severity, p.rule, f"{where}: {p.message}", p.layer) for p in problems]
