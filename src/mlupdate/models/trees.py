"""Tree ensembles (``treeEnsembleRegressor``, ``treeEnsembleClassifier``) as runnable programs.

Semantics (Core ML's ``TreeEnsemble.proto`` and the checks of its tree builder,
``TreeEnsembleCommon.cpp``; where Core ML documents nothing, mlupdate's choice, marked *choice*):

* The inputs (double, int64, multiarray) are concatenated in declared order into ``x``.
* Each tree is walked from its root (the one node no other node points to). A branch node compares
  ``x[branchFeatureIndex]`` with ``branchFeatureValue`` by its mode (``<=``, ``<``, ``>=``, ``>``, ``==``,
  ``!=``) and goes to the true child when the comparison holds. A missing value (NaN) goes to the true
  child when ``missingValueTracksTrueChild`` is set and to the false child otherwise, whatever the mode.
* The leaf reached adds each of its ``(evaluationIndex, evaluationValue)`` pairs to a score vector of
  ``numPredictionDimensions`` values, which starts at ``basePredictionValue`` (zeros when empty).
* Post-evaluation transform: none; ``Classification_SoftMax`` (softmax over the scores);
  ``Regression_Logistic`` (the logistic function of each score); ``..._SoftMaxWithZeroClassReference``
  (softmax over ``[0, scores]``), which fits only a two-class classifier with one score and is refused
  otherwise (Core ML documents no other use).
* Regressor: the transformed scores, as a double (one dimension) or a multiarray.
* Classifier, one dimension and two classes (the binary case): ``P(labels[1])`` is the transformed
  score, ``P(labels[0]) = 1 - P(labels[1])``; ``labels[1]`` wins when ``P(labels[1]) >= 0.5``
  (coremltools' converter moves scikit-learn's 0.5 leaves down by 1e-7 to get ``labels[0]``).
  K dimensions and K classes: the transformed scores are the probabilities and the largest wins (the
  first on a tie). Without a transform these "probabilities" are the raw sums, as in Core ML (a
  converted random forest of n trees gives n times scikit-learn's probabilities).
* Without class labels, the classes are the integers ``0, 1`` (one dimension) or ``0 .. K-1``.
"""

from __future__ import annotations

import operator
from typing import Any

import numpy as np
from scipy.special import softmax

from mlupdate.errors import FeatureError, SpecError, UnsupportedModelError
from mlupdate.models.columns import ClassifierOutputs, ColumnProgram, Columns, flat, output_column
from mlupdate.models.values import logistic, regressor_output, vector_inputs, within_limit

_LEAF = 6
_COMPARE = (np.less_equal, np.less, np.greater_equal, np.greater, np.equal, np.not_equal)
_PY_COMPARE = (operator.le, operator.lt, operator.ge, operator.gt, operator.eq, operator.ne)
_CHUNK = 1 << 16  # (row, tree) walks per array pass
_WALK = 8  # up to this many (row, tree) walks a batch walks in Python rather than in array steps


