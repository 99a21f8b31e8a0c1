"""Load-time dispatch: check a spec's type once, and build the program that runs it."""

from __future__ import annotations

from typing import Any

from mlupdate.errors import SpecError, UnsupportedModelError
from mlupdate.kinds.registry import KINDS, Build, Kind
from mlupdate.spec.validate import check_declared_sizes


def runnable() -> tuple[str, ...]:
    """The model types mlupdate runs, in registration order."""
    return tuple(name for name, kind in KINDS.items() if kind.program is not None)


def refused_reasons() -> dict[str, str]:
    """Why each type that mlupdate does not run is refused, and what to use instead."""
    return {name: kind.refusal for name, kind in KINDS.items() if kind.refusal is not None}


def check(spec: Any, where: str = "The model") -> Kind:
    """Return the entry of ``spec``'s type, or raise a clear error for a type mlupdate cannot run.

    Raises:
        UnsupportedModelError: For the types mlupdate does not run.
        SpecError: For a pipeline without models, a link without a file name, a classifier without labels,
            declared sizes out of bounds, or a model without inputs.
    """
    name = spec.WhichOneof("Type")
    kind = KINDS.get(name or "")
    check_declared_sizes(spec, where)
    if kind is not None and kind.refusal_message is not None:
        raise UnsupportedModelError(kind.refusal_message(spec, where))
    if kind is None or kind.program is None:
        why = f", which mlupdate cannot run: {kind.refusal}" if kind is not None and kind.refusal else ""
        classic = ", ".join(n for n, k in KINDS.items() if k.group == "classic")
        raise UnsupportedModelError(
            f"{where} is of type '{name}'{why}. mlupdate runs neural networks, ML Programs, k-NN classifiers, "
            f"{classic}, linked models and pipelines of them; it updates neural networks and k-NN classifiers."
        )
    if kind.check is not None:
        kind.check(spec, where)
    if not spec.description.input:
        raise SpecError(f"{where} declares no inputs; Core ML models need at least one. Fix the model's description.")
    return kind


def build_program(spec: Any, build: Build) -> Any:
    """Check ``spec`` (:func:`check`) and compile it into the program that runs it.

    Raises:
        mlupdate.Error: Subclasses for every problem with the spec (see ``mlupdate.load``).
    """
    return check(spec).program(spec, build)  # type: ignore[misc]  # check() refuses a type without one
