"""The model-kind registry: one :class:`Kind` per type of ``Model.proto``, registered by its module.

Built the way the layer registry is: each entry module (:mod:`mlupdate.kinds.network`,
:mod:`~mlupdate.kinds.knn`, ...) calls :func:`register` once per type it owns, declaring what the type
compiles to, how it is updated, its lint rules and its ``inspect`` summary, or why mlupdate refuses it.
``mlupdate.kinds`` imports every entry module, so a lookup sees them all.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mlupdate.runtime.execution import Execution


@dataclass(frozen=True)
class Build:
    """How the programs of one load are built.

    Attributes:
        execution: Where networks run (units, executor, threads), decided once by the caller.
        cache_key: Key of the compiled-network cache (None: no cache).
        links: Where linked models are looked for and the ones built so far in this load
            (:class:`mlupdate.kinds.linked.LinkContext`); None for a spec not read from a file.
    """

    execution: Execution = Execution()
    cache_key: str | None = None
    links: Any = None

    def stage(self, index: int) -> Build:
        """The settings of stage ``index`` of a pipeline (its own cache key, the same links)."""
        return replace(self, cache_key=f"{self.cache_key}/{index}" if self.cache_key else None)


@dataclass(frozen=True)
class UpdateRequest:
    """What an update job is built from (the task's validated settings and data).

    Attributes:
        values: The update parameters in use (``learning_rate``, ``epochs``, ...).
        execution: Where the frozen part runs.
        crop_and_scale: How images of another size are fitted.
        examples: The training examples.
        frozen_cache: False recomputes the whole network in torch every step (the reference path).
        folder: Where linked models are looked for (the folder of the model's file).
    """

    values: Mapping[str, Any]
    execution: Execution
    crop_and_scale: str
    examples: Sequence[Any]
    frozen_cache: bool = True
    folder: Path | None = None


@dataclass(frozen=True)
class Kind:
    """One type of ``Model.proto`` and everything mlupdate does with it.

    Attributes:
        name: The field of ``Model.Type`` (``neuralNetwork``, ``glmClassifier``, ...).
        group: How messages list it: ``network``, ``knn``, ``classic``, ``linked``, ``pipeline`` or ``refused``.
        program: ``program(spec, build)`` -> the object whose ``predict_batch(examples, crop_and_scale)``
            runs the model; None for a refused type.
        check: ``check(spec, where)``: the type's load-time checks beyond the shared ones (raises).
        update: ``update(spec, request)`` -> the update job; None for a type Core ML does not update.
        stage_update: ``stage_update(spec, request, pipeline, features)`` -> the update job of the type as the
            last model of ``pipeline``, trained on ``features()`` (the examples with the earlier stages'
            outputs); None for a type a pipeline cannot end in when it is updated.
        lint: ``lint(spec, errors_only, folder)`` -> the type's lint problems (the shared rules run for every
            type); ``folder`` is where the model was read from (None for a bare spec).
        summary: ``summary(spec)`` -> what ``inspect`` adds for the type.
        parameters: ``parameters(spec)`` -> the update parameters the model declares, by name (None: none).
        refusal: Why mlupdate does not run the type, and what to use instead (None: it runs).
        refusal_message: ``refusal_message(spec, where)`` -> the whole message, where the type has its own.
        update_hint: What lint adds when a model of a type without ``update`` is marked updatable.
    """

    name: str
    group: str
    program: Callable[[Any, Build], Any] | None = None
    check: Callable[[Any, str], None] | None = None
    update: Callable[[Any, UpdateRequest], Any] | None = None
    stage_update: Callable[[Any, UpdateRequest, Any, Callable[[], list[dict[str, Any]]]], Any] | None = None
    lint: Callable[[Any, bool, Path | None], list[Any]] | None = None
    summary: Callable[[Any], dict[str, Any]] | None = None
    parameters: Callable[[Any], dict[str, Any]] | None = None
    refusal: str | None = None
    refusal_message: Callable[[Any, str], str] | None = None
    update_hint: str = ""


#: Every registered kind, by its ``Model.Type`` field name, in registration order.
KINDS: dict[str, Kind] = {}


def register(kind: Kind) -> Kind:
    """Add ``kind`` to the registry (one entry per type; registering a type twice is a bug)."""
    if kind.name in KINDS:
        raise RuntimeError(f"Model type {kind.name!r} is registered twice.")
    KINDS[kind.name] = kind
    return kind


def update_parameters(spec: Any) -> dict[str, Any]:
    """The update parameters ``spec`` declares (``ParameterDescription`` by name; empty for most types)."""
    kind = kind_of(spec)
    return kind.parameters(spec) if kind is not None and kind.parameters is not None else {}


def kind_of(spec: Any) -> Kind | None:
    """The entry of ``spec``'s type (None for a spec without a type, or of a type this version does not know)."""
    return KINDS.get(spec.WhichOneof("Type") or "")
