"""scaler, imputer, normalizer, arrayFeatureExtractor, identity against scikit-learn and the protos."""

from __future__ import annotations

import numpy as np
import pytest
from coremltools.models import datatypes
from sklearn.impute import SimpleImputer
from sklearn.preprocessing import Normalizer, StandardScaler

import mlupdate
from tests.unit._sklearn_coreml import converted, rows, write
from tests.unit.test_models_encoders import _array, _model, _set

MODEL_TYPES = ("scaler", "imputer", "normalizer", "arrayFeatureExtractor", "identity")
REFERENCE = ("scikit-learn transform of StandardScaler, SimpleImputer, Normalizer converted by coremltools; values "
             "written from the protos for built specs")
RNG = np.random.default_rng(4)
X = RNG.normal(loc=1.0, scale=3.0, size=(120, 4))


def _outputs(model, x, name="out"):
    return np.stack([r[name] for r in model.predict_batch(rows(x))])


def test_standard_scaler_matches_sklearn(tmp_path):
    est = StandardScaler().fit(X)
    model = converted(est, "x", "out", tmp_path / "m.mlmodel")
    np.testing.assert_allclose(_outputs(model, X), est.transform(X), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("norm", ["l1", "l2", "max"])
def test_normalizer_matches_sklearn(tmp_path, norm):
    x = np.vstack([X, np.zeros(4)])  # a zero row stays zero
    est = Normalizer(norm=norm).fit(x)
    model = converted(est, [("x", datatypes.Array(4))], "out", tmp_path / "m.mlmodel")
    np.testing.assert_allclose(_outputs(model, x), est.transform(x), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("strategy", ["mean", "median", "most_frequent"])
@pytest.mark.parametrize("missing", [np.nan, -999.0])
def test_simple_imputer_matches_sklearn(tmp_path, strategy, missing):
    x = np.round(X, 1)
    x[RNG.random(size=x.shape) < 0.2] = missing
    est = SimpleImputer(missing_values=missing, strategy=strategy).fit(x)
    model = converted(est, "x", "out", tmp_path / "m.mlmodel")
    np.testing.assert_allclose(_outputs(model, x), est.transform(x), rtol=1e-12)


def test_scaler_scalars_and_int_outputs(tmp_path):
    spec = _model([("n", _set("int64Type"))], [("m", _set("int64Type"))], "scaler")
    spec.scaler.shiftValue.append(3)
    spec.scaler.scaleValue.append(2)
    model = write(spec, tmp_path / "a.mlmodel")
    assert model.predict({"n": 4}) == {"m": 14} and type(model.predict({"n": 4})["m"]) is int
    spec.scaler.scaleValue[0] = 0.5
    with pytest.raises(mlupdate.FeatureError, match="lose the fraction"):
        write(spec, tmp_path / "b.mlmodel").predict({"n": 4})
    spec.description.output[0].type.doubleType.SetInParent()
    assert write(spec, tmp_path / "c.mlmodel").predict({"n": 4}) == {"m": 3.5}
    spec.scaler.shiftValue.append(1)
    with pytest.raises(mlupdate.SpecError, match="2 shiftValues"):
        write(spec, tmp_path / "d.mlmodel")


def test_imputer_scalars_strings_and_missing_features(tmp_path):
    spec = _model([("d", _set("doubleType"))], [("o", _set("doubleType"))], "imputer")
    spec.imputer.imputedDoubleValue = 2.5
    model = write(spec, tmp_path / "a.mlmodel")  # no replace value: NaN is the missing value
    assert [model.predict({"d": v})["o"] for v in (np.nan, 1.0)] == [2.5, 1.0]
    assert model.predict({})["o"] == 2.5
    spec.imputer.replaceDoubleValue = -1
    model = write(spec, tmp_path / "b.mlmodel")
    assert [model.predict({"d": v})["o"] for v in (-1.0, 4.0)] == [2.5, 4.0]

    spec = _model([("s", _set("stringType"))], [("o", _set("stringType"))], "imputer")
    spec.imputer.imputedStringValue = "unknown"
    spec.imputer.replaceStringValue = ""
    model = write(spec, tmp_path / "c.mlmodel")
    assert [model.predict({"s": v})["o"] for v in ("", "x")] == ["unknown", "x"]
    spec.imputer.replaceInt64Value = 0
    with pytest.raises(mlupdate.SpecError, match="do not fit its string input"):
        write(spec, tmp_path / "d.mlmodel")


def test_array_feature_extractor(tmp_path):
    spec = _model([("v", _array(5))], [("e", _array(3))], "arrayFeatureExtractor")
    spec.arrayFeatureExtractor.extractIndex.extend([4, 0, 4])
    v = RNG.normal(size=5)
    np.testing.assert_array_equal(write(spec, tmp_path / "a.mlmodel").predict({"v": v})["e"], v[[4, 0, 4]])
    one = _model([("v", _array(5))], [("e", _set("int64Type"))], "arrayFeatureExtractor")
    one.arrayFeatureExtractor.extractIndex.append(2)
    assert write(one, tmp_path / "b.mlmodel").predict({"v": [0, 1, -3.7, 3, 4]})["e"] == -3
    one.arrayFeatureExtractor.extractIndex.append(1)
    with pytest.raises(mlupdate.SpecError, match="takes exactly one"):
        write(one, tmp_path / "c.mlmodel")
    spec.arrayFeatureExtractor.extractIndex.append(5)
    with pytest.raises(mlupdate.SpecError, match="index 5"):
        write(spec, tmp_path / "d.mlmodel")


def test_identity_returns_its_inputs(tmp_path):
    spec = _model([("a", _array(2)), ("b", _set("stringType"))], [("a2", _array(2)), ("b2", _set("stringType"))],
                  "identity")
    out = write(spec, tmp_path / "a.mlmodel").predict({"a": np.array([1.0, 2.0]), "b": "hi"})
    np.testing.assert_array_equal(out["a2"], [1.0, 2.0])
    assert out["b2"] == "hi"
    del spec.description.output[1]
    with pytest.raises(mlupdate.SpecError, match="one output per input"):
        write(spec, tmp_path / "b.mlmodel")
