"""Helpers of the classic-model tests: scikit-learn models converted by coremltools, loaded by mlupdate."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np

import mlupdate

logging.getLogger("coremltools").setLevel(logging.ERROR)


def write(spec: Any, path: Path) -> mlupdate.Model:
    """Write a spec as a ``.mlmodel`` file and load it with ``mlupdate.load``."""
    path.write_bytes(spec.SerializeToString())
    return mlupdate.load(path)


def converted(estimator: Any, inputs: Any, output: str, path: Path) -> mlupdate.Model:
    """``coremltools.converters.sklearn.convert(estimator, inputs, output)``, written and loaded."""
    import coremltools as ct

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        spec = ct.converters.sklearn.convert(estimator, inputs, output).get_spec()
    return write(spec, path)


def rows(x: np.ndarray, name: str = "x") -> list[dict[str, Any]]:
    """One example per row of ``x``, as the multiarray input ``name``."""
    return [{name: r} for r in x]


def probabilities(results: list[dict[str, Any]], labels: Any, name: str = "classProbability") -> np.ndarray:
    """The ``[B, K]`` probabilities of ``results`` in the order of ``labels``."""
    return np.asarray([[r[name][lab] for lab in labels] for r in results])


def tree_model(kind: str, n_features: int, labels: list[Any] | None = None, dims: int = 1) -> Any:
    """An empty coremltools ``TreeEnsembleRegressor`` (output ``y``) / ``TreeEnsembleClassifier`` on input ``x``."""
    from coremltools.models import datatypes
    from coremltools.models.tree_ensemble import TreeEnsembleClassifier, TreeEnsembleRegressor

    features = [("x", datatypes.Array(n_features))]
    if kind == "regressor":
        builder = TreeEnsembleRegressor(features, [("y", datatypes.Double())])
        if dims > 1:  # the builder declares one value; a multi-dimension regressor returns a double array
            out = builder.spec.description.output[0].type
            out.multiArrayType.shape.append(dims)
            out.multiArrayType.dataType = out.multiArrayType.DOUBLE
        return builder
    return TreeEnsembleClassifier(features, labels, "label")
