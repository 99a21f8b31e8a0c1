"""k-nearest-neighbours classifiers (``kNearestNeighborsClassifier``) as a runnable program.

Semantics (Core ML's ``NearestNeighbors.proto``; where Core ML documents nothing, mlupdate's choice):

* Distance: squared Euclidean (the only distance function in the format).
* The k nearest stored samples are used, ``k = min(numberOfNeighbors, number of samples)``. Samples at
  equal distance are ordered by their position in the model (earlier samples first), so the
  ``linear`` and ``kd_tree`` indexes always pick the same neighbours.
* Votes: ``uniform`` gives each neighbour 1; ``inverse_distance`` gives ``1 / distance`` (the squared
  Euclidean distance). When some neighbours are at distance 0, only those vote (1 each).
* Probabilities: each label's share of the votes, for every label stored in the model (0 for labels
  with no neighbour among the k).
* The predicted label has the most votes; a tie goes to the tied label of the nearest neighbour.
* An empty model predicts the default label, with probability ``{default: 1.0}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.spatial import cKDTree
from scipy.spatial.distance import cdist

from mlupdate.errors import FeatureError, SpecError
from mlupdate.features.arrays import check_array
from mlupdate.spec.description import FeatureDescription


class KNNProgram:
    """Predicts with the samples stored in a ``kNearestNeighborsClassifier`` spec.

    Args:
        spec: A ``Model_pb2.Model`` of type ``kNearestNeighborsClassifier``.

    Raises:
        SpecError: If the stored samples, labels, index or weighting are inconsistent.
    """

    def __init__(self, spec: Any) -> None:
        knn = spec.kNearestNeighborsClassifier
        index = knn.nearestNeighborsIndex
        self.spec = spec
        self.dimensions = int(index.numberOfDimensions)
        if self.dimensions <= 0:
            raise SpecError(f"The k-NN index's numberOfDimensions is {self.dimensions}; it must be positive (the "
                            "length of the input vector). Set it to the input's size.")
        self.k = int(knn.numberOfNeighbors.defaultValue)
        if self.k <= 0:
            raise SpecError(f"The k-NN's numberOfNeighbors is {self.k}; set a positive default.")
        self.weighting = knn.WhichOneof("WeightingScheme")
        if self.weighting is None:
            raise SpecError("The k-NN has no weighting scheme; set uniformWeighting or inverseDistanceWeighting.")
        self.index_type = index.WhichOneof("IndexType")
        if self.index_type is None:
            raise SpecError("The k-NN has no index type; set linearIndex or singleKdTreeIndex.")
        which = knn.WhichOneof("ClassLabels")
        self.labels: list[Any] = (list(knn.stringClassLabels.vector) if which == "stringClassLabels"
                                  else [int(v) for v in knn.int64ClassLabels.vector])
        default = knn.WhichOneof("DefaultClassLabel")
        self.default = (knn.defaultStringLabel if default == "defaultStringLabel"
                        else int(knn.defaultInt64Label) if default else None)
        rows = [np.asarray(s.vector, dtype=np.float64) for s in index.floatSamples]
        bad = next((i for i, r in enumerate(rows) if r.size != self.dimensions), None)
        if bad is not None:
            raise SpecError(f"k-NN sample {bad} has {rows[bad].size} values but numberOfDimensions is "
                            f"{self.dimensions}; every sample must have that length.")
        if len(rows) != len(self.labels):
            raise SpecError(f"The k-NN stores {len(rows)} samples but {len(self.labels)} labels; they must match.")
        if not rows and self.default is None:
            raise SpecError("The k-NN is empty and has no default label; set defaultStringLabel or defaultInt64Label.")
        self.samples = np.stack(rows) if rows else np.zeros((0, self.dimensions))
        self.label_ids = {lab: i for i, lab in enumerate(dict.fromkeys(self.labels))}
        self.sample_label = np.asarray([self.label_ids[lab] for lab in self.labels], dtype=np.int64)
        self.tree: cKDTree | None = None
        if self.index_type == "singleKdTreeIndex" and rows:
            leaf = int(index.singleKdTreeIndex.leafSize)
            if leaf <= 0:
                raise SpecError(f"The k-NN's kd-tree leafSize is {leaf}; it must be positive.")
            self.tree = cKDTree(self.samples, leafsize=leaf)
        d = spec.description
        self.input = FeatureDescription.from_proto(d.input[0])
        if self.input.type != "multiArray":
            raise SpecError(f"The k-NN's input '{self.input.name}' is declared a {self.input.type}; a k-NN reads a "
                            f"vector of {self.dimensions} numbers. Declare it as a multiArray of shape "
                            f"[{self.dimensions}].")
        if self.input.type == "multiArray" and self.input.shape and int(np.prod(self.input.shape)) != self.dimensions:
            raise SpecError(f"The k-NN's input '{self.input.name}' declares shape {list(self.input.shape)} but its "
                            f"index has {self.dimensions} dimensions; they must agree. Fix the input's shape.")
        self.label_name = d.predictedFeatureName
        self.probs_name = d.predictedProbabilitiesName

    # -- neighbours ----------------------------------------------------------------------------
    def neighbors(self, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Indices and squared distances of the k nearest samples of each query, nearest first."""
        k = min(self.k, len(self.samples))
        if self.tree is None:
            dist = cdist(queries, self.samples, "sqeuclidean")
            order = np.argsort(dist, axis=1, kind="stable")[:, :k]
            return order, np.take_along_axis(dist, order, axis=1)
        idx_out = np.empty((len(queries), k), dtype=np.int64)
        dist_out = np.empty((len(queries), k))
        radius = self.tree.query(queries, k=k)[0].reshape(len(queries), -1)[:, -1]
        for q, (query, r) in enumerate(zip(queries, radius, strict=True)):
            # Every sample within the k-th distance (a hair wider for rounding), then the linear index's order.
            cand = np.asarray(sorted(self.tree.query_ball_point(query, r * (1 + 1e-9) + 1e-12)), dtype=np.int64)
            dist = cdist(query[None], self.samples[cand], "sqeuclidean")[0]
            order = np.argsort(dist, kind="stable")[:k]
            idx_out[q], dist_out[q] = cand[order], dist[order]
        return idx_out, dist_out

    def vote(self, idx: np.ndarray, dist: np.ndarray) -> tuple[Any, dict[Any, float]]:
        """The label and probabilities of one query from its neighbours (nearest first)."""
        if idx.size == 0:
            return self.default, {self.default: 1.0}
        if self.weighting == "inverseDistanceWeighting":
            zero = dist == 0
            weights = zero.astype(np.float64) if zero.any() else 1.0 / dist
        else:
            weights = np.ones(len(idx))
        labels = self.sample_label[idx]
        totals = np.bincount(labels, weights=weights, minlength=len(self.label_ids))
        best = totals.max()
        winner = next(int(lab) for lab in labels if totals[lab] == best)
        names = list(self.label_ids)
        probs = totals / totals.sum()
        return names[winner], {name: float(p) for name, p in zip(names, probs, strict=True)}

    # -- program interface ---------------------------------------------------------------------
    def encode(self, examples: Sequence[dict[str, Any]]) -> np.ndarray:
        """The query vectors ``[B, dimensions]`` of the examples.

        A k-NN reads its input as a vector: any array of ``dimensions`` values is taken (a network
        stage before it in a pipeline may hand it ``[1, d]``).
        """
        name = self.input.name
        rows = []
        for ex in examples:
            if name not in ex:
                raise FeatureError(f"Missing input '{name}' ({self.input}). Pass a vector of {self.dimensions} values.")
            value = ex[name]
            if isinstance(value, np.ndarray) and value.size == self.dimensions:
                value = value.reshape(self.input.shape or (-1,))
            rows.append(check_array(value, self.input).reshape(-1))
        return np.stack(rows).astype(np.float64)

    def predict_batch(self, examples: Sequence[dict[str, Any]], crop_and_scale: str) -> list[dict[str, Any]]:
        """Predict every example: ``{label_name: label, probs_name: {label: probability}}``."""
        queries = self.encode(examples)
        if not len(self.samples):
            results = [self.vote(np.zeros(0, np.int64), np.zeros(0)) for _ in examples]
        else:
            idx, dist = self.neighbors(queries)
            results = [self.vote(i, d) for i, d in zip(idx, dist, strict=True)]
        out = []
        for label, probs in results:
            res: dict[str, Any] = {self.label_name: label}
            if self.probs_name:
                res[self.probs_name] = probs
            out.append(res)
        return out
