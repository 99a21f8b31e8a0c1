"""Update dispatch: the job that updates a model of a given type."""

from __future__ import annotations

from typing import Any

from mlupdate.errors import NotUpdatableError
from mlupdate.kinds.load import check
from mlupdate.kinds.registry import UpdateRequest


def update_job(spec: Any, request: UpdateRequest) -> Any:
    """The job that updates ``spec`` (its ``validate()`` checks the data, its ``train(control)`` trains).

    Raises:
        NotUpdatableError: For a type Core ML does not update.
        mlupdate.Error: Subclasses for a spec that does not load (see ``mlupdate.load``).
    """
    kind = check(spec)
    if kind.update is None:  # Core ML updates only networks, k-NNs and pipelines of them
        raise NotUpdatableError(f"A {kind.name} model cannot be updated: Core ML's MLUpdateTask updates neural "
                                "networks, k-NN classifiers and pipelines ending in one.")
    return kind.update(spec, request)