class Ensemble:
    """The trees of a ``TreeEnsembleParameters`` message, as flat node arrays walked for all rows at once.

    Args:
        params: The ``TreeEnsembleParameters`` message.
        kind: The model type, for messages.
        width: The length of the input vector, when the inputs declare it.

    Raises:
        SpecError: For the problems Core ML's tree builder reports (duplicate or missing nodes, a node
            with two parents, trees with several roots or cycles, bad leaves, wrong base values).
    """

    def __init__(self, params: Any, kind: str, width: int | None) -> None:
        self.dims = int(params.numPredictionDimensions)
        if self.dims <= 0:
            raise SpecError(f"The {kind}'s numPredictionDimensions is 0; set it to the number of outputs (regressor) "
                            "or of classes (1 for a binary classifier).")
        nodes = list(params.nodes)
        if not nodes:
            raise SpecError(f"The {kind} has no tree nodes; add at least one tree.")
        index: dict[tuple[int, int], int] = {}
        for i, n in enumerate(nodes):
            key = (int(n.treeId), int(n.nodeId))
            if key in index:
                raise SpecError(f"{kind}: tree node (treeId={key[0]}, nodeId={key[1]}) appears twice; give each node "
                                "of a tree its own nodeId.")
            index[key] = i
        count = len(nodes)
        within_limit(count * self.dims, f"The {kind}'s {count} nodes x numPredictionDimensions {self.dims}")
        self.leaf = np.asarray([n.nodeBehavior == _LEAF for n in nodes])
        self.mode = np.asarray([n.nodeBehavior if n.nodeBehavior != _LEAF else 0 for n in nodes], dtype=np.int64)
        if self.mode.max() >= len(_COMPARE):
            raise SpecError(f"{kind}: a tree node has nodeBehavior {int(self.mode.max())}, which is no branch mode or "
                            "LeafNode.")
        self.feature = np.asarray([0 if n.nodeBehavior == _LEAF else min(n.branchFeatureIndex, 2**62) for n in nodes])
        self.threshold = np.asarray([n.branchFeatureValue for n in nodes], dtype=np.float64)
        self.missing_true = np.asarray([n.missingValueTracksTrueChild for n in nodes])
        self.children = np.tile(np.arange(count), (2, 1))  # [true, false] child of each node; leaves: themselves
        parent = np.full(count, -1)
        self.values = np.zeros((count, self.dims))
        for i, n in enumerate(nodes):
            where = f"{kind}: tree node (treeId={n.treeId}, nodeId={n.nodeId})"
            if self.leaf[i]:
                self._leaf_values(i, n, where)
                continue
            for side, child in enumerate((n.trueChildNodeId, n.falseChildNodeId)):
                name = ("true", "false")[side]
                c = index.get((int(n.treeId), int(child)))
                if c is None:
                    raise SpecError(f"{where} points to {name} child nodeId={child}, which the tree does not declare. "
                                    "Add the node or fix the child id.")
                if c == i or parent[c] >= 0:
                    raise SpecError(f"{where}: its {name} child nodeId={child} is " + (
                        "the node itself." if c == i else "already the child of another node.")
                        + " Each node has at most one parent.")
                parent[c], self.children[side, i] = i, c
        self.roots = np.flatnonzero(parent < 0)
        trees = [int(nodes[r].treeId) for r in self.roots]
        if len(set(trees)) != len(trees):
            dup = next(t for t in trees if trees.count(t) > 1)
            raise SpecError(f"{kind}: tree treeId={dup} has several root nodes (nodes no other node points to); "
                            "connect them into one tree.")
        self.depth = self._depth(kind, count)
        if width is not None and (self.feature >= width).any():
            raise SpecError(f"{kind}: a branch reads feature {int(self.feature.max())}, but the inputs make vectors "
                            f"of {width} values. Fix branchFeatureIndex or the input shapes.")
        base = list(params.basePredictionValue)
        if base and len(base) != self.dims:
            raise SpecError(f"The {kind} has {len(base)} basePredictionValue values but numPredictionDimensions is "
                            f"{self.dims}; give one per dimension (or none for zeros).")
        self.base = np.asarray(base or [0.0] * self.dims, dtype=np.float64)
        self.modes = sorted(set(self.mode[~self.leaf].tolist())) or [0]
        self.next = self.children.T.reshape(-1)  # node n's true child at 2n, its false child at 2n + 1
        self.leaf_list, self.feature_list = self.leaf.tolist(), self.feature.tolist()
        self.threshold_list, self.mode_list = self.threshold.tolist(), self.mode.tolist()
        self.missing_list, self.next_list, self.roots_list = (self.missing_true.tolist(), self.next.tolist(),
                                                              self.roots.tolist())

    def _leaf_values(self, i: int, node: Any, where: str) -> None:
        if not node.evaluationInfo:
            raise SpecError(f"{where} is a leaf with no evaluation values; add evaluationInfo.")
        seen: set[int] = set()
        for info in node.evaluationInfo:
            d = int(info.evaluationIndex)
            if d >= self.dims:
                raise SpecError(f"{where} adds to dimension {d}, but numPredictionDimensions is {self.dims}.")
            if d in seen:
                raise SpecError(f"{where} gives dimension {d} more than one evaluation value.")
            seen.add(d)
            self.values[i, d] = info.evaluationValue

    def _depth(self, kind: str, count: int) -> int:
        """The longest root-to-leaf path; every node must hang from a root (no cycles)."""
        level, seen, depth = self.roots, len(self.roots), 0
        while True:
            branches = level[~self.leaf[level]]
            if not branches.size:
                break
            level = self.children[:, branches].reshape(-1)
            seen, depth = seen + level.size, depth + 1
        if seen != count:
            raise SpecError(f"{kind}: {count - seen} tree node(s) are not connected to a root (the trees have a "
                            "cycle). Fix the child ids.")
        return depth

    def scores(self, x: np.ndarray) -> np.ndarray:
        """``[B, dims]`` raw scores (base plus the leaves reached in every tree) of the rows of ``x``."""
        if (self.feature >= x.shape[1]).any():
            raise FeatureError(f"The tree ensemble reads feature {int(self.feature.max())}, but the inputs gave "
                               f"{x.shape[1]} values. Pass inputs of the declared shapes.")
        if len(x) * len(self.roots) <= _WALK:
            return np.stack([self._walk(row) for row in x.tolist()])
        x = np.ascontiguousarray(x, dtype=np.float64)
        nan = bool(np.isnan(x).any())
        step = max(1, _CHUNK // len(self.roots))  # rows per pass, so a pass's node arrays stay in cache
        return np.concatenate([self._steps(x[i:i + step], nan) for i in range(0, len(x), step)])

    def _steps(self, x: np.ndarray, nan: bool) -> np.ndarray:
        """Every tree walked for the rows of ``x`` in array steps, one level at a time."""
        rows, width = x.shape
        flat = x.reshape(-1)
        offsets = (np.arange(rows, dtype=np.int64) * width)[:, None]
        cur = np.broadcast_to(self.roots, (rows, len(self.roots)))
        for _ in range(self.depth):
            value = flat[offsets + self.feature[cur]]
            if len(self.modes) == 1:
                holds = _COMPARE[self.modes[0]](value, self.threshold[cur])
            else:
                threshold, mode = self.threshold[cur], self.mode[cur]
                holds = np.zeros(cur.shape, dtype=bool)
                for m in self.modes:
                    holds |= (mode == m) & _COMPARE[m](value, threshold)
            if nan:
                holds = np.where(np.isnan(value), self.missing_true[cur], holds)
            cur = self.next[2 * cur + ~holds]
        if self.dims == 1:
            return self.base + self.values[:, 0][cur].sum(axis=1, keepdims=True)
        return self.base + self.values[cur].sum(axis=1)

    def _walk(self, row: list[float]) -> np.ndarray:
        """One row through every tree in Python (faster than array steps for a handful of walks)."""
        out = self.base.copy()
        leaf, feature, threshold, mode = self.leaf_list, self.feature_list, self.threshold_list, self.mode_list
        missing, nxt = self.missing_list, self.next_list
        for node in self.roots_list:
            while not leaf[node]:
                v = row[feature[node]]
                holds = missing[node] if v != v else _PY_COMPARE[mode[node]](v, threshold[node])
                node = nxt[2 * node + (not holds)]
            out += self.values[node]
        return out


def _transform(scores: np.ndarray, which: int) -> np.ndarray:
    if which == 1:
        return softmax(scores, axis=1)
    if which == 2:
        return logistic(scores)
    if which == 3:
        return softmax(np.concatenate([np.zeros((len(scores), 1)), scores], axis=1), axis=1)[:, 1:]
    return scores


def _check_transform(which: int, kind: str, binary: bool) -> None:
    if which not in (0, 1, 2, 3):
        raise SpecError(f"The {kind}'s postEvaluationTransform is {which}, which TreeEnsemble.proto does not define.")
    if which == 3 and not binary:
        raise UnsupportedModelError(f"The {kind} uses Classification_SoftMaxWithZeroClassReference with more than one "
                                    "score; Core ML documents it only for a two-class classifier with one score. Use "
                                    "Classification_SoftMax.")


class TreeEnsembleRegressorProgram(ColumnProgram):
    """Predicts with a ``treeEnsembleRegressor`` spec.

    Args:
        spec: A ``Model_pb2.Model`` of type ``treeEnsembleRegressor``.

    Raises:
        SpecError: If the trees or the interface are inconsistent.
    """

    def __init__(self, spec: Any) -> None:
        msg = spec.treeEnsembleRegressor
        self.inputs, self.width = vector_inputs(spec, "treeEnsembleRegressor")
        self.trees = Ensemble(msg.treeEnsemble, "treeEnsembleRegressor", self.width)
        self.transform = int(msg.postEvaluationTransform)
        _check_transform(self.transform, "treeEnsembleRegressor", False)
        self.output = regressor_output(spec, "treeEnsembleRegressor", self.trees.dims)

    def compute(self, cols: Columns, n: int) -> Columns:
        """The prediction column: ``{output: values}``."""
        y = _transform(self.trees.scores(flat(cols, self.inputs, self.width)), self.transform)
        return {self.output.name: output_column(y, self.output)}


class TreeEnsembleClassifierProgram(ColumnProgram):
    """Predicts with a ``treeEnsembleClassifier`` spec.

    Args:
        spec: A ``Model_pb2.Model`` of type ``treeEnsembleClassifier``.

    Raises:
        SpecError: If the trees, the class count or the interface are inconsistent.
    """

    def __init__(self, spec: Any) -> None:
        msg = spec.treeEnsembleClassifier
        kind = "treeEnsembleClassifier"
        self.inputs, self.width = vector_inputs(spec, kind)
        self.trees = Ensemble(msg.treeEnsemble, kind, self.width)
        dims = self.trees.dims
        which = msg.WhichOneof("ClassLabels")
        labels: list[Any] = (list(msg.stringClassLabels.vector) if which == "stringClassLabels"
                             else [int(v) for v in msg.int64ClassLabels.vector] if which
                             else list(range(2 if dims == 1 else dims)))
        if not ((dims == 1 and len(labels) == 2) or (dims >= 2 and len(labels) == dims)):
            raise SpecError(f"The {kind} has {dims} prediction dimension(s) but {len(labels)} class labels; use one "
                            "dimension for two classes, or one dimension per class.")
        self.transform = int(msg.postEvaluationTransform)
        _check_transform(self.transform, kind, dims == 1)
        self.outputs = ClassifierOutputs(spec, kind, labels)

    def compute(self, cols: Columns, n: int) -> Columns:
        """The label and probability columns."""
        probs = _transform(self.trees.scores(flat(cols, self.inputs, self.width)), self.transform)
        if probs.shape[1] == 1:
            probs = np.concatenate([1.0 - probs, probs], axis=1)
            return self.outputs.columns(probs, (probs[:, 1] >= 0.5).astype(int))
        return self.outputs.columns(probs, np.argmax(probs, axis=1))
