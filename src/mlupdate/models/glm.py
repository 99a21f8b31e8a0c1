"""Generalized linear models (``glmRegressor``, ``glmClassifier``) as runnable programs.

Semantics (Core ML's ``GLMRegressor.proto`` / ``GLMClassifier.proto`` and its validator; where Core ML
documents nothing, mlupdate's choice, marked *choice*):

* The inputs (double, int64, multiarray) are concatenated in declared order into ``x``; each weight
  row ``w_i`` with its offset ``b_i`` gives ``z_i = w_i . x + b_i``.
* Regressor: ``f(z)`` with ``f`` the post-evaluation transform: none, logistic (``Logit``) or the
  standard normal CDF (``Probit``). One weight row predicts a double; more predict a multiarray.
* Classifier, ``f`` = logistic or normal CDF:

  - one weight row (two classes, either encoding): ``P(labels[1]) = f(z)``, ``P(labels[0]) = 1 - f(z)``;
  - ``OneVsRest`` with K rows: ``P(k) = f(z_k) / sum_j f(z_j)`` (scikit-learn's one-vs-rest);
  - ``ReferenceClass`` with K-1 rows (``Logit`` only, as the validator requires for K > 2): the first
    class is the reference with score 0, ``P = softmax([0, z_1, ..., z_{K-1}])``.

  The predicted label is the most probable class (the first one on a tie).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import ndtr, softmax

from mlupdate.errors import SpecError
from mlupdate.models.columns import ClassifierOutputs, ColumnProgram, Columns, flat, output_column
from mlupdate.models.values import class_labels, logistic, regressor_output, vector_inputs


def _weights(msg: Any, kind: str, width: int | None) -> tuple[np.ndarray, np.ndarray]:
    rows = [list(w.value) for w in msg.weights]
    if not rows:
        raise SpecError(f"The {kind} has no weights; add one DoubleArray of weights per output (or class).")
    if len({len(r) for r in rows}) != 1 or not rows[0]:
        raise SpecError(f"The {kind}'s weight rows have lengths {sorted({len(r) for r in rows})}; every row must "
                        "have one weight per input value (and at least one).")
    if len(msg.offset) != len(rows):
        raise SpecError(f"The {kind} has {len(rows)} weight rows but {len(msg.offset)} offsets; give one offset per "
                        "row.")
    weights = np.asarray(rows, dtype=np.float64)
    if width is not None and weights.shape[1] != width:
        raise SpecError(f"The {kind}'s weight rows have {weights.shape[1]} values but its inputs make vectors of "
                        f"{width}; they must agree. Fix the weights or the input shapes.")
    return weights, np.asarray(msg.offset, dtype=np.float64)


class GLMRegressorProgram(ColumnProgram):
    """Predicts with a ``glmRegressor`` spec.

    Args:
        spec: A ``Model_pb2.Model`` of type ``glmRegressor``.

    Raises:
        SpecError: If weights, offsets, transform or interface are inconsistent.
    """

    def __init__(self, spec: Any) -> None:
        glm = spec.glmRegressor
        self.inputs, self.width = vector_inputs(spec, "glmRegressor")
        self.weights, self.offset = _weights(glm, "glmRegressor", self.width)
        transforms = {0: None, 1: logistic, 2: ndtr}
        if glm.postEvaluationTransform not in transforms:
            raise SpecError(f"The glmRegressor's postEvaluationTransform is {glm.postEvaluationTransform}; use "
                            "NoTransform, Logit or Probit.")
        self.transform = transforms[glm.postEvaluationTransform]
        self.output = regressor_output(spec, "glmRegressor", len(self.weights))

    def compute(self, cols: Columns, n: int) -> Columns:
        """The prediction column: ``{output: values}``."""
        z = flat(cols, self.inputs, self.width) @ self.weights.T + self.offset
        if self.transform is not None:
            z = self.transform(z)
        return {self.output.name: output_column(z, self.output)}


class GLMClassifierProgram(ColumnProgram):
    """Predicts with a ``glmClassifier`` spec.

    Args:
        spec: A ``Model_pb2.Model`` of type ``glmClassifier``.

    Raises:
        SpecError: If the weight count does not fit the classes and encoding, or the interface is wrong.
    """

    def __init__(self, spec: Any) -> None:
        glm = spec.glmClassifier
        kind = "glmClassifier"
        self.inputs, self.width = vector_inputs(spec, kind)
        self.weights, self.offset = _weights(glm, kind, self.width)
        labels = class_labels(glm, kind)
        self.outputs = ClassifierOutputs(spec, kind, labels)
        k, rows = len(labels), len(self.weights)
        if glm.postEvaluationTransform not in (0, 1):
            raise SpecError(f"The {kind}'s postEvaluationTransform is {glm.postEvaluationTransform}; use Logit or "
                            "Probit.")
        if glm.classEncoding not in (0, 1):
            raise SpecError(f"The {kind}'s classEncoding is {glm.classEncoding}; use ReferenceClass or OneVsRest.")
        self.one_vs_rest = glm.classEncoding == 1
        want = 1 if k == 2 else k if self.one_vs_rest else k - 1
        if k < 2 or rows != want:
            encoding = "OneVsRest" if self.one_vs_rest else "ReferenceClass"
            raise SpecError(f"The {kind} has {k} classes and {encoding} encoding, so it needs {want} weight row(s), "
                            f"but it has {rows}. Fix the weights or the class labels.")
        if glm.postEvaluationTransform == 1 and k > 2:
            raise SpecError(f"The {kind} uses Probit with {k} classes; Core ML allows Probit only for two classes.")
        self.link = logistic if glm.postEvaluationTransform == 0 else ndtr

    def probabilities(self, z: np.ndarray) -> np.ndarray:
        """``[B, K]`` class probabilities from the ``[B, rows]`` linear scores."""
        if z.shape[1] == 1:
            p1 = self.link(z[:, 0])
            return np.stack([1.0 - p1, p1], axis=1)
        if self.one_vs_rest:
            s = self.link(z)
            total = s.sum(axis=1, keepdims=True)
            if (total > 0).all():
                s /= total
                return s
            return np.divide(s, total, out=np.full_like(s, 1.0 / s.shape[1]), where=total > 0)
        return softmax(np.concatenate([np.zeros((len(z), 1)), z], axis=1), axis=1)

    def compute(self, cols: Columns, n: int) -> Columns:
        """The label and probability columns."""
        probs = self.probabilities(flat(cols, self.inputs, self.width) @ self.weights.T + self.offset)
        return self.outputs.columns(probs, np.argmax(probs, axis=1))
