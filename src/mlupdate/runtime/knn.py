"""k-nearest-neighbours classifiers (``kNearestNeighborsClassifier``)."""

from __future__ import annotations

from typing import Any

from mlupdate.errors import UnsupportedModelError


class KNNProgram:
    """Placeholder until the k-NN runtime lands."""

    def __init__(self, spec: Any) -> None:
        raise UnsupportedModelError("k-NN classifiers are not supported yet.")
