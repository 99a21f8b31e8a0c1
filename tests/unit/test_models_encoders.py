"""oneHotEncoder, dictVectorizer, featureVectorizer, categoricalMapping against scikit-learn and the protos."""

from __future__ import annotations

import numpy as np
import pytest
from coremltools.proto import Model_pb2
from sklearn.feature_extraction import DictVectorizer
from sklearn.preprocessing import OneHotEncoder

import mlupdate
from tests.unit._sklearn_coreml import converted, rows, write

MODEL_TYPES = ("oneHotEncoder", "dictVectorizer", "featureVectorizer", "categoricalMapping")
REFERENCE = ("scikit-learn transform of OneHotEncoder and DictVectorizer converted by coremltools; numpy "
             "references written from the protos for built specs")
RNG = np.random.default_rng(3)


@pytest.mark.parametrize("handle_unknown", ["error", "ignore"])
def test_one_hot_encoder_pipeline_matches_sklearn(tmp_path, handle_unknown):
    # coremltools' converter lists category *positions*, so the categories are 0..n-1 here.
    data = np.c_[RNG.integers(0, 3, 50), RNG.integers(0, 4, 50)].astype(np.float64)
    est = OneHotEncoder(handle_unknown=handle_unknown).fit(data)
    model = converted(est, "x", "out", tmp_path / "m.mlmodel")
    got = np.stack([r["out"] for r in model.predict_batch(rows(data))])
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, est.transform(data).toarray())
    unknown = np.array([[1.0, 7.0]])
    if handle_unknown == "ignore":
        np.testing.assert_array_equal(model.predict({"x": unknown[0]})["out"], est.transform(unknown).toarray()[0])
    else:
        with pytest.raises(mlupdate.FeatureError, match="not one of the encoder's 4 categories"):
            model.predict({"x": unknown[0]})


def test_dict_vectorizer_matches_sklearn(tmp_path):
    data = [{"red": 1.0, "blue": 2.5}, {"green": -1.0}, {"blue": 3.0, "green": 0.5, "red": 4}, {}]
    est = DictVectorizer().fit(data)
    model = converted(est, "d", "out", tmp_path / "m.mlmodel")
    got = np.stack([r["out"] for r in model.predict_batch([{"d": d} for d in data])])
    np.testing.assert_array_equal(got, est.transform(data).toarray())
    with pytest.raises(mlupdate.FeatureError, match=r"keys \['purple'\]"):
        model.predict({"d": {"purple": 1.0}})
    with pytest.raises(mlupdate.FeatureError, match="str keys"):
        model.predict({"d": {3: 1.0}})


def _model(inputs, outputs, kind):
    spec = Model_pb2.Model(specificationVersion=1)
    for name, set_type in inputs:
        set_type(spec.description.input.add(name=name).type)
    for name, set_type in outputs:
        set_type(spec.description.output.add(name=name).type)
    getattr(spec, kind).SetInParent()
    return spec


def _array(n):
    def set_type(t):
        t.multiArrayType.shape.append(n)
        t.multiArrayType.dataType = t.multiArrayType.DOUBLE
    return set_type


def _set(field):
    return lambda t: getattr(t, field).SetInParent()


def _int_dict(t):
    t.dictionaryType.int64KeyType.SetInParent()


def test_feature_vectorizer_concatenates_in_list_order(tmp_path):
    spec = _model([("a", _set("doubleType")), ("v", _array(3)), ("n", _set("int64Type")), ("d", _int_dict)],
                  [("out", _array(9))], "featureVectorizer")
    for column, size in (("v", 3), ("a", 1), ("d", 4), ("n", 1)):
        spec.featureVectorizer.inputList.add(inputColumn=column, inputDimensions=size)
    model = write(spec, tmp_path / "m.mlmodel")
    v = RNG.normal(size=3)
    got = model.predict({"a": 0.25, "v": v, "n": 7, "d": {0: 1.5, 3: -2.0}})["out"]
    np.testing.assert_array_equal(got, np.r_[v, 0.25, 1.5, 0, 0, -2.0, 7])
    with pytest.raises(mlupdate.FeatureError, match="key 4"):
        model.predict({"a": 0.25, "v": v, "n": 7, "d": {4: 1.0}})
    with pytest.raises(mlupdate.FeatureError, match="int64"):
        model.predict({"a": 0.25, "v": v, "n": 7.5, "d": {}})
    spec.featureVectorizer.inputList.add(inputColumn="missing", inputDimensions=1)
    with pytest.raises(mlupdate.SpecError, match="column 'missing'"):
        write(spec, tmp_path / "bad.mlmodel")


