"""supportVectorClassifier / supportVectorRegressor against scikit-learn's libsvm on converted models."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.svm import SVC, SVR, NuSVC, NuSVR

import mlupdate
from tests.unit._sklearn_coreml import converted, probabilities, rows, write

MODEL_TYPES = ("supportVectorRegressor", "supportVectorClassifier")
REFERENCE = ("scikit-learn (libsvm) predict / predict_proba of SVC, NuSVC, SVR, NuSVR converted by coremltools; "
             "Platt scaling of scikit-learn's decision values")
RNG = np.random.default_rng(1)
X = RNG.normal(size=(160, 3))
Y3 = np.digitize(X[:, 0] - 0.7 * X[:, 2], [-0.4, 0.5])
KERNELS = [dict(kernel="linear"), dict(kernel="rbf", gamma=0.7), dict(kernel="poly", degree=3, coef0=1.0),
           dict(kernel="sigmoid", gamma=0.2, coef0=0.1)]


@pytest.mark.parametrize("params", KERNELS, ids=lambda p: p["kernel"])
@pytest.mark.parametrize("n_classes", [2, 3])
def test_svc_labels_match_sklearn_predict(tmp_path, params, n_classes):
    y = np.array(["b", "a"])[(X[:, 1] > 0).astype(int)] if n_classes == 2 else np.array([5, 7, 9])[Y3]
    est = SVC(**params).fit(X, y)
    model = converted(est, "x", "label", tmp_path / "m.mlmodel")
    assert "classProbability" not in model.description.outputs
    got = [r["label"] for r in model.predict_batch(rows(X))]
    assert got == est.predict(X).tolist()


@pytest.mark.parametrize("params", KERNELS, ids=lambda p: p["kernel"])
def test_svr_and_nusvr_match_sklearn(tmp_path, params):
    target = np.sin(X[:, 0]) + X[:, 1] ** 2
    for est in (SVR(**params).fit(X, target), NuSVR(nu=0.4, **params).fit(X, target)):
        model = converted(est, "x", "y", tmp_path / "m.mlmodel")
        got = np.array([r["y"] for r in model.predict_batch(rows(X))])
        np.testing.assert_allclose(got, est.predict(X), rtol=1e-9, atol=1e-9)


def test_nusvc_multiclass_labels(tmp_path):
    est = NuSVC(nu=0.3, kernel="rbf", gamma=0.5).fit(X, Y3)
    model = converted(est, "x", "label", tmp_path / "m.mlmodel")
    assert [r["label"] for r in model.predict_batch(rows(X))] == est.predict(X).tolist()


@pytest.mark.parametrize("params", KERNELS[:2], ids=lambda p: p["kernel"])
def test_multiclass_probabilities_are_libsvm_pairwise_coupling(tmp_path, params):
    est = SVC(probability=True, random_state=0, **params).fit(X, Y3)
    model = converted(est, "x", "label", tmp_path / "m.mlmodel")
    res = model.predict_batch(rows(X))
    want = est.predict_proba(X)
    np.testing.assert_allclose(probabilities(res, est.classes_), want, atol=1e-9)
    assert [r["label"] for r in res] == est.classes_[want.argmax(axis=1)].tolist()


def test_binary_probabilities_are_platt_scaling_of_the_decision_value(tmp_path):
    y = (X[:, 1] + 0.3 * RNG.normal(size=len(X)) > 0).astype(int)
    est = SVC(probability=True, random_state=0, kernel="rbf").fit(X, y)
    model = converted(est, "x", "label", tmp_path / "m.mlmodel")
    got = probabilities(model.predict_batch(rows(X)), [0, 1])
    # libsvm's decision value for the pair (class 0, class 1) is minus scikit-learn's binary decision_function.
    dec = -est.decision_function(X)
    p0 = np.clip(1 / (1 + np.exp(est.probA_[0] * dec + est.probB_[0])), 1e-7, 1 - 1e-7)
    np.testing.assert_allclose(got, np.c_[p0, 1 - p0], atol=1e-12)
    # scikit-learn couples even two classes: it agrees to within half a percent (coremltools' own bound).
    np.testing.assert_allclose(got, est.predict_proba(X), atol=5e-3)


def test_sparse_support_vectors_predict_like_dense(tmp_path):
    xs = np.where(np.abs(X) < 0.5, 0.0, X)
    est = SVC(kernel="rbf", gamma=0.5).fit(xs, Y3)
    spec = converted(est, "x", "label", tmp_path / "a.mlmodel").spec
    svc = spec.supportVectorClassifier
    dense = [list(v.values) for v in svc.denseSupportVectors.vectors]
    for row in dense:
        vec = svc.sparseSupportVectors.vectors.add()
        for i, value in enumerate(row):
            if value != 0:
                vec.nodes.add(index=i + 1, value=value)
    got = [r["label"] for r in write(spec, tmp_path / "b.mlmodel").predict_batch(rows(xs))]
    assert got == est.predict(xs).tolist()


def _spec(tmp_path, probability=False):
    est = SVC(kernel="rbf", probability=probability, random_state=0).fit(X, Y3)
    return converted(est, "x", "label", tmp_path / "s.mlmodel").spec


@pytest.mark.parametrize("breaks, match", [
    (lambda s: s.coefficients[0].alpha.append(1.0), "coefficient rows"),
    (lambda s: s.coefficients.add(), "coefficient rows"),
    (lambda s: s.numberOfSupportVectorsPerClass.__setitem__(0, 1), "numberOfSupportVectorsPerClass"),
    (lambda s: s.rho.append(0.0), "rho values"),
    (lambda s: s.kernel.ClearField("kernel"), "no kernel"),
    (lambda s: setattr(s.kernel.rbfKernel, "gamma", -1.0), "gamma"),
    (lambda s: s.denseSupportVectors.vectors[0].values.append(0.0), "dense support vectors"),
])
def test_bad_svc_specs_are_spec_errors(tmp_path, breaks, match):
    spec = _spec(tmp_path)
    breaks(spec.supportVectorClassifier)
    with pytest.raises(mlupdate.SpecError, match=match):
        write(spec, tmp_path / "bad.mlmodel")


def test_probabilities_need_prob_a_and_prob_b(tmp_path):
    spec = _spec(tmp_path, probability=True)
    spec.supportVectorClassifier.probA.append(0.5)
    with pytest.raises(mlupdate.SpecError, match="probA"):
        write(spec, tmp_path / "a.mlmodel")
    spec = _spec(tmp_path, probability=True)
    spec.supportVectorClassifier.ClearField("probA")
    spec.supportVectorClassifier.ClearField("probB")
    with pytest.raises(mlupdate.SpecError, match="no way to compute probabilities"):
        write(spec, tmp_path / "b.mlmodel")


def test_bad_svr_spec(tmp_path):
    spec = converted(SVR().fit(X, X[:, 0]), "x", "y", tmp_path / "a.mlmodel").spec
    spec.supportVectorRegressor.coefficients.alpha.append(1.0)
    with pytest.raises(mlupdate.SpecError, match="coefficients"):
        write(spec, tmp_path / "b.mlmodel")
