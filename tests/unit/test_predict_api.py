"""Outputs, batching, description, write, executors and compute units of ``mlupdate.Model``.

The models are built with coremltools' NeuralNetworkBuilder from weights made here, so the expected
outputs are computed with numpy from the same weights.
"""

from __future__ import annotations

import os
import warnings

import coremltools as ct
import numpy as np
import pytest
import torch
from coremltools.models import datatypes
from coremltools.models.neural_network import NeuralNetworkBuilder, SgdParams

import mlupdate
from mlupdate.runtime import executors
from tests.helpers import ct_convert

N_IN = 4


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def classifier_spec(labels: list, seed: int = 0, updatable: bool = False):
    """x[4] -> innerProduct -> softmax, a classifier over ``labels``; returns (spec, W, b)."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(len(labels), N_IN))
    b = rng.normal(size=len(labels))
    bld = NeuralNetworkBuilder([("x", datatypes.Array(N_IN))], [("probs", None)], mode="classifier")
    bld.add_inner_product("fc", w, b, N_IN, len(labels), True, "x", "logits")
    bld.add_softmax("softmax", "logits", "probs")
    bld.set_class_labels(labels, predicted_feature_name="label", prediction_blob="probs")
    if updatable:
        bld.make_updatable(["fc"])
        bld.set_categorical_cross_entropy_loss("loss", "probs")
        bld.set_sgd_optimizer(SgdParams(lr=0.01, batch=4, momentum=0.9))
        bld.set_epochs(5, allowed_set=[1, 5, 10])
    return bld.spec, w, b


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("api")


@pytest.fixture(scope="module")
def str_classifier(folder):
    spec, w, b = classifier_spec(["cat", "dog", "bird"])
    path = folder / "cls.mlmodel"
    ct.utils.save_spec(spec, str(path))
    return mlupdate.load(path), w, b


def xs(n: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, N_IN)).astype(np.float32)


def test_string_classifier_outputs(str_classifier):
    model, w, b = str_classifier
    x = xs(1)[0]
    out = model.predict({"x": x})
    ref = softmax(w @ x + b)
    assert set(out) == {"label", "probs"}
    assert list(out["probs"]) == ["cat", "dog", "bird"]
    np.testing.assert_allclose([out["probs"][k] for k in ("cat", "dog", "bird")], ref, atol=1e-5)
    assert out["label"] == ["cat", "dog", "bird"][int(np.argmax(ref))]


def test_int64_classifier_outputs(folder):
    labels = [3, 7, 11, 42]
    spec, w, b = classifier_spec(labels, seed=2)
    path = folder / "int.mlmodel"
    ct.utils.save_spec(spec, str(path))
    model = mlupdate.load(path)
    for x in xs(6, seed=3):
        out = model.predict({"x": x})
        ref = softmax(w @ x + b)
        assert isinstance(out["label"], int) and out["label"] == labels[int(np.argmax(ref))]
        assert all(isinstance(k, int) for k in out["probs"])
        np.testing.assert_allclose([out["probs"][k] for k in labels], ref, atol=1e-5)


def test_regressor_and_plain_outputs_have_declared_shape(folder):
    rng = np.random.default_rng(4)
    w = rng.normal(size=(3, N_IN))
    for mode in ("regressor", None):
        bld = NeuralNetworkBuilder([("x", datatypes.Array(N_IN))], [("y", datatypes.Array(3))], mode=mode)
        bld.add_inner_product("fc", w, None, N_IN, 3, False, "x", "y")
        path = folder / f"{mode}.mlmodel"
        ct.utils.save_spec(bld.spec, str(path))
        model = mlupdate.load(path)
        assert model.description.model_type == ("neuralNetworkRegressor" if mode else "neuralNetwork")
        x = xs(1, seed=5)[0]
        out = model.predict({"x": x})
        assert isinstance(out["y"], np.ndarray) and out["y"].shape == (3,)
        np.testing.assert_allclose(out["y"], w @ x, atol=1e-5)


def test_predict_batch_is_one_forward_pass(str_classifier):
    model, w, b = str_classifier
    batch = [{"x": x} for x in xs(7, seed=6)]
    shapes = []
    run = model._program.executor.run
    model._program.executor.run = lambda arrays: shapes.append(arrays[0].shape) or run(arrays)
    try:
        results = model.predict_batch(batch)
        assert shapes == [(7, N_IN, 1, 1)]
    finally:
        del model._program.executor.run
    ref = softmax(np.stack([e["x"] for e in batch]) @ w.T + b)
    for res, one, r in zip(results, batch, ref, strict=True):
        single = model.predict(one)
        assert res["label"] == single["label"]
        np.testing.assert_allclose(list(res["probs"].values()), list(single["probs"].values()), atol=1e-6)
        np.testing.assert_allclose(list(res["probs"].values()), r, atol=1e-5)
    assert model.predict_batch([]) == []
    with pytest.raises(mlupdate.FeatureError, match="list of feature dictionaries"):
        model.predict_batch({"x": batch[0]["x"]})


def test_multiarray_errors(str_classifier):
    model, _, _ = str_classifier
    with pytest.raises(mlupdate.FeatureError, match="Missing input 'x'"):
        model.predict({"y": xs(1)[0]})
    with pytest.raises(mlupdate.FeatureError, match=r"shape \[5\] but the model expects \[4\]"):
        model.predict({"x": np.zeros(5, np.float32)})
    with pytest.raises(mlupdate.FeatureError, match="numeric array"):
        model.predict({"x": np.array(["a", "b", "c", "d"])})
    with pytest.raises(mlupdate.FeatureError, match="numeric array"):
        model.predict({"x": "four numbers"})
    # other numeric dtypes are converted, extra features ignored
    out = model.predict({"x": np.arange(4, dtype=np.int64), "label": "cat"})
    ref = model.predict({"x": np.arange(4, dtype=np.float32)})
    assert out["probs"] == pytest.approx(ref["probs"])


# -- describe and write -----------------------------------------------------------------------
def test_description_matches_spec(folder):
    spec, _, _ = classifier_spec(["cat", "dog"], seed=7, updatable=True)
    md = spec.description.metadata
    md.author, md.license, md.shortDescription, md.versionString = "Ada", "MIT", "Tells cats from dogs", "1.2"
    md.userDefined["origin"] = "test"
    spec.description.input[0].shortDescription = "features"
    path = folder / "described.mlmodel"
    ct.utils.save_spec(spec, str(path))
    d = mlupdate.load(path).description
    assert d.model_type == "neuralNetworkClassifier" and d.specification_version == spec.specificationVersion >= 4
    assert list(d.inputs) == ["x"]
    x = d.inputs["x"]
    assert (x.type, x.shape, x.short_description) == ("multiArray", (N_IN,), "features")
    assert set(d.outputs) == {"probs", "label"}
    assert d.outputs["probs"].type == "dictionary" and d.outputs["probs"].dtype == "str"
    assert d.outputs["label"].type == "string"
    assert [f.name for f in spec.description.trainingInput] == ["x", "label"]  # set by coremltools' builder
    assert [(f.name, f.type, f.shape) for f in d.training_inputs.values()] == [
        ("x", "multiArray", (N_IN,)), ("label", "string", ())]
    assert d.class_labels == ["cat", "dog"]
    assert (d.predicted_feature_name, d.predicted_probabilities_name) == ("label", "probs")
    assert d.metadata == {"author": "Ada", "license": "MIT", "short_description": "Tells cats from dogs",
                          "version": "1.2", "user_defined": {"origin": "test"}}
    assert d.is_updatable is True


def test_image_input_description(tmp_path):
    from tests.unit.test_images import image_model

    d = mlupdate.load(image_model(tmp_path / "img.mlmodel", "BGR", enumerated=[(4, 4)])).description
    c = d.inputs["image"].image_constraint
    assert d.inputs["image"].type == "image"
    assert (c.width, c.height, c.color_space) == (6, 8, "BGR") and (4, 4) in c.enumerated_sizes


def test_write_is_atomic_and_leaves_source_alone(folder, tmp_path, monkeypatch):
    src = folder / "cls.mlmodel"
    before = (src.read_bytes(), src.stat().st_mtime_ns)
    model = mlupdate.load(src)
    dest = tmp_path / "copy.mlmodel"
    assert model.write(dest) == dest
    assert ct.utils.load_spec(str(dest)) == ct.utils.load_spec(str(src))
    assert (src.read_bytes(), src.stat().st_mtime_ns) == before

    dest.write_bytes(b"previous version")

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(mlupdate.ModelFileError, match="disk full"):
        model.write(dest)
    assert dest.read_bytes() == b"previous version"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy.mlmodel"]  # no temp file left behind


# -- executors and compute units ----------------------------------------------------------------
class SmallCNN(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
            torch.nn.Conv2d(8, 8, 3, stride=2, groups=8), torch.nn.ReLU6(), torch.nn.AdaptiveAvgPool2d(1),
            torch.nn.Flatten(), torch.nn.Linear(8, 5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def make_cnn(seed: int) -> SmallCNN:
    torch.manual_seed(seed)
    net = SmallCNN().eval()
    with torch.no_grad():
        bn = net.body[1]
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
    return net


@pytest.fixture(scope="module")
def cnn_path(folder):
    return ct_convert(make_cnn(0), torch.rand(1, 3, 16, 16), folder / "cnn.mlmodel")


def test_executors_agree_with_each_other_and_torch(cnn_path):
    x = np.random.default_rng(8).random((4, 3, 16, 16), dtype=np.float32)
    with torch.no_grad():
        ref = make_cnn(0)(torch.from_numpy(x)).numpy()
    outs = {}
    for ex in ("onnxruntime", "torch"):
        model = mlupdate.load(cnn_path, executor=ex)
        assert model.executor == ex
        assert model.device == ("cuda" if ex == "torch" and torch.cuda.is_available() else "cpu")
        (name,) = model.description.outputs
        outs[ex] = np.stack([r[name].reshape(-1) for r in model.predict_batch([{"input": a[None]} for a in x])])
    np.testing.assert_allclose(outs["onnxruntime"], outs["torch"], atol=1e-5)
    np.testing.assert_allclose(outs["torch"], ref, atol=1e-4)


def test_compute_units(cnn_path):
    cpu = mlupdate.load(cnn_path, compute_units="cpu_only")
    assert (cpu.executor, cpu.device) == ("onnxruntime", "cpu")
    gpu = torch.cuda.is_available()
    for units in ("cpu_and_gpu", "all"):
        m = mlupdate.load(cnn_path, compute_units=units)
        assert (m.executor, m.device) == (("torch", "cuda") if gpu else ("onnxruntime", "cpu"))
    with pytest.raises(mlupdate.ParameterError, match="compute_units"):
        mlupdate.load(cnn_path, compute_units="neural_engine")
    with pytest.raises(mlupdate.ParameterError, match="executor"):
        mlupdate.load(cnn_path, executor="tensorrt")


def test_falls_back_to_torch_when_export_fails(folder, monkeypatch):
    path = ct_convert(make_cnn(1), torch.rand(1, 3, 16, 16), folder / "cnn_fallback.mlmodel")  # not in the cache

    def fail(*args, **kwargs):
        raise mlupdate.ExportError("ONNX export failed: simulated")

    monkeypatch.setattr(executors, "export_onnx", fail)
    with pytest.warns(RuntimeWarning, match="simulated.*PyTorch instead"):
        model = mlupdate.load(path, compute_units="cpu_only")
    assert (model.executor, model.device) == ("torch", "cpu")
    x = np.random.default_rng(9).random((1, 3, 16, 16), dtype=np.float32)
    (name,) = model.description.outputs
    with torch.no_grad():
        ref = make_cnn(1)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(model.predict({"input": x})[name].reshape(ref.shape), ref, atol=1e-4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(mlupdate.ExportError):
            mlupdate.load(path, executor="onnxruntime")  # forcing onnxruntime does not fall back