def test_string_one_hot_encoder_dense_and_sparse(tmp_path):
    spec = _model([("s", _set("stringType"))], [("out", _array(3))], "oneHotEncoder")
    spec.oneHotEncoder.stringCategories.vector.extend(["cat", "dog", "eel"])
    model = write(spec, tmp_path / "a.mlmodel")
    np.testing.assert_array_equal(model.predict({"s": "dog"})["out"], [0, 1, 0])
    with pytest.raises(mlupdate.FeatureError, match="'fox'"):
        model.predict({"s": "fox"})
    with pytest.raises(mlupdate.FeatureError, match="string"):
        model.predict({"s": 3})
    sparse = _model([("s", _set("stringType"))], [("out", _int_dict)], "oneHotEncoder")
    sparse.oneHotEncoder.stringCategories.vector.extend(["cat", "dog", "eel"])
    sparse.oneHotEncoder.outputSparse = True
    sparse.oneHotEncoder.handleUnknown = sparse.oneHotEncoder.IgnoreUnknown
    model = write(sparse, tmp_path / "b.mlmodel")
    assert model.predict({"s": "eel"})["out"] == {2: 1.0}
    assert model.predict({"s": "fox"})["out"] == {}
    sparse.description.input[0].type.int64Type.SetInParent()
    with pytest.raises(mlupdate.SpecError, match="must be string"):
        write(sparse, tmp_path / "c.mlmodel")


def test_categorical_mapping_both_ways_with_defaults_and_sequences(tmp_path):
    spec = _model([("s", _set("stringType"))], [("i", _set("int64Type"))], "categoricalMapping")
    spec.categoricalMapping.stringToInt64Map.map.update({"low": 0, "mid": 5, "high": 9})
    model = write(spec, tmp_path / "a.mlmodel")
    assert [model.predict({"s": s})["i"] for s in ("high", "low", "mid")] == [9, 0, 5]
    with pytest.raises(mlupdate.FeatureError, match="'huge'"):
        model.predict({"s": "huge"})
    spec.categoricalMapping.int64Value = -1
    assert write(spec, tmp_path / "b.mlmodel").predict({"s": "huge"})["i"] == -1
    spec.categoricalMapping.strValue = "?"
    with pytest.raises(mlupdate.SpecError, match="ValueOnUnknown"):
        write(spec, tmp_path / "c.mlmodel")

    back = _model([("i", lambda t: t.sequenceType.int64Type.SetInParent())],
                  [("s", lambda t: t.sequenceType.stringType.SetInParent())], "categoricalMapping")
    back.categoricalMapping.int64ToStringMap.map.update({1: "one", 2: "two"})
    back.categoricalMapping.strValue = "many"
    assert write(back, tmp_path / "d.mlmodel").predict({"i": [2, 1, 40]})["s"] == ["two", "one", "many"]
    back.description.output[0].type.stringType.SetInParent()
    with pytest.raises(mlupdate.SpecError, match="both sequences"):
        write(back, tmp_path / "e.mlmodel")


def test_dict_vectorizer_with_int_keys_and_dictionary_output(tmp_path):
    spec = _model([("d", _int_dict)], [("out", _int_dict)], "dictVectorizer")
    spec.dictVectorizer.int64ToIndex.vector.extend([10, 20, 30])
    model = write(spec, tmp_path / "m.mlmodel")
    assert model.predict({"d": {30: 1.5, 10: 2.0}})["out"] == {2: 1.5, 0: 2.0}
    spec.description.input[0].type.dictionaryType.stringKeyType.SetInParent()
    with pytest.raises(mlupdate.SpecError, match="int64 keys"):
        write(spec, tmp_path / "bad.mlmodel")
