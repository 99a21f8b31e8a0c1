"""``mlupdate predict --input NAME=VALUE``: every input kind from the command line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mlupdate.cli import main
from mlupdate.cli.values import feature_value
from mlupdate.errors import FeatureError
from mlupdate.spec.description import FeatureDescription
from tests.shared_data import model_or_skip
from tests.unit.test_layers_base import builder, save


@pytest.fixture()
def affine(tmp_path):
    """y = W x + b on a [2, 3] array input (ND), and the weights for the numpy reference."""
    rng = np.random.default_rng(4)
    w, b = rng.normal(size=(4, 3)).astype(np.float32), rng.normal(size=4).astype(np.float32)
    nb = builder([("x", (2, 3))], ("y",), nd=True)
    nb.add_inner_product("fc", w, b, 3, 4, True, "x", "y")
    return save(nb, tmp_path), w, b


@pytest.mark.parametrize("form", ["literal", "npy", "json"])
def test_array_inputs_from_a_literal_npy_or_json(affine, tmp_path, capsys, form):
    path, w, b = affine
    x = np.array([[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]], np.float32)
    if form == "npy":
        np.save(tmp_path / "x.npy", x)
        value = f"@{tmp_path / 'x.npy'}"
    elif form == "json":
        (tmp_path / "x.json").write_text(json.dumps(x.tolist()))
        value = f"@{tmp_path / 'x.json'}"
    else:
        value = json.dumps(x.tolist())
    assert main(["predict", str(path), "--input", f"x={value}", "--json"]) == 0
    got = np.asarray(json.loads(capsys.readouterr().out)["y"])
    np.testing.assert_allclose(got, x @ w.T + b, rtol=1e-5, atol=1e-5)


def test_text_output_shows_arrays_by_shape(affine, capsys):
    path = affine[0]
    assert main(["predict", str(path), "--input", "x=[[1, 2, 3], [4, 5, 6]]"]) == 0
    assert "  y: array[2, 4]" in capsys.readouterr().out


def test_wrong_values_are_feature_errors_naming_the_input(affine, tmp_path, capsys):
    path = affine[0]
    assert main(["predict", str(path), "--input", "x=[1, 2, 3]"]) == 2  # rank 1 for a [2, 3] input
    assert "Input 'x' has shape [3]" in capsys.readouterr().err
    assert main(["predict", str(path), "--input", "x=hello"]) == 2
    assert "give @file.npy" in capsys.readouterr().err
    assert main(["predict", str(path), "--input", f"x=@{tmp_path / 'missing.npy'}"]) == 2
    assert "no file at" in capsys.readouterr().err
    assert main(["predict", str(path), "--input", "z=[1]"]) == 2
    assert "has no input 'z'" in capsys.readouterr().err


def test_flowers_mnist_network_with_an_array_input_named_image_predicts(tmp_path, capsys):
    digit = np.zeros((1, 28, 28), np.float32)
    digit[0, 4:24, 13:15] = 1.0  # a "1"
    np.save(tmp_path / "digit.npy", digit)
    mnist = model_or_skip("MNIST_Model.mlmodel")
    assert main(["predict", str(mnist), "--input", f"image=@{tmp_path / 'digit.npy'}", "--json"]) == 0
    out = np.asarray(json.loads(capsys.readouterr().out)["output"])
    assert out.shape == (10,) and np.isfinite(out).all()
    assert out.sum() == pytest.approx(1.0, abs=1e-4)  # the network ends in a softmax


@pytest.mark.parametrize(("kind", "text", "value"), [
    ("int64", "3", 3), ("double", "0.25", 0.25), ("double", "2", 2.0), ("string", "tabby", "tabby"),
    ("string", "3", "3"), ("string", '"quoted"', "quoted"),
])
def test_scalar_values_follow_the_declared_type(kind, text, value):
    got = feature_value(FeatureDescription("f", kind), text)
    assert got == value and type(got) is type(value)


def test_dictionary_values_and_their_key_type():
    assert feature_value(FeatureDescription("d", "dictionary", dtype="str"), '{"a": 1.5}') == {"a": 1.5}
    assert feature_value(FeatureDescription("d", "dictionary", dtype="int64"), '{"7": 1.0}') == {7: 1.0}
    with pytest.raises(FeatureError, match="int64 keys"):
        feature_value(FeatureDescription("d", "dictionary", dtype="int64"), '{"a": 1.0}')
    with pytest.raises(FeatureError, match="JSON object"):
        feature_value(FeatureDescription("d", "dictionary", dtype="str"), "[1, 2]")


@pytest.mark.parametrize(("kind", "text"), [("int64", "2.5"), ("int64", "x"), ("double", "true"), ("double", "[1]")])
def test_bad_numbers_are_feature_errors(kind, text):
    with pytest.raises(FeatureError, match=f"is {kind}; give a number"):
        feature_value(FeatureDescription("f", kind), text)
