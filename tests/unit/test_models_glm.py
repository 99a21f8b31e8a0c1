"""glmRegressor / glmClassifier against scikit-learn's own predictions of the models coremltools converts."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.svm import LinearSVC, LinearSVR

import mlupdate
from tests.unit._sklearn_coreml import converted, probabilities, rows, write

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")
MODEL_TYPES = ("glmRegressor", "glmClassifier")
REFERENCE = ("scikit-learn predict / predict_proba / decision_function of LinearRegression, Ridge, LinearSVR, "
             "LogisticRegression(ovr), LinearSVC converted by coremltools; the proto's formulas on scikit-learn's "
             "decision values")
RNG = np.random.default_rng(0)
X = RNG.normal(size=(300, 4))
Y3 = np.digitize(X[:, 0] + 0.5 * X[:, 1], [-0.5, 0.6])


@pytest.mark.parametrize("estimator", [LinearRegression(), Ridge(alpha=2.0), LinearSVR(dual="auto")])
def test_regressors_match_sklearn(tmp_path, estimator):
    est = estimator.fit(X, X @ [1.0, -2.0, 0.5, 3.0] + RNG.normal(size=len(X)))
    model = converted(est, "x", "y", tmp_path / "m.mlmodel")
    got = np.array([r["y"] for r in model.predict_batch(rows(X))])
    assert isinstance(model.predict({"x": X[0]})["y"], float)
    np.testing.assert_allclose(got, est.predict(X), rtol=1e-12, atol=1e-12)


def test_named_double_inputs_go_through_a_feature_vectorizer(tmp_path):
    est = LinearRegression().fit(X, X @ [1.0, 2.0, 3.0, 4.0])
    model = converted(est, ["a", "b", "c", "d"], "y", tmp_path / "m.mlmodel")
    assert model.description.model_type == "pipelineRegressor"
    feats = [dict(zip("abcd", map(float, r), strict=True)) for r in X]
    feats[0]["b"] = 2  # a Python int for a double input is fine
    x0 = X.copy()
    x0[0, 1] = 2.0
    got = np.array([r["y"] for r in model.predict_batch(feats)])
    np.testing.assert_allclose(got, est.predict(x0), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("labels", [np.array(["no", "yes"]), np.array([10, 20, 30])])
def test_logistic_regression_ovr_probabilities_and_labels(tmp_path, labels):
    y = labels[(X[:, 0] > 0).astype(int)] if len(labels) == 2 else labels[Y3]
    est = LogisticRegression(multi_class="ovr").fit(X, y)
    model = converted(est, "x", "label", tmp_path / "m.mlmodel")
    res = model.predict_batch(rows(X))
    np.testing.assert_allclose(probabilities(res, est.classes_), est.predict_proba(X), rtol=1e-10, atol=1e-12)
    assert [r["label"] for r in res] == est.predict(X).tolist()
    assert type(res[0]["label"]) is (str if labels.dtype.kind == "U" else int)


@pytest.mark.parametrize("n_classes", [2, 3])
def test_linear_svc_labels_and_ovr_scores(tmp_path, n_classes):
    y = (X[:, 0] > 0).astype(int) if n_classes == 2 else Y3
    est = LinearSVC(dual="auto").fit(X, y)
    model = converted(est, "x", "label", tmp_path / "m.mlmodel")
    res = model.predict_batch(rows(X))
    assert [r["label"] for r in res] == est.predict(X).tolist()
    # GLMClassifier.proto's Logit + OneVsRest on scikit-learn's own decision values.
    dec = est.decision_function(X).reshape(len(X), -1)
    sig = 1 / (1 + np.exp(-dec))
    want = np.c_[1 - sig, sig] if n_classes == 2 else sig / sig.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(probabilities(res, est.classes_), want, rtol=1e-9, atol=1e-12)


def test_reference_class_encoding_is_a_softmax_with_the_first_class_at_zero(tmp_path):
    est = LogisticRegression().fit(X, Y3)  # multinomial: softmax(W x + b)
    spec = converted(LogisticRegression(multi_class="ovr").fit(X, Y3), "x", "label", tmp_path / "a.mlmodel").spec
    glm = spec.glmClassifier
    glm.classEncoding = glm.ReferenceClass
    del glm.weights[:], glm.offset[:]
    for k in (1, 2):  # softmax is unchanged by subtracting the reference class's scores
        glm.weights.add().value.extend(est.coef_[k] - est.coef_[0])
        glm.offset.append(est.intercept_[k] - est.intercept_[0])
    res = write(spec, tmp_path / "b.mlmodel").predict_batch(rows(X))
    np.testing.assert_allclose(probabilities(res, est.classes_), est.predict_proba(X), rtol=1e-9, atol=1e-12)
    assert [r["label"] for r in res] == est.predict(X).tolist()


def test_probit_binary_classifier_and_transformed_regressor(tmp_path):
    y = (X[:, 1] > 0).astype(int)
    est = LogisticRegression(multi_class="ovr").fit(X, y)
    spec = converted(est, "x", "label", tmp_path / "a.mlmodel").spec
    spec.glmClassifier.postEvaluationTransform = spec.glmClassifier.Probit
    res = write(spec, tmp_path / "b.mlmodel").predict_batch(rows(X))
    phi = np.array([0.5 * (1 + math.erf(z / math.sqrt(2))) for z in est.decision_function(X)])
    np.testing.assert_allclose(probabilities(res, [0, 1]), np.c_[1 - phi, phi], rtol=1e-9, atol=1e-12)

    lin = LinearRegression().fit(X, X[:, 0])
    spec = converted(lin, "x", "y", tmp_path / "c.mlmodel").spec
    spec.glmRegressor.postEvaluationTransform = spec.glmRegressor.Logit
    got = [r["y"] for r in write(spec, tmp_path / "d.mlmodel").predict_batch(rows(X))]
    np.testing.assert_allclose(got, 1 / (1 + np.exp(-lin.predict(X))), rtol=1e-12)


def test_multi_output_regressor_returns_a_double_array(tmp_path):
    targets = np.c_[X @ [1.0, 0, 0, 1], X @ [0, 2.0, -1, 0]]
    est = LinearRegression().fit(X, targets)
    spec = converted(LinearRegression().fit(X, targets[:, 0]), "x", "y", tmp_path / "a.mlmodel").spec
    glm = spec.glmRegressor
    del glm.weights[:], glm.offset[:]
    for w, b in zip(est.coef_, est.intercept_, strict=True):
        glm.weights.add().value.extend(w)
        glm.offset.append(b)
    out = spec.description.output[0].type
    out.multiArrayType.shape.append(2)
    out.multiArrayType.dataType = out.multiArrayType.DOUBLE
    got = write(spec, tmp_path / "b.mlmodel").predict_batch(rows(X))
    assert got[0]["y"].dtype == np.float64 and got[0]["y"].shape == (2,)
    np.testing.assert_allclose(np.stack([r["y"] for r in got]), est.predict(X), rtol=1e-12, atol=1e-12)


def _classifier_spec(tmp_path):
    return converted(LogisticRegression(multi_class="ovr").fit(X, Y3), "x", "label", tmp_path / "s.mlmodel").spec


def test_bad_glm_specs_are_spec_errors(tmp_path):
    spec = _classifier_spec(tmp_path)
    spec.glmClassifier.offset.append(1.0)
    with pytest.raises(mlupdate.SpecError, match="offset"):
        write(spec, tmp_path / "a.mlmodel")
    spec = _classifier_spec(tmp_path)
    del spec.glmClassifier.weights[-1], spec.glmClassifier.offset[-1]
    with pytest.raises(mlupdate.SpecError, match="needs 3 weight row"):
        write(spec, tmp_path / "b.mlmodel")
    spec = _classifier_spec(tmp_path)
    spec.glmClassifier.weights[1].value.append(0.0)
    with pytest.raises(mlupdate.SpecError, match="weight rows have lengths"):
        write(spec, tmp_path / "c.mlmodel")
    spec = _classifier_spec(tmp_path)
    spec.glmClassifier.postEvaluationTransform = spec.glmClassifier.Probit
    with pytest.raises(mlupdate.SpecError, match="Probit only for two classes"):
        write(spec, tmp_path / "d.mlmodel")
    spec = _classifier_spec(tmp_path)
    spec.description.input[0].type.multiArrayType.shape[0] = 5
    with pytest.raises(mlupdate.SpecError, match="inputs make vectors of 5"):
        write(spec, tmp_path / "e.mlmodel")
    spec = _classifier_spec(tmp_path)
    spec.description.output[0].type.stringType.SetInParent()
    with pytest.raises(mlupdate.SpecError, match="as int64"):
        write(spec, tmp_path / "f.mlmodel")


def test_bad_inputs_are_feature_errors(tmp_path):
    model = write(_classifier_spec(tmp_path), tmp_path / "m.mlmodel")
    with pytest.raises(mlupdate.FeatureError, match="Missing input 'x'"):
        model.predict({"z": X[0]})
    with pytest.raises(mlupdate.FeatureError, match="shape"):
        model.predict({"x": X[0, :3]})
    with pytest.raises(mlupdate.FeatureError, match="numeric"):
        model.predict({"x": "four numbers"})
    assert model.predict({"x": X[0].reshape(1, 4)})["label"] == model.predict({"x": list(X[0])})["label"]


def test_classifiers_describe_their_class_labels(tmp_path):
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.svm import SVC

    labels = np.array(["low", "mid", "high"])[Y3]
    for est in (LogisticRegression(multi_class="ovr"), SVC(), RandomForestClassifier(3, random_state=0)):
        model = converted(est.fit(X, labels), "x", "label", tmp_path / "m.mlmodel")
        assert model.description.class_labels == list(est.classes_), type(est).__name__


def test_a_glm_marked_updatable_is_refused_by_the_update_task(tmp_path):
    est = LinearRegression().fit(X, X[:, 0])
    spec = converted(est, "x", "y", tmp_path / "m.mlmodel").spec
    spec.isUpdatable = True
    with pytest.raises(mlupdate.NotUpdatableError, match="glmRegressor"):
        mlupdate.UpdateTask(spec, [{"x": X[0], "y": 1.0}])
