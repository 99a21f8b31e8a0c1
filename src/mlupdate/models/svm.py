"""Support vector machines (``supportVectorRegressor``, ``supportVectorClassifier``) as runnable programs.

Core ML's SVMs are libsvm models (``SVM.proto``; coremltools converts libsvm and scikit-learn models
to it unchanged), so mlupdate computes what libsvm's ``svm_predict`` / ``svm_predict_probability`` do:

* Kernels (``SVM.proto``): linear ``x.y``; RBF ``exp(-gamma |x - y|^2)``; polynomial
  ``(gamma x.y + c)^degree``; sigmoid ``tanh(gamma x.y + c)``. Sparse support vectors use 1-based
  indexes (libsvm's); the vector of inputs is the concatenation of the declared inputs.
* Regressor: ``sum_i alpha_i K(x, sv_i) - rho``.
* Classifier with K classes, support vectors grouped by class (``numberOfSupportVectorsPerClass``):
  for each pair ``i < j`` (in label order), ``d_ij = sum_{sv in i} coef[j-1][sv] K + sum_{sv in j}
  coef[i][sv] K - rho_ij``; ``d_ij > 0`` votes for ``i``, otherwise for ``j``.
* Without ``probA``/``probB`` the label is the class with most votes (the first on a tie), and the model
  gives no probabilities: a spec that declares a probabilities output without them is refused.
* With ``probA``/``probB`` (Platt scaling): ``r_ij = 1 / (1 + exp(A_ij d_ij + B_ij))`` clipped to
  ``[1e-7, 1 - 1e-7]``. Two classes: ``P = (r_01, 1 - r_01)``. More: libsvm's pairwise coupling
  (Wu, Lin and Weng's second method, libsvm's iteration and stopping rule). The label is then the most
  probable class (libsvm's ``svm_predict_probability``; *mlupdate's choice*, as Core ML documents none).
  scikit-learn couples even two classes, so its binary probabilities differ from these by up to ~0.5%.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.spatial.distance import cdist

from mlupdate.errors import FeatureError, SpecError
from mlupdate.models.columns import ClassifierOutputs, ColumnProgram, Columns, flat, output_column
from mlupdate.models.values import class_labels, logistic, regressor_output, vector_inputs, within_limit


class _Kernel:
    """A ``Kernel`` message with its support vectors."""

    def __init__(self, msg: Any, kind: str, width: int | None) -> None:
        self.kind = kind
        self.which = msg.kernel.WhichOneof("kernel")
        if self.which is None:
            raise SpecError(f"The {kind} has no kernel; set linearKernel, rbfKernel, polyKernel or sigmoidKernel.")
        self.params = getattr(msg.kernel, self.which)
        if self.which != "linearKernel" and self.params.gamma < 0:
            raise SpecError(f"The {kind}'s {self.which} has gamma {self.params.gamma}; it must be >= 0.")
        if self.which == "polyKernel" and self.params.degree < 0:
            raise SpecError(f"The {kind}'s polyKernel has degree {self.params.degree}; it must be >= 0.")
        self.vectors = self._support_vectors(msg, width)

    def _support_vectors(self, msg: Any, width: int | None) -> np.ndarray:
        which = msg.WhichOneof("supportVectors")
        if which == "denseSupportVectors":
            rows = [list(v.values) for v in msg.denseSupportVectors.vectors]
            lengths = {len(r) for r in rows}
            if len(lengths) > 1 or (rows and width is not None and lengths != {width}):
                raise SpecError(f"The {self.kind}'s dense support vectors have {sorted(lengths)} values; each must "
                                f"have {width or 'the same number of'} values, one per input value.")
            return np.asarray(rows, dtype=np.float64).reshape(len(rows), -1 if rows else (width or 0))
        if which == "sparseSupportVectors":
            vectors = msg.sparseSupportVectors.vectors
            top = max((n.index for v in vectors for n in v.nodes), default=0)
            if min((n.index for v in vectors for n in v.nodes), default=1) < 1 or (width is not None and top > width):
                raise SpecError(f"The {self.kind}'s sparse support vectors use indexes up to {top}; indexes are "
                                f"1-based and must be at most {width} (the input's length).")
            within_limit(len(vectors) * (width if width is not None else top), f"The {self.kind}'s support vectors")
            dense = np.zeros((len(vectors), width if width is not None else top))
            for i, v in enumerate(vectors):
                for n in v.nodes:
                    dense[i, n.index - 1] = n.value
            return dense
        raise SpecError(f"The {self.kind} has no support vectors; set denseSupportVectors or sparseSupportVectors.")

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """``[B, n_support_vectors]`` kernel values of the rows of ``x``."""
        if x.shape[1] != self.vectors.shape[1]:
            raise FeatureError(f"The {self.kind} reads vectors of {self.vectors.shape[1]} values but its inputs gave "
                               f"{x.shape[1]}. Pass inputs of the declared shapes.")
        p = self.params
        if self.which == "rbfKernel":
            return np.exp(-p.gamma * cdist(x, self.vectors, "sqeuclidean"))
        dot = x @ self.vectors.T
        if self.which == "polyKernel":
            return (p.gamma * dot + p.c) ** p.degree
        if self.which == "sigmoidKernel":
            return np.tanh(p.gamma * dot + p.c)
        return dot


class SupportVectorRegressorProgram(ColumnProgram):
    """Predicts with a ``supportVectorRegressor`` spec.

    Args:
        spec: A ``Model_pb2.Model`` of type ``supportVectorRegressor``.

    Raises:
        SpecError: If the kernel, support vectors or coefficients are inconsistent.
    """

    def __init__(self, spec: Any) -> None:
        svr = spec.supportVectorRegressor
        self.inputs, self.width = vector_inputs(spec, "supportVectorRegressor")
        self.kernel = _Kernel(svr, "supportVectorRegressor", self.width)
        self.alpha = np.asarray(svr.coefficients.alpha, dtype=np.float64)
        if self.alpha.size != len(self.kernel.vectors):
            raise SpecError(f"The supportVectorRegressor has {len(self.kernel.vectors)} support vectors but "
                            f"{self.alpha.size} coefficients; give one coefficient per support vector.")
        self.rho = float(svr.rho)
        self.output = regressor_output(spec, "supportVectorRegressor", 1)

    def compute(self, cols: Columns, n: int) -> Columns:
        """The prediction column: ``{output: values}``."""
        y = self.kernel(flat(cols, self.inputs, self.width)) @ self.alpha - self.rho
        return {self.output.name: output_column(y.reshape(n, -1), self.output)}


class SupportVectorClassifierProgram(ColumnProgram):
    """Predicts with a ``supportVectorClassifier`` spec.

    Args:
        spec: A ``Model_pb2.Model`` of type ``supportVectorClassifier``.

    Raises:
        SpecError: If the class counts, coefficients, rho or probA/probB do not fit together.
    """

    def __init__(self, spec: Any) -> None:
        svc = spec.supportVectorClassifier
        kind = "supportVectorClassifier"
        self.inputs, self.width = vector_inputs(spec, kind)
        self.kernel = _Kernel(svc, kind, self.width)
        labels = class_labels(svc, kind)
        k, total = len(labels), len(self.kernel.vectors)
        self.pairs = [(i, j) for i in range(k) for j in range(i + 1, k)]
        counts = [int(c) for c in svc.numberOfSupportVectorsPerClass]
        if len(counts) != k or sum(counts) != total or min(counts, default=0) < 0:
            raise SpecError(f"The {kind} has {k} classes and {total} support vectors but "
                            f"numberOfSupportVectorsPerClass is {counts}; give one non-negative count per class, "
                            "adding up to the support vectors.")
        self.starts = np.concatenate([[0], np.cumsum(counts)]).astype(int)
        if len(svc.coefficients) != k - 1 or any(len(c.alpha) != total for c in svc.coefficients):
            raise SpecError(f"The {kind} needs {k - 1} coefficient rows (classes - 1) of {total} values (one per "
                            f"support vector); it has {[len(c.alpha) for c in svc.coefficients]}.")
        self.coef = np.asarray([list(c.alpha) for c in svc.coefficients], dtype=np.float64).reshape(-1, total)
        self.rho = np.asarray(svc.rho, dtype=np.float64)
        if self.rho.size != len(self.pairs):
            raise SpecError(f"The {kind} has {k} classes, so it needs {len(self.pairs)} rho values (one per pair of "
                            f"classes); it has {self.rho.size}.")
        self.prob_a = np.asarray(svc.probA, dtype=np.float64)
        self.prob_b = np.asarray(svc.probB, dtype=np.float64)
        if (self.prob_a.size or self.prob_b.size) and not self.prob_a.size == self.prob_b.size == len(self.pairs):
            raise SpecError(f"The {kind} has {self.prob_a.size} probA and {self.prob_b.size} probB values; give "
                            f"both or neither, {len(self.pairs)} each (one per pair of classes).")
        self.outputs = ClassifierOutputs(spec, kind, labels, probabilities=bool(self.prob_a.size))

    def decisions(self, x: np.ndarray) -> np.ndarray:
        """``[B, pairs]`` libsvm decision values of the rows of ``x``."""
        kx = self.kernel(x)
        s = self.starts
        dec = np.empty((len(x), len(self.pairs)))
        for p, (i, j) in enumerate(self.pairs):
            dec[:, p] = (kx[:, s[i]:s[i + 1]] @ self.coef[j - 1, s[i]:s[i + 1]]
                         + kx[:, s[j]:s[j + 1]] @ self.coef[i, s[j]:s[j + 1]] - self.rho[p])
        return dec

    def probabilities(self, dec: np.ndarray) -> np.ndarray:
        """``[B, K]`` class probabilities (Platt scaling, then libsvm's pairwise coupling)."""
        r01 = np.clip(logistic(-(dec * self.prob_a + self.prob_b)), 1e-7, 1 - 1e-7)
        k = len(self.outputs.labels)
        if k == 2:
            return np.concatenate([r01, 1.0 - r01], axis=1)
        r = np.zeros((len(dec), k, k))
        for p, (i, j) in enumerate(self.pairs):
            r[:, i, j], r[:, j, i] = r01[:, p], 1.0 - r01[:, p]
        return couple(r)

    def compute(self, cols: Columns, n: int) -> Columns:
        """The label column and, with probA/probB, the probability column."""
        dec = self.decisions(flat(cols, self.inputs, self.width))
        if self.prob_a.size:
            probs = self.probabilities(dec)
            return self.outputs.columns(probs, np.argmax(probs, axis=1))
        votes = np.zeros((len(dec), len(self.outputs.labels)), dtype=np.int64)
        for p, (i, j) in enumerate(self.pairs):
            votes[:, i] += dec[:, p] > 0
            votes[:, j] += dec[:, p] <= 0
        return self.outputs.columns(None, np.argmax(votes, axis=1))


def couple(r: np.ndarray) -> np.ndarray:
    """Libsvm's ``multiclass_probability`` for each ``[K, K]`` pairwise matrix of ``r`` (``[B, K, K]``)."""
    n, k = r.shape[:2]
    q = -np.swapaxes(r, 1, 2) * r
    diag = (r ** 2).sum(axis=1)
    q[:, np.arange(k), np.arange(k)] = diag
    p = np.full((n, k), 1.0 / k)
    eps = 0.005 / k
    active = np.arange(n)
    for _ in range(max(100, k)):
        qa, pa = q[active], p[active]
        qp = np.einsum("bij,bj->bi", qa, pa)
        pqp = (pa * qp).sum(axis=1)
        going = np.abs(qp - pqp[:, None]).max(axis=1) >= eps
        active, qa, pa, qp, pqp = active[going], qa[going], pa[going], qp[going], pqp[going]
        if not active.size:
            break
        for t in range(k):
            diff = (pqp - qp[:, t]) / qa[:, t, t]
            pa[:, t] += diff
            pqp = (pqp + diff * (diff * qa[:, t, t] + 2 * qp[:, t])) / (1 + diff) / (1 + diff)
            qp = (qp + diff[:, None] * qa[:, t, :]) / (1 + diff)[:, None]
            pa /= (1 + diff)[:, None]
        p[active] = pa
    return p
