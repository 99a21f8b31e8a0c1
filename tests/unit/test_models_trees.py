"""Tree ensembles against scikit-learn, and built trees against a walker written from the proto."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from sklearn.ensemble import (
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

import mlupdate
from tests.unit._sklearn_coreml import converted, probabilities, rows, tree_model, write

MODEL_TYPES = ("treeEnsembleRegressor", "treeEnsembleClassifier")
REFERENCE = ("scikit-learn predict / predict_proba of decision trees, random forests and gradient boosting "
             "converted by coremltools; a per-row tree walker written from TreeEnsemble.proto for built trees")
RNG = np.random.default_rng(2)
# scikit-learn's trees compare float32 inputs; float32-exact data makes Core ML's double compare agree.
X = RNG.normal(size=(400, 5)).astype(np.float32).astype(np.float64)
Y2 = (X[:, 0] + X[:, 1] ** 2 > 0.8).astype(int)
Y3 = np.digitize(X[:, 2] + 0.5 * X[:, 0], [-0.5, 0.5])
TARGET = np.sin(X[:, 0]) + X[:, 1] * X[:, 2]


@pytest.mark.parametrize("est", [DecisionTreeRegressor(max_depth=6), RandomForestRegressor(n_estimators=7, max_depth=5),
                                 GradientBoostingRegressor(n_estimators=20, max_depth=3)], ids=type)
def test_regressors_match_sklearn(tmp_path, est):
    est.fit(X, TARGET)
    if isinstance(est, GradientBoostingRegressor):  # coremltools 9 needs the scikit-learn < 1.x scalar here
        est.init_.constant_ = float(np.ravel(est.init_.constant_)[0])
    model = converted(est, "x", "y", tmp_path / "m.mlmodel")
    got = np.array([r["y"] for r in model.predict_batch(rows(X))])
    np.testing.assert_allclose(got, est.predict(X), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("y", [Y2, Y3], ids=["binary", "3 classes"])
@pytest.mark.parametrize("est", [DecisionTreeClassifier(max_depth=5), GradientBoostingClassifier(n_estimators=15)],
                         ids=type)
def test_classifiers_match_sklearn(tmp_path, monkeypatch, est, y):
    from coremltools.converters.sklearn import _tree_ensemble

    convert_value = _tree_ensemble._get_value

    def scalar_value(*args, **kwargs):  # coremltools 9 calls float() on a 1-element array, which numpy 2 refuses
        value = convert_value(*args, **kwargs)
        return {k: float(np.ravel(v)[0]) for k, v in value.items()} if isinstance(value, dict) else value

    monkeypatch.setattr(_tree_ensemble, "_get_value", scalar_value)
    est.fit(X, y)
    model = converted(est, "x", "label", tmp_path / "m.mlmodel")
    res = model.predict_batch(rows(X))
    assert [r["label"] for r in res] == est.predict(X).tolist()
    # coremltools moves a decision tree's 0.5 leaves to 0.5 - 1e-7, hence the tolerance.
    np.testing.assert_allclose(probabilities(res, est.classes_), est.predict_proba(X), atol=2e-7)


def test_random_forest_classifier_scores_are_sums_over_trees(tmp_path):
    est = RandomForestClassifier(n_estimators=9, max_depth=4, random_state=0).fit(X, Y3)
    model = converted(est, "x", "label", tmp_path / "m.mlmodel")
    res = model.predict_batch(rows(X))
    # Core ML applies no transform: the converter's per-tree probabilities are summed (apple/coremltools#1541).
    np.testing.assert_allclose(probabilities(res, est.classes_), 9 * est.predict_proba(X), atol=1e-9)
    assert [r["label"] for r in res] == est.predict(X).tolist()
    binary = RandomForestClassifier(n_estimators=9, max_depth=4, random_state=0).fit(X, Y2)
    res = converted(binary, "x", "label", tmp_path / "b.mlmodel").predict_batch(rows(X))
    np.testing.assert_allclose(probabilities(res, [0, 1]), binary.predict_proba(X), atol=2e-7)


# -- built trees, against a walker written from TreeEnsemble.proto's comments -------------------------
OPS = {"BranchOnValueLessThanEqual": lambda a, b: a <= b, "BranchOnValueLessThan": lambda a, b: a < b,
       "BranchOnValueGreaterThanEqual": lambda a, b: a >= b, "BranchOnValueGreaterThan": lambda a, b: a > b,
       "BranchOnValueEqual": lambda a, b: a == b, "BranchOnValueNotEqual": lambda a, b: a != b}


def _random_trees(builder, n_trees, dims, rng):
    """Random trees in the builder; returns {(tree, node): ("branch", feature, value, mode, true, false, missing)
    or ("leaf", {dimension: value})}."""
    table = {}
    for tree in range(n_trees):
        next_id = [1]

        def grow(node, depth, tree=tree, next_id=next_id):
            if depth == 0 or rng.random() < 0.2:
                values = {int(d): float(rng.normal()) for d in rng.choice(dims, size=rng.integers(1, dims + 1),
                                                                          replace=False)}
                builder.add_leaf_node(tree, node, values if dims > 1 else values[0])
                table[tree, node] = ("leaf", values)
                return
            t, f = next_id[0], next_id[0] + 1
            next_id[0] += 2
            feat, mode = int(rng.integers(0, 4)), str(rng.choice(list(OPS)))
            value = float(rng.integers(-1, 2)) if "Equal" in mode and rng.random() < 0.5 else float(rng.normal())
            missing = bool(rng.random() < 0.5)
            builder.add_branch_node(tree, node, feat, value, mode, t, f, missing_value_tracks_true_child=missing)
            table[tree, node] = ("branch", feat, value, mode, t, f, missing)
            grow(t, depth - 1)
            grow(f, depth - 1)

        grow(0, 5)
    return table


def _walk(table, x, n_trees, base):
    score = np.array(base, dtype=np.float64)
    for tree in range(n_trees):
        node = table[tree, 0]
        while node[0] == "branch":
            _, feat, value, mode, t, f, missing = node
            goes_true = missing if math.isnan(x[feat]) else OPS[mode](x[feat], value)
            node = table[tree, t if goes_true else f]
        for d, v in node[1].items():
            score[d] += v
    return score


def _inputs(rng, n):
    x = rng.normal(size=(n, 4))
    x[rng.random(size=x.shape) < 0.15] = np.nan
    pick = rng.random(size=x.shape) < 0.25
    x[pick] = rng.integers(-1, 2, size=pick.sum())  # hit the == / != thresholds
    return x


def test_branch_modes_missing_values_and_multi_dimension_leaves(tmp_path):
    rng = np.random.default_rng(7)
    builder = tree_model("regressor", 4, dims=3)
    table = _random_trees(builder, 6, 3, rng)
    base = [0.5, -1.0, 2.0]
    builder.set_default_prediction_value(base)
    x = _inputs(rng, 300)
    got = np.stack([r["y"] for r in write(builder.spec, tmp_path / "m.mlmodel").predict_batch(rows(x))])
    np.testing.assert_allclose(got, [_walk(table, r, 6, base) for r in x], rtol=1e-12, atol=1e-12)


def test_one_row_walk_and_column_arrays_agree_with_the_reference(tmp_path):
    """A row at a time takes the Python walk, a batch the array steps, predict_arrays the columns: same trees."""
    rng = np.random.default_rng(7)
    builder = tree_model("regressor", 4, dims=3)
    table = _random_trees(builder, 4, 3, rng)
    assert sum(node[0] == "branch" for node in table.values()) > 10
    builder.set_default_prediction_value([0.25, 0.0, -1.5])
    model = write(builder.spec, tmp_path / "m.mlmodel")
    x = _inputs(rng, 60)
    want = [_walk(table, r, 4, [0.25, 0.0, -1.5]) for r in x]
    one_by_one = np.stack([model.predict({"x": r})["y"] for r in x])
    np.testing.assert_allclose(one_by_one, want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(model.predict_arrays({"x": x})["y"], want, rtol=1e-12, atol=1e-12)


def test_classifier_transforms(tmp_path):
    rng = np.random.default_rng(8)
    x = _inputs(rng, 200)
    multi = tree_model("classifier", 4, labels=["a", "b", "c"])
    multi.set_default_prediction_value([0.0] * 3)
    table = _random_trees(multi, 4, 3, rng)
    multi.set_post_evaluation_transform("Classification_SoftMax")
    res = write(multi.spec, tmp_path / "a.mlmodel").predict_batch(rows(x))
    raw = np.stack([_walk(table, r, 4, [0, 0, 0]) for r in x])
    soft = np.exp(raw) / np.exp(raw).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(probabilities(res, "abc"), soft, rtol=1e-12)
    assert [r["label"] for r in res] == ["abc"[i] for i in soft.argmax(axis=1)]
    for transform in ("Regression_Logistic", "Classification_SoftMaxWithZeroClassReference"):
        binary = tree_model("classifier", 4, labels=[3, 4])
        binary.set_default_prediction_value([0.0])
        table = _random_trees(binary, 3, 1, rng)
        binary.set_post_evaluation_transform(transform)
        res = write(binary.spec, tmp_path / "b.mlmodel").predict_batch(rows(x))
        p1 = 1 / (1 + np.exp(-np.array([_walk(table, r, 3, [0])[0] for r in x])))
        np.testing.assert_allclose(probabilities(res, [3, 4]), np.c_[1 - p1, p1], rtol=1e-12)
        assert [r["label"] for r in res] == np.where(p1 >= 0.5, 4, 3).tolist()


def test_ten_thousand_rows_are_fast(tmp_path):
    est = RandomForestRegressor(n_estimators=100, max_depth=10, random_state=0).fit(X, TARGET)
    model = converted(est, "x", "y", tmp_path / "m.mlmodel")
    big = RNG.normal(size=(10_000, 5))
    start = time.perf_counter()
    got = np.array([r["y"] for r in model.predict_batch(rows(big))])
    assert time.perf_counter() - start < 10
    np.testing.assert_allclose(got[:50], est.predict(big[:50].astype(np.float32)), rtol=1e-6, atol=1e-6)


def _stump(dims=1):
    builder = tree_model("regressor", 4, dims=dims)
    builder.set_default_prediction_value([0.0] * dims)
    builder.add_branch_node(0, 0, 1, 0.0, "BranchOnValueLessThanEqual", 1, 2)
    builder.add_leaf_node(0, 1, 1.0)
    builder.add_leaf_node(0, 2, 2.0)
    return builder.spec


@pytest.mark.parametrize("breaks, match", [
    (lambda t: setattr(t.nodes[0], "falseChildNodeId", 9), "nodeId=9, which the tree does not declare"),
    (lambda t: t.nodes.append(t.nodes[1]), "appears twice"),
    (lambda t: setattr(t.nodes[0], "trueChildNodeId", 2), "already the child"),
    (lambda t: setattr(t.nodes[0], "trueChildNodeId", 0), "the node itself"),
    (lambda t: t.nodes.add(treeId=0, nodeId=5, nodeBehavior=6).evaluationInfo.add(evaluationValue=1), "root"),
    (lambda t: t.nodes[1].ClearField("evaluationInfo"), "no evaluation values"),
    (lambda t: setattr(t.nodes[1].evaluationInfo[0], "evaluationIndex", 1), "dimension 1"),
    (lambda t: t.nodes[1].evaluationInfo.add(evaluationIndex=0), "more than one evaluation value"),
    (lambda t: t.basePredictionValue.extend([1.0, 2.0]), "basePredictionValue"),
    (lambda t: setattr(t, "numPredictionDimensions", 0), "numPredictionDimensions is 0"),
    (lambda t: setattr(t.nodes[0], "branchFeatureIndex", 4), "reads feature 4"),
    (lambda t: setattr(t.nodes[0], "nodeBehavior", 9), "nodeBehavior 9"),
])
def test_bad_trees_are_spec_errors(tmp_path, breaks, match):
    spec = _stump()
    breaks(spec.treeEnsembleRegressor.treeEnsemble)
    with pytest.raises(mlupdate.SpecError, match=match):
        write(spec, tmp_path / "bad.mlmodel")


def test_cycles_and_class_counts(tmp_path):
    spec = _stump()
    nodes = spec.treeEnsembleRegressor.treeEnsemble.nodes
    nodes.add(treeId=1, nodeId=0, nodeBehavior=0, trueChildNodeId=1, falseChildNodeId=2)
    nodes.add(treeId=1, nodeId=1, nodeBehavior=0, trueChildNodeId=0, falseChildNodeId=3)
    for node_id in (2, 3):
        nodes.add(treeId=1, nodeId=node_id, nodeBehavior=6).evaluationInfo.add(evaluationValue=1.0)
    with pytest.raises(mlupdate.SpecError, match="not connected to a root"):
        write(spec, tmp_path / "a.mlmodel")
    clf = tree_model("classifier", 4, labels=["a", "b", "c"])
    clf.set_default_prediction_value([0.0] * 2)
    clf.add_leaf_node(0, 0, {0: 1.0})
    with pytest.raises(mlupdate.SpecError, match="2 prediction dimension"):
        write(clf.spec, tmp_path / "b.mlmodel")
    clf.set_post_evaluation_transform("Classification_SoftMaxWithZeroClassReference")
    clf.spec.treeEnsembleClassifier.treeEnsemble.numPredictionDimensions = 3
    clf.spec.treeEnsembleClassifier.treeEnsemble.basePredictionValue.append(0.0)
    with pytest.raises(mlupdate.UnsupportedModelError, match="ZeroClassReference"):
        write(clf.spec, tmp_path / "c.mlmodel")
