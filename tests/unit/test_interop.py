"""Interop at the boundary: load() takes a path, a protobuf spec or a coremltools MLModel, and every
mlupdate error is also the matching built-in exception (as scikit-learn's are)."""

from __future__ import annotations

import numpy as np
import pytest

import mlupdate


@pytest.fixture(scope="module")
def dense(tmp_path_factory):
    """A one-layer network built by coremltools' own builder: y = W x + b."""
    import coremltools as ct
    from coremltools.models import datatypes
    from coremltools.models.neural_network import NeuralNetworkBuilder

    rng = np.random.default_rng(0)
    w, b = rng.standard_normal((2, 3)).astype(np.float32), rng.standard_normal(2).astype(np.float32)
    builder = NeuralNetworkBuilder([("x", datatypes.Array(3))], [("y", datatypes.Array(2))])
    builder.add_inner_product("fc", w, b, 3, 2, True, "x", "y")
    path = tmp_path_factory.mktemp("interop") / "dense.mlmodel"
    ct.models.utils.save_spec(builder.spec, str(path))
    return path, builder.spec, w, b


@pytest.mark.parametrize("form", ["path", "str", "spec", "mlmodel", "model"])
def test_load_accepts_every_form(dense, form):
    import coremltools as ct

    path, spec, w, b = dense
    arg = {"path": path, "str": str(path), "spec": spec, "mlmodel": ct.models.MLModel(spec, skip_model_load=True),
           "model": mlupdate.load(path)}[form]
    x = np.array([0.5, -1.0, 2.0], np.float32)
    out = mlupdate.load(arg, compute_units="cpu_only").predict({"x": x})["y"]
    np.testing.assert_allclose(np.ravel(out), w @ x + b, rtol=1e-5, atol=1e-5)


def test_load_copies_a_spec(dense):
    _, spec, _, _ = dense
    model = mlupdate.load(spec)
    spec.description.input[0].name = "changed"
    assert model.spec.description.input[0].name == "x"
    spec.description.input[0].name = "x"


def test_load_of_something_else_is_a_type_error():
    with pytest.raises(TypeError, match="Expected a .mlmodel path"):
        mlupdate.load(42)
    with pytest.raises(mlupdate.Error):
        mlupdate.load([1, 2])


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="No model file"):
        mlupdate.load(tmp_path / "nowhere.mlmodel")


def test_bad_file_is_os_error(tmp_path):
    bad = tmp_path / "x.mlmodel"
    bad.write_bytes(b"not a model")
    with pytest.raises(OSError, match="not a readable Core ML"):
        mlupdate.load(bad)


def test_bad_values_are_value_errors(dense):
    path, _, _, _ = dense
    model = mlupdate.load(path, compute_units="cpu_only")
    with pytest.raises(ValueError, match="'x'"):
        model.predict({"x": np.zeros(5, np.float32)})
    with pytest.raises(ValueError, match="crop_and_scale"):
        mlupdate.load(path, crop_and_scale="stretch")


@pytest.mark.parametrize(("name", "builtin"), [
    ("ModelFileError", OSError), ("ModelNotFoundError", FileNotFoundError), ("ModelTypeError", TypeError),
    ("UnsupportedModelError", ValueError), ("UnsupportedLayerError", ValueError), ("SpecError", ValueError),
    ("LayerError", ValueError), ("FeatureError", ValueError), ("FeatureError", TypeError),
    ("ImageError", ValueError), ("ParameterError", ValueError), ("TrainingDataError", ValueError),
    ("NotUpdatableError", ValueError), ("UpdateError", RuntimeError), ("AuthoringError", ValueError),
    ("ConversionError", ValueError), ("ExportError", RuntimeError),
])
def test_error_classes_keep_their_base_and_the_builtin(name, builtin):
    cls = getattr(mlupdate, name)
    assert issubclass(cls, mlupdate.Error) and issubclass(cls, builtin)
    assert str(cls("what is wrong; the fix")) == "what is wrong; the fix"
