"""scikit-learn Pipelines that coremltools converts to Core ML pipelines, lint on them, and the type registry."""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pytest
from coremltools.proto import Model_pb2
from sklearn.ensemble import RandomForestRegressor
from sklearn.feature_extraction import DictVectorizer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import Normalizer, OneHotEncoder, StandardScaler
from sklearn.svm import SVC

import mlupdate
from mlupdate.kinds import REFUSED, RUNNABLE
from mlupdate.kinds.classic import PROGRAMS
from tests.unit._sklearn_coreml import converted, probabilities, rows

MODEL_TYPES = ("pipeline", "pipelineClassifier", "pipelineRegressor")
REFERENCE = "scikit-learn predict / predict_proba / transform of sklearn Pipelines converted by coremltools"
RNG = np.random.default_rng(5)
X = RNG.normal(size=(150, 4))
Y = np.digitize(X[:, 0] - X[:, 3], [-0.5, 0.5])

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


def test_scaler_logistic_regression_pipeline_classifier(tmp_path):
    est = make_pipeline(StandardScaler(), LogisticRegression(multi_class="ovr")).fit(X, Y)
    model = converted(est, "x", "label", tmp_path / "m.mlmodel")
    assert model.description.model_type == "pipelineClassifier"
    assert model.executor == "numpy"
    res = model.predict_batch(rows(X))
    np.testing.assert_allclose(probabilities(res, est.classes_), est.predict_proba(X), rtol=1e-10, atol=1e-12)
    assert [r["label"] for r in res] == est.predict(X).tolist()
    assert set(res[0]) == {"label", "classProbability"}


def test_imputer_normalizer_svc_pipeline_on_named_inputs(tmp_path):
    x = X.copy()
    x[RNG.random(size=x.shape) < 0.1] = np.nan
    est = make_pipeline(SimpleImputer(), Normalizer(), SVC(kernel="rbf", gamma=2.0)).fit(x, Y)
    model = converted(est, ["a", "b", "c", "d"], "label", tmp_path / "m.mlmodel")
    feats = [dict(zip("abcd", map(float, r), strict=True)) for r in x]
    assert [r["label"] for r in model.predict_batch(feats)] == est.predict(x).tolist()


def test_dict_vectorizer_random_forest_regressor(tmp_path):
    exact = X[:, :3].astype(np.float32).astype(np.float64)  # scikit-learn's trees compare float32 copies
    data = [{k: float(v) for k, v in zip("pqr", r, strict=True) if v > -0.5} for r in exact]
    target = X[:, 0] * 2 + X[:, 1]
    est = make_pipeline(DictVectorizer(), RandomForestRegressor(n_estimators=5, random_state=0)).fit(data, target)
    model = converted(est, "d", "y", tmp_path / "m.mlmodel")
    got = [r["y"] for r in model.predict_batch([{"d": d} for d in data])]
    np.testing.assert_allclose(got, est.predict(data), rtol=1e-9, atol=1e-9)


def test_one_hot_encoder_linear_regression(tmp_path):
    cats = RNG.integers(0, 3, size=(80, 2)).astype(np.float64)
    target = cats @ [1.0, -2.0] + (cats[:, 0] == 2) * 5
    est = make_pipeline(OneHotEncoder(), LinearRegression()).fit(cats, target)
    model = converted(est, "x", "y", tmp_path / "m.mlmodel")
    got = [r["y"] for r in model.predict_batch(rows(cats))]
    np.testing.assert_allclose(got, est.predict(cats), rtol=1e-9, atol=1e-9)


def test_lint_reports_no_errors_on_converted_models(tmp_path):
    for i, est in enumerate([make_pipeline(StandardScaler(), LogisticRegression(multi_class="ovr")).fit(X, Y),
                             SVC().fit(X, Y), make_pipeline(OneHotEncoder(), LinearRegression()).fit(X > 0, Y)]):
        model = converted(est, "x", "label" if i < 2 else "y", tmp_path / f"m{i}.mlmodel")
        problems = mlupdate.lint(model.path)
        assert not [p for p in problems if p.severity == "error"], problems


def test_every_model_proto_type_is_run_or_refused_with_a_reason():
    kinds = [f.name for f in Model_pb2.Model.DESCRIPTOR.oneofs_by_name["Type"].fields]
    assert not set(RUNNABLE) & set(REFUSED)
    assert sorted(set(kinds) - set(RUNNABLE) - set(REFUSED)) == []
    assert set(PROGRAMS) <= set(kinds)
    modules = sorted(Path(__file__).parent.glob("test_models_*.py"))
    tested = {k for p in modules for k in getattr(importlib.import_module(f"tests.unit.{p.stem}"), "MODEL_TYPES", ())}
    assert set(PROGRAMS) <= tested


def test_refused_types_say_why(tmp_path):
    spec = Model_pb2.Model(specificationVersion=4)
    spec.description.input.add(name="text").type.stringType.SetInParent()
    spec.textClassifier.SetInParent()
    (tmp_path / "t.mlmodel").write_bytes(spec.SerializeToString())
    with pytest.raises(mlupdate.UnsupportedModelError, match="NaturalLanguage"):
        mlupdate.load(tmp_path / "t.mlmodel")
