"""mlupdate.make_updatable: arguments, errors, and specs equal to what coremltools' builder writes."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest

import mlupdate
from mlupdate.authoring.repairs import RepairWarning
from mlupdate.cli import main
from mlupdate.spec.io import Model_pb2, read_spec, write_spec

ct = pytest.importorskip("coremltools")
from coremltools.models import datatypes  # noqa: E402
from coremltools.models.neural_network import NeuralNetworkBuilder, SgdParams  # noqa: E402


def small_spec(classifier: bool = True, int_labels: bool = False, seed: int = 0):
    """x[6] -> dense_1 -> relu -> dense_2 -> softmax (legacy rank-5 network, as the Keras converter)."""
    rng = np.random.default_rng(seed)
    b = NeuralNetworkBuilder([("x", datatypes.Array(6))], [("probs", None)],
                             mode="classifier" if classifier else None)
    b.add_inner_product("dense_1", W=rng.standard_normal((5, 6)), b=rng.standard_normal(5), input_channels=6,
                        output_channels=5, has_bias=True, input_name="x", output_name="h")
    b.add_activation("relu", "RELU", "h", "hr")
    b.add_inner_product("dense_2", W=rng.standard_normal((3, 5)), b=rng.standard_normal(3), input_channels=5,
                        output_channels=3, has_bias=True, input_name="hr", output_name="z")
    b.add_softmax("softmax", "z", "probs")
    if classifier:
        b.set_class_labels([1, 2, 3] if int_labels else ["a", "b", "c"], predicted_feature_name="label",
                           prediction_blob="probs")
    return b.spec


@pytest.fixture
def small(tmp_path):
    path = tmp_path / "small.mlmodel"
    write_spec(small_spec(), path)
    return path


def _ct(spec, layers, loss="cce", loss_input="probs", **kw):
    b = NeuralNetworkBuilder(spec=spec)
    with contextlib.redirect_stdout(io.StringIO()):
        b.make_updatable(layers)
        if loss == "cce":
            b.set_categorical_cross_entropy_loss("lossLayer", input=loss_input)
        else:
            b.set_mean_squared_error_loss("lossLayer", input_feature=(loss_input, datatypes.Array(3)))
        b.set_sgd_optimizer(kw.get("sgd", SgdParams()))
        b.set_epochs(kw.get("epochs", 1))
    return b.spec


def test_defaults_equal_coremltools(small):
    model = mlupdate.make_updatable(small, ["dense_1", "dense_2"])
    assert model.spec == _ct(read_spec(small), ["dense_1", "dense_2"])
    assert model.is_updatable and model.notes == []
    ct.models.MLModel(model.spec)


def test_int64_labels_target_is_int64(tmp_path):
    spec = small_spec(int_labels=True)
    model = mlupdate.make_updatable(spec, ["dense_2"])
    assert model.spec == _ct(spec, ["dense_2"])
    assert model.spec.description.trainingInput[1].type.WhichOneof("Type") == "int64Type"


def test_loss_on_another_softmax_blob_uses_input_true_int32(tmp_path):
    spec = small_spec(classifier=False)
    model = mlupdate.make_updatable(spec, ["dense_2"], "categorical_cross_entropy")
    theirs = _ct(spec, ["dense_2"])
    assert model.spec == theirs
    target = model.spec.description.trainingInput[1]
    assert target.name == "probs_true" and target.type.multiArrayType.dataType == Model_pb2.ArrayFeatureType.INT32
    assert list(target.type.multiArrayType.shape) == [1]


def test_mse_matches_coremltools(tmp_path):
    spec = small_spec(classifier=False)
    model = mlupdate.make_updatable(spec, ["dense_1", "dense_2"], "mse", loss_input="z")
    assert model.spec == _ct(spec, ["dense_1", "dense_2"], loss="mse", loss_input="z")
    target = model.spec.description.trainingInput[1]
    assert target.type.multiArrayType.dataType == Model_pb2.ArrayFeatureType.DOUBLE
    assert list(target.type.multiArrayType.shape) == [3]
    assert [p.rule for p in mlupdate.lint(model)] == ["device-linear-last-inner-product"]  # coremltools#1983


def test_user_objects_are_not_modified(small):
    spec = read_spec(small)
    before = spec.SerializeToString()
    loaded = mlupdate.load(small)
    mlupdate.make_updatable(spec, ["dense_2"])
    mlupdate.make_updatable(loaded, ["dense_2"])
    assert spec.SerializeToString() == before and not loaded.is_updatable


def test_version_shuffle_seed_epochs(small):
    spec = read_spec(small)
    spec.specificationVersion = 5
    model = mlupdate.make_updatable(spec, ["dense_2"], shuffle=False, seed=-3, epochs=4, epochs_allowed=[2, 4, 8])
    s = model.spec
    up = s.neuralNetworkClassifier.updateParams
    assert s.specificationVersion == 5
    assert up.HasField("shuffle") and up.shuffle.defaultValue is False and up.seed.defaultValue == -3
    assert up.epochs.defaultValue == 4 and list(up.epochs.set.values) == [2, 4, 8]
    assert model.parameter_descriptions["epochs"].allowed == (2, 4, 8)
    assert read_spec(small).specificationVersion == 1 and mlupdate.make_updatable(small, ["dense_2"]).spec \
        .specificationVersion == 4


def test_remaking_resets_other_layers(small):
    first = mlupdate.make_updatable(small, ["dense_1", "dense_2"])
    with pytest.warns(RepairWarning, match="dense_1"):
        again = mlupdate.make_updatable(first, ["dense_2"])
    layers = {x.name: x for x in again.spec.neuralNetworkClassifier.layers}
    assert not layers["dense_1"].isUpdatable and not layers["dense_1"].innerProduct.weights.isUpdatable
    assert layers["dense_2"].isUpdatable and any("dense_1" in n for n in again.notes)
    assert len(again.spec.description.trainingInput) == 2


@pytest.mark.parametrize("kwargs, error, words", [
    ({"layers": ["dense_9"]}, mlupdate.NotUpdatableError, "dense_1 \\(innerProduct\\), dense_2 \\(innerProduct\\)"),
    ({"layers": ["relu"]}, mlupdate.NotUpdatableError, "activation layer"),
    ({"layers": []}, mlupdate.AuthoringError, "No layers"),
    ({"layers": ["dense_2", "dense_2"]}, mlupdate.AuthoringError, "repeat"),
    ({"layers": ["dense_2"], "loss": "hinge"}, mlupdate.AuthoringError, "Unknown loss"),
    ({"layers": ["dense_2"], "optimizer": "sgd"}, mlupdate.AuthoringError, "mlupdate.SGD"),
    ({"layers": ["dense_2"], "epochs": 0}, mlupdate.ParameterError, "positive"),
    ({"layers": ["dense_2"], "epochs": 3, "epochs_allowed": [1, 2]}, mlupdate.ParameterError, "not in"),
    ({"layers": ["dense_2"], "epochs_allowed": [1, 1]}, mlupdate.ParameterError, "duplicates"),
    ({"layers": ["dense_2"], "seed": 1.5}, mlupdate.ParameterError, "seed"),
    ({"layers": ["dense_2"], "shuffle": "yes"}, mlupdate.ParameterError, "shuffle"),
    ({"layers": ["dense_2"], "loss_name": "relu"}, mlupdate.AuthoringError, "already used"),
    ({"layers": ["dense_2"], "loss_input": "x"}, mlupdate.AuthoringError, "model input"),
    ({"layers": ["dense_2"], "loss_input": "h"}, mlupdate.NotUpdatableError, "not the output of a softmax"),
])
def test_errors(small, kwargs, error, words):
    with pytest.raises(error, match=words):
        mlupdate.make_updatable(small, **kwargs)


def test_fp16_weights_in_any_layer_are_refused(small):
    # coremltools only inspects the first layer (apple/coremltools PR #2858): it accepts this model.
    spec = read_spec(small)
    wp = spec.neuralNetworkClassifier.layers[2].innerProduct.weights
    values = np.asarray(wp.floatValue, np.float16)
    wp.ClearField("floatValue")
    wp.float16Value = values.tobytes()
    with contextlib.redirect_stdout(io.StringIO()):
        NeuralNetworkBuilder(spec=read_spec(small)).make_updatable(["dense_1", "dense_2"])  # sanity: fp32 is fine
        b = NeuralNetworkBuilder(spec=spec)
        b.make_updatable(["dense_1", "dense_2"])  # the coremltools bug: no error
    with pytest.raises(mlupdate.NotUpdatableError, match="'dense_2': its weights are stored as float16"):
        mlupdate.make_updatable(spec, ["dense_1", "dense_2"])


def test_quantized_weights_are_refused(small):
    from coremltools.models.neural_network.quantization_utils import quantize_weights

    with contextlib.redirect_stdout(io.StringIO()):
        q = quantize_weights(ct.models.MLModel(read_spec(small)), nbits=8)
    q = q if isinstance(q, Model_pb2.Model) else q.get_spec()
    assert q.neuralNetworkClassifier.layers[2].innerProduct.weights.HasField("quantization")
    with pytest.raises(mlupdate.NotUpdatableError, match="quantized"):
        mlupdate.make_updatable(q, ["dense_2"])


def test_other_model_types_are_refused():
    prog = Model_pb2.Model()
    prog.specificationVersion = 6
    prog.mlProgram.SetInParent()
    with pytest.raises(mlupdate.NotUpdatableError, match="ML Program"):
        mlupdate.make_updatable(prog, ["dense"])
    knn = Model_pb2.Model()
    knn.specificationVersion = 4
    knn.kNearestNeighborsClassifier.SetInParent()
    with pytest.raises(mlupdate.NotUpdatableError, match="knn_classifier"):
        mlupdate.make_updatable(knn, ["dense"])


# -- CLI ---------------------------------------------------------------------------------------------
def test_cli_writes_and_summarizes(small, tmp_path, capsys):
    out = tmp_path / "out.mlmodel"
    rc = main(["make-updatable", str(small), str(out), "--layers", "dense_2", "--sgd", "lr=0.05,batch=4,momentum=0.9,"
               "lr_max=0.5,batches=4:8", "--no-shuffle", "--seed", "7"])
    text = capsys.readouterr().out
    assert rc == 0, text
    sgd = SgdParams(lr=0.05, batch=4, momentum=0.9)
    sgd.set_lr(0.05, 0.0, 0.5)
    sgd.set_batch(4, [4, 8])
    theirs = _ct(read_spec(small), ["dense_2"], sgd=sgd)
    up = theirs.neuralNetworkClassifier.updateParams
    up.shuffle.defaultValue = False
    up.seed.defaultValue = 7
    assert read_spec(out) == theirs
    assert "Name: dense_2 (Type: innerProduct)" in text and "momentum: 0.9, min: 0.0, max: 1.0" in text
    assert "shuffle: False, seed: 7" in text and f"Wrote {out}" in text


@pytest.mark.parametrize("argv, words", [
    (["--layers", "dense_2", "--sgd", "lr=2"], "outside its allowed range"),
    (["--layers", "dense_2", "--sgd", "speed=2"], "unknown setting 'speed'"),
    (["--layers", "dense_2", "--adam", "beta1"], "cannot read 'beta1'"),
    (["--layers", "nope"], "do not exist"),
])
def test_cli_errors_exit_2(small, tmp_path, capsys, argv, words):
    out = tmp_path / "o.mlmodel"
    assert main(["make-updatable", str(small), str(out), *argv]) == 2
    assert words in capsys.readouterr().err and not out.exists()


def test_cli_refuses_to_overwrite_input(small, capsys):
    before = small.read_bytes()
    assert main(["make-updatable", str(small), str(small), "--layers", "dense_2"]) == 2
    assert "never modifies the input" in capsys.readouterr().err and small.read_bytes() == before
