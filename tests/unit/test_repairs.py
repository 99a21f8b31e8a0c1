"""Repairs of coremltools-converted networks: exactly equivalent, reported, and accepted by Core ML's rules.

Ground truth: the original torch module (the converted models' predictions), numpy for hand-built
ND networks, and coremltools' own builder checks (``set_categorical_cross_entropy_loss`` refuses
a softmaxND input; it must accept the repaired network).
"""

from __future__ import annotations

import contextlib
import io
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import mlupdate
from mlupdate.authoring import repairs
from mlupdate.authoring.repairs import RepairWarning
from mlupdate.spec.io import read_spec, write_spec
from tests.helpers import ct_convert

ct = pytest.importorskip("coremltools")
from coremltools.models import datatypes  # noqa: E402
from coremltools.models.neural_network import NeuralNetworkBuilder  # noqa: E402


def _kinds(spec):
    return [layer.WhichOneof("layer") for layer in getattr(spec, spec.WhichOneof("Type")).layers]


def _make(path, layers, **kw):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = mlupdate.make_updatable(path, layers, **kw)
    return model, [w for w in caught if issubclass(w.category, RepairWarning)]


@pytest.fixture(scope="module")
def mlp(tmp_path_factory):
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3), nn.Softmax(dim=-1)).eval()
    path = ct_convert(module, torch.randn(1, 4), tmp_path_factory.mktemp("mlp") / "mlp.mlmodel",
                      labels=["ant", "bee", "cat"])
    return module, path


@pytest.fixture(scope="module")
def cnn(tmp_path_factory):
    torch.manual_seed(1)
    module = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(36, 5), nn.ReLU(),
                           nn.Linear(5, 2), nn.Softmax(dim=1)).eval()
    path = ct_convert(module, torch.randn(1, 3, 8, 8), tmp_path_factory.mktemp("cnn") / "cnn.mlmodel",
                      labels=["cat", "dog"])
    return module, path


@pytest.fixture(scope="module")
def gap(tmp_path_factory):
    torch.manual_seed(2)
    module = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2),
                           nn.Softmax(dim=1)).eval()
    path = ct_convert(module, torch.randn(1, 3, 8, 8), tmp_path_factory.mktemp("gap") / "gap.mlmodel",
                      labels=["cat", "dog"])
    return module, path


def _torch_probs(module, x):
    with torch.no_grad():
        return module(torch.from_numpy(x)).numpy().reshape(-1)


def _probs(model, x, labels):
    out = model.predict({"input": x})
    name = model.description.predicted_probabilities_name
    return np.array([out[name][lab] for lab in labels])


