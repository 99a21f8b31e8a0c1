"""``Model.predict_arrays``: a batch as one array per input, against scikit-learn and the dictionary path."""

from __future__ import annotations

import numpy as np
import pytest
from coremltools.models import datatypes
from sklearn.ensemble import GradientBoostingRegressor, RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import Normalizer, OneHotEncoder, StandardScaler
from sklearn.svm import SVC

import mlupdate
from tests.unit._sklearn_coreml import converted, probabilities, rows

RNG = np.random.default_rng(3)
X = RNG.normal(size=(400, 5))
Y = X @ RNG.normal(size=5) + 0.1 * RNG.normal(size=400)
CLASSES = np.digitize(Y, np.quantile(Y, [1 / 3, 2 / 3]))


def _check_classifier(model, est, x, labels):
    got = model.predict_arrays({"x": x})
    assert got["y"].tolist() == est.predict(x).tolist()
    np.testing.assert_allclose(got["classProbability"], est.predict_proba(x), rtol=1e-9, atol=1e-12)
    by_rows = model.predict_batch(rows(x))
    np.testing.assert_allclose(probabilities(by_rows, labels), got["classProbability"], rtol=1e-12)


def test_glm_and_pipeline_classifiers_match_sklearn(tmp_path):
    est = LogisticRegression(multi_class="ovr").fit(X, CLASSES)
    _check_classifier(converted(est, "x", "y", tmp_path / "lr.mlmodel"), est, X, [0, 1, 2])
    pipe = make_pipeline(StandardScaler(), LogisticRegression(multi_class="ovr")).fit(X, CLASSES)
    _check_classifier(converted(pipe, "x", "y", tmp_path / "pipe.mlmodel"), pipe, X, [0, 1, 2])


def test_regressors_and_transforms_match_sklearn(tmp_path):
    boosted = GradientBoostingRegressor(random_state=0).fit(X, Y)
    boosted.init_.constant_ = float(np.ravel(boosted.init_.constant_)[0])  # coremltools 9 wants the old scalar
    for i, est in enumerate([LinearRegression().fit(X, Y), boosted]):
        model = converted(est, [("x", datatypes.Array(5))], "y", tmp_path / f"r{i}.mlmodel")
        np.testing.assert_allclose(model.predict_arrays({"x": X})["y"], est.predict(X), rtol=1e-6, atol=1e-6)
    for i, est in enumerate([StandardScaler().fit(X), Normalizer().fit(X)]):
        model = converted(est, [("x", datatypes.Array(5))], "out", tmp_path / f"t{i}.mlmodel")
        np.testing.assert_allclose(model.predict_arrays({"x": X})["out"], est.transform(X), rtol=1e-12)


def test_imputer_replaces_nan_in_a_batch(tmp_path):
    x = X.copy()
    x[RNG.random(size=x.shape) < 0.2] = np.nan
    est = SimpleImputer(strategy="mean").fit(x)
    model = converted(est, [("x", datatypes.Array(5))], "out", tmp_path / "imp.mlmodel")
    np.testing.assert_allclose(model.predict_arrays({"x": x})["out"], est.transform(x), rtol=1e-12)
    np.testing.assert_allclose(np.stack([r["out"] for r in model.predict_batch(rows(x))]), est.transform(x))


def test_forest_and_svm_labels_match_sklearn(tmp_path):
    forest = RandomForestClassifier(10, max_depth=5, random_state=0).fit(X, CLASSES)
    model = converted(forest, "x", "y", tmp_path / "rf.mlmodel")
    assert model.predict_arrays({"x": X})["y"].tolist() == forest.predict(X.astype(np.float32)).tolist()
    svc = SVC().fit(X, CLASSES)
    model = converted(svc, "x", "y", tmp_path / "svc.mlmodel")
    assert model.predict_arrays({"x": X})["y"].tolist() == svc.predict(X).tolist()


def test_sparse_one_hot_pipeline_matches_sklearn(tmp_path):
    cats = np.c_[(X[:, :2] > 0), np.digitize(X[:, 2], [-1, 0, 1])].astype(np.float64)
    est = OneHotEncoder().fit(cats)
    model = converted(est, [("x", datatypes.Array(3))], "out", tmp_path / "ohe.mlmodel")
    np.testing.assert_array_equal(model.predict_arrays({"x": cats})["out"].reshape(len(cats), -1),
                                  est.transform(cats).toarray())


def test_bad_batches_are_feature_errors(tmp_path):
    model = converted(LinearRegression().fit(X, Y), "x", "y", tmp_path / "lr.mlmodel")
    with pytest.raises(mlupdate.FeatureError, match="Missing input 'x'"):
        model.predict_arrays({"z": X})
    with pytest.raises(mlupdate.FeatureError, match=r"examples of shape \[4\]"):
        model.predict_arrays({"x": X[:, :4]})
    with pytest.raises(mlupdate.FeatureError, match="numeric"):
        model.predict_arrays({"x": np.array([["a"] * 5])})
    with pytest.raises(mlupdate.FeatureError, match="examples axis"):
        model.predict_arrays({"x": np.float64(1.0)})
    with pytest.raises(mlupdate.FeatureError, match="dict"):
        model.predict_arrays([{"x": X[0]}])


def test_networks_stack_their_per_example_results(tmp_path):
    from coremltools.models.neural_network import NeuralNetworkBuilder

    w = RNG.normal(size=(3, 5))
    builder = NeuralNetworkBuilder([("x", datatypes.Array(5))], [("y", datatypes.Array(3))],
                                   disable_rank5_shape_mapping=True)
    builder.add_inner_product("fc", w, None, 5, 3, False, "x", "y")
    path = tmp_path / "nn.mlmodel"
    path.write_bytes(builder.spec.SerializeToString())
    got = mlupdate.load(path).predict_arrays({"x": X[:7].astype(np.float32)})["y"]
    np.testing.assert_allclose(got.reshape(7, 3), X[:7] @ w.T, rtol=1e-4, atol=1e-5)