def test_converted_classifier_becomes_updatable_in_one_call(mlp, tmp_path):
    module, path = mlp
    assert _kinds(read_spec(path))[-1] == "softmaxND"
    original = path.read_bytes()
    model, caught = _make(path, ["linear_0", "linear_1"], optimizer=mlupdate.SGD(0.01, 5), epochs=2)
    assert path.read_bytes() == original
    assert len(model.notes) == 1 and "softmaxND" in model.notes[0] and "softmax" in model.notes[0]
    assert [str(w.message) for w in caught] == model.notes
    spec = model.spec
    assert _kinds(spec) == ["reshapeStatic", "innerProduct", "activation", "innerProduct", "softmax"]
    assert mlupdate.lint(model) == []
    out = model.write(tmp_path / "mlp_updatable.mlmodel")
    ct.models.MLModel(ct.utils.load_spec(str(out)))
    before = mlupdate.load(path)
    rng = np.random.default_rng(0)
    for _ in range(5):
        x = rng.standard_normal((1, 4)).astype(np.float32)
        want = _torch_probs(module, x)
        np.testing.assert_allclose(_probs(before, x, ["ant", "bee", "cat"]), want, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(_probs(model, x, ["ant", "bee", "cat"]), want, rtol=1e-5, atol=1e-6)
        assert model.predict({"input": x})["classLabel"] == ["ant", "bee", "cat"][int(np.argmax(want))]


def test_repaired_network_passes_coremltools_loss_check(mlp):
    _, path = mlp
    spec = read_spec(path)
    prob = spec.description.predictedProbabilitiesName
    quiet = contextlib.redirect_stdout(io.StringIO())
    with pytest.raises(ValueError, match="must be a softmax layer output"), quiet:
        NeuralNetworkBuilder(spec=spec).set_categorical_cross_entropy_loss("lossLayer", input=prob)
    fixed, notes = repairs.repair(spec, ["linear_1"], prob, "cce")
    assert notes
    b = NeuralNetworkBuilder(spec=fixed)
    with quiet:
        b.make_updatable(["linear_1"])
        b.set_categorical_cross_entropy_loss("lossLayer", input=prob)
        b.set_epochs(1)
    b.set_sgd_optimizer(ct.models.neural_network.SgdParams())
    assert mlupdate.lint(b.spec) == []
    ct.models.MLModel(b.spec)


@pytest.mark.parametrize("fixture, replaced", [("cnn", "flatten"), ("gap", None)])
def test_reshape_before_dense_layers_is_replaced_or_removed(fixture, replaced, request):
    module, path = request.getfixturevalue(fixture)
    spec = read_spec(path)
    assert "reshapeStatic" in _kinds(spec)
    conv = next(layer.name for layer in spec.neuralNetworkClassifier.layers if layer.WhichOneof("layer") ==
                "convolution")
    dense = [layer.name for layer in spec.neuralNetworkClassifier.layers if layer.WhichOneof("layer") ==
             "innerProduct"]
    model, _ = _make(path, [conv, *dense])
    kinds = _kinds(model.spec)
    assert "reshapeStatic" not in kinds and "softmaxND" not in kinds and kinds[-1] == "softmax"
    assert ("flatten" in kinds) == (replaced == "flatten")
    assert len(kinds) == len(_kinds(spec)) - (replaced is None)
    assert mlupdate.lint(model) == []
    rng = np.random.default_rng(3)
    for _ in range(3):
        x = rng.standard_normal((1, 3, 8, 8)).astype(np.float32)
        np.testing.assert_allclose(_probs(model, x, ["cat", "dog"]), _torch_probs(module, x), rtol=1e-5, atol=1e-6)


class Rank4Softmax(nn.Module):
    """The workaround of apple/coremltools#1705: reshape to [1, N, 1, 1], softmax over dim -3, reshape back."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))

    def forward(self, x):
        return torch.softmax(self.body(x)[:, :, None, None], dim=-3).flatten(1)


def test_issue_1705_reshapes_around_a_rank4_softmax_are_removed(tmp_path):
    torch.manual_seed(3)
    module = Rank4Softmax().eval()
    path = ct_convert(module, torch.randn(1, 4), tmp_path / "r4.mlmodel", labels=["ant", "bee", "cat"])
    kinds = _kinds(read_spec(path))
    assert "softmax" in kinds and kinds.count("reshapeStatic") + kinds.count("expandDims") >= 1, kinds
    with pytest.raises(mlupdate.NotUpdatableError):
        mlupdate.make_updatable(path, ["linear_0", "linear_1"], repair=False)
    model, _ = _make(path, ["linear_0", "linear_1"])
    assert _kinds(model.spec) == ["reshapeStatic", "innerProduct", "activation", "innerProduct", "softmax"]
    assert mlupdate.lint(model) == []
    rng = np.random.default_rng(9)
    for _ in range(3):
        x = rng.standard_normal((1, 4)).astype(np.float32)
        np.testing.assert_allclose(_probs(model, x, ["ant", "bee", "cat"]), _torch_probs(module, x), rtol=1e-5,
                                   atol=1e-6)


def test_without_repair_the_problem_is_explained(mlp):
    _, path = mlp
    with pytest.raises(mlupdate.NotUpdatableError, match="softmaxND") as info:
        mlupdate.make_updatable(path, ["linear_1"], repair=False)
    assert "cce-input" not in str(info.value) and "make-updatable rewrites" in str(info.value)


# -- hand-built ND networks ------------------------------------------------------------------------------
def _nd_builder(shape, classifier=True):
    b = NeuralNetworkBuilder([("x", datatypes.Array(*shape))], [("probs", None)], disable_rank5_shape_mapping=True,
                             mode="classifier" if classifier else None)
    return b


def _finish(b, tmp_path, name="m.mlmodel"):
    b.set_class_labels(["a", "b", "c"], predicted_feature_name="label", prediction_blob="probs")
    path = tmp_path / name
    write_spec(b.spec, path)
    return path


def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def test_batched_matmul_becomes_inner_product(tmp_path):
    rng = np.random.default_rng(4)
    w, bias = rng.standard_normal((4, 3)), rng.standard_normal(3)
    b = _nd_builder((1, 4))
    b.add_batched_mat_mul("dense", ["x"], "z", weight_matrix_rows=4, weight_matrix_columns=3, W=w, bias=bias)
    b.add_softmax_nd("soft", "z", "probs", axis=-1)
    path = _finish(b, tmp_path)
    model, caught = _make(path, ["dense"])
    assert _kinds(model.spec) == ["reshapeStatic", "innerProduct", "softmax"]
    assert any("batchedMatmul" in n and "innerProduct" in n for n in model.notes) and len(caught) == 2
    assert mlupdate.lint(model) == []
    for _ in range(3):
        x = rng.standard_normal((1, 4)).astype(np.float32)
        want = _softmax(x.astype(np.float64) @ w + bias).reshape(-1)
        out = model.predict({"x": x})["probs"]
        np.testing.assert_allclose([out[k] for k in "abc"], want, rtol=1e-5, atol=1e-6)


def test_rank4_batched_matmul_is_refused_with_the_reason(tmp_path):
    rng = np.random.default_rng(5)
    b = _nd_builder((1, 2, 2, 4))
    b.add_batched_mat_mul("dense", ["x"], "z", weight_matrix_rows=4, weight_matrix_columns=3,
                          W=rng.standard_normal((4, 3)), bias=None)
    b.add_softmax_nd("soft", "z", "probs", axis=-1)
    path = tmp_path / "r4.mlmodel"
    write_spec(b.spec, path)
    with pytest.raises(mlupdate.NotUpdatableError, match="rank 4"):
        mlupdate.make_updatable(path, ["dense"], loss="mse")


def test_identity_reshape_between_dense_and_loss_is_removed(tmp_path):
    rng = np.random.default_rng(6)
    w = rng.standard_normal((3, 4))
    b = _nd_builder((1, 4, 1, 1))
    b.add_inner_product("dense", W=w, b=None, input_channels=4, output_channels=3, has_bias=False, input_name="x",
                        output_name="z")
    b.add_reshape_static("same", "z", "z2", (1, 3, 1, 1))
    b.add_softmax_nd("soft", "z2", "probs", axis=-3)
    path = _finish(b, tmp_path)
    model, _ = _make(path, ["dense"])
    assert _kinds(model.spec) == ["innerProduct", "softmax"]
    assert any("'same'" in n and "removed" in n for n in model.notes)
    assert any("axis -3" in n for n in model.notes)
    x = rng.standard_normal((1, 4, 1, 1)).astype(np.float32)
    out = model.predict({"x": x})["probs"]
    np.testing.assert_allclose([out[k] for k in "abc"], _softmax(w @ x.reshape(4)), rtol=1e-5, atol=1e-6)


def test_softmax_output_read_by_another_layer_is_not_rewritten(tmp_path):
    rng = np.random.default_rng(7)
    b = _nd_builder((1, 4))
    b.add_inner_product("dense", W=rng.standard_normal((3, 4)), b=None, input_channels=4, output_channels=3,
                        has_bias=False, input_name="x", output_name="z")
    b.add_softmax_nd("soft", "z", "probs", axis=-1)
    b.add_activation("extra", "RELU", "probs", "side")
    path = _finish(b, tmp_path)
    spec = read_spec(path)
    fixed, notes = repairs.repair(spec, ["dense"], "probs", "cce")
    assert notes == [] and fixed == spec
    with pytest.raises(mlupdate.NotUpdatableError, match="not the output of a softmax"):
        mlupdate.make_updatable(path, ["dense"])


def test_equivalence_check_catches_a_wrong_rewrite(tmp_path, monkeypatch):
    rng = np.random.default_rng(8)
    b = _nd_builder((1, 4))
    b.add_batched_mat_mul("dense", ["x"], "z", weight_matrix_rows=4, weight_matrix_columns=3,
                          W=rng.standard_normal((4, 3)), bias=rng.standard_normal(3))
    b.add_softmax_nd("soft", "z", "probs", axis=-1)
    path = _finish(b, tmp_path)
    real = repairs.matmul_to_inner_product

    def transposed(layer):  # a deliberately wrong rewrite: reads the column-major weights as row-major
        p = layer.batchedMatmul
        w = np.asarray(p.weights.floatValue, np.float32).reshape(3, 4)
        real(layer)
        del layer.innerProduct.weights.floatValue[:]
        layer.innerProduct.weights.floatValue.extend(w.T.reshape(-1).tolist())

    monkeypatch.setattr(repairs, "matmul_to_inner_product", transposed)
    with pytest.raises(mlupdate.AuthoringError, match="would change blob"):
        mlupdate.make_updatable(path, ["dense"])
