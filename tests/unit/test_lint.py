"""mlupdate.lint: a failing and a passing case for every rule of Core ML's updatable-model validator.

The passing base cases are specs written by coremltools' own builder (NeuralNetworkBuilder,
KNearestNeighborsClassifierBuilder); each failing case breaks exactly one rule the way the facts
file (§1.7) describes, and must be reported under that rule only.
"""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest

import mlupdate
from mlupdate.cli import main
from mlupdate.spec.io import Model_pb2, copy_spec, write_spec

ct = pytest.importorskip("coremltools")
from coremltools.models import datatypes  # noqa: E402
from coremltools.models.nearest_neighbors import KNearestNeighborsClassifierBuilder  # noqa: E402
from coremltools.models.neural_network import AdamParams, NeuralNetworkBuilder, SgdParams  # noqa: E402


def _network(classifier=True):
    rng = np.random.default_rng(0)
    b = NeuralNetworkBuilder([("x", datatypes.Array(3, 6, 6))], [("probs", None)],
                             mode="classifier" if classifier else None)
    b.add_convolution("conv", kernel_channels=3, output_channels=2, height=3, width=3, stride_height=1, stride_width=1,
                      border_mode="valid", groups=1, W=rng.standard_normal((3, 3, 3, 2)), b=rng.standard_normal(2),
                      has_bias=True, input_name="x", output_name="c")
    b.add_activation("relu", "RELU", "c", "cr")
    b.add_pooling("pool", height=2, width=2, stride_height=2, stride_width=2, layer_type="MAX", padding_type="VALID",
                  input_name="cr", output_name="p")
    b.add_flatten("flatten", mode=0, input_name="p", output_name="f")
    b.add_inner_product("dense", W=rng.standard_normal((3, 8)), b=rng.standard_normal(3), input_channels=8,
                        output_channels=3, has_bias=True, input_name="f", output_name="z")
    b.add_softmax("softmax", "z", "probs")
    if classifier:
        b.set_class_labels(["a", "b", "c"], predicted_feature_name="label", prediction_blob="probs")
    return b


def _updatable(layers=("conv", "dense"), loss="cce", classifier=True, adam=False):
    b = _network(classifier)
    with contextlib.redirect_stdout(io.StringIO()):
        b.make_updatable(list(layers))
        if loss == "cce":
            b.set_categorical_cross_entropy_loss("lossLayer", input="probs")
        else:
            b.set_mean_squared_error_loss("lossLayer", input_feature=("z", datatypes.Array(3)))
        b.set_adam_optimizer(AdamParams()) if adam else b.set_sgd_optimizer(SgdParams(lr=0.01, batch=4))
        b.set_epochs(2)
    return b.spec


def _nn(spec):
    return getattr(spec, spec.WhichOneof("Type"))


def _layer(spec, name):
    return next(x for x in _nn(spec).layers if x.name == name)


def _insert_after(spec, after, layer):
    nn = _nn(spec)
    layers = list(nn.layers)
    i = next(k for k, x in enumerate(layers) if x.name == after)
    del nn.layers[:]
    nn.layers.extend(layers[: i + 1] + [layer] + layers[i + 1:])


def _rules(spec):
    return {p.rule for p in mlupdate.lint(spec) if p.severity == "error"}


BASE = _updatable()


# -- neural networks: passing bases ----------------------------------------------------------------------
@pytest.mark.parametrize("spec", [BASE, _updatable(adam=True), _updatable(("dense",)), _updatable(classifier=False)],
                         ids=["sgd", "adam", "dense-only", "plain-cce"])
def test_coremltools_updatable_models_are_clean(spec):
    assert mlupdate.lint(spec) == []


def test_an_mse_loss_on_a_linear_updatable_dense_passes_the_validator_with_the_device_warning():
    problems = mlupdate.lint(_updatable(loss="mse", classifier=False))
    assert [(p.severity, p.rule, p.layer) for p in problems] == [("warning", "device-linear-last-inner-product",
                                                                  "dense")]


# -- neural networks: one broken rule each ---------------------------------------------------------------
def _v3(s):
    s.specificationVersion = 3


def _no_layers_flag(s):
    for x in _nn(s).layers:
        x.isUpdatable = False


def _relu_updatable(s):
    _layer(s, "relu").isUpdatable = True


def _bias_flag(s):
    _layer(s, "dense").innerProduct.bias.isUpdatable = False


def _fp16(s):
    wp = _layer(s, "dense").innerProduct.weights
    vals = np.asarray(wp.floatValue, np.float16)
    wp.ClearField("floatValue")
    wp.float16Value = vals.tobytes()


def _collision(s):
    _layer(s, "relu").name = "lossLayer"


def _no_loss(s):
    del _nn(s).updateParams.lossLayers[:]


def _two_losses(s):
    loss = _nn(s).updateParams.lossLayers.add()
    loss.CopyFrom(_nn(s).updateParams.lossLayers[0])
    loss.name = "loss2"


def _untyped_loss(s):
    _nn(s).updateParams.lossLayers[0].ClearField("categoricalCrossEntropyLossLayer")


def _cce_on_scores(s):
    _nn(s).updateParams.lossLayers[0].categoricalCrossEntropyLossLayer.input = "z"


def _softmax_nd(s):
    sm = _layer(s, "softmax")
    sm.ClearField("softmax")
    sm.softmaxND.axis = -3


def _target_in_graph(s):
    _nn(s).updateParams.lossLayers[0].categoricalCrossEntropyLossLayer.target = "z"


def _mse_on_input(s):
    loss = _nn(s).updateParams.lossLayers[0]
    loss.ClearField("categoricalCrossEntropyLossLayer")
    loss.meanSquaredErrorLossLayer.input = "x"
    loss.meanSquaredErrorLossLayer.target = "probs_true"


def _no_optimizer(s):
    _nn(s).updateParams.ClearField("optimizer")


def _sgd_no_lr(s):
    _nn(s).updateParams.optimizer.sgdOptimizer.ClearField("learningRate")


def _lr_out_of_range(s):
    _nn(s).updateParams.optimizer.sgdOptimizer.learningRate.defaultValue = 2.0


def _batch_not_in_set(s):
    _nn(s).updateParams.optimizer.sgdOptimizer.miniBatchSize.defaultValue = 7


def _batch_zero(s):
    b = _nn(s).updateParams.optimizer.sgdOptimizer.miniBatchSize
    b.defaultValue = 0
    del b.set.values[:]
    b.set.values.append(0)


def _no_epochs(s):
    _nn(s).updateParams.ClearField("epochs")


def _epochs_range(s):
    e = _nn(s).updateParams.epochs
    e.range.minValue, e.range.maxValue = 3, 10  # default 2 lies outside


def _blocker(s):
    from coremltools.proto import NeuralNetwork_pb2

    layer = NeuralNetwork_pb2.NeuralNetworkLayer(name="leaky", input=["cr"], output=["cl"])
    layer.activation.leakyReLU.alpha = 0.1
    _insert_after(s, "relu", layer)
    _layer(s, "pool").input[0] = "cl"


def _one_training_input(s):
    del s.description.trainingInput[1:]


def _wrong_target_type(s):
    s.description.trainingInput[1].type.Clear()
    s.description.trainingInput[1].type.int64Type.SetInParent()


def _target_missing(s):
    s.description.trainingInput[1].name = "something"


BROKEN = {  # case: (rule, how to break it)
    "spec-version": ("spec-version", _v3),
    "no-updatable-layer": ("no-updatable-layer", _no_layers_flag),
    "updatable-layer-type": ("updatable-layer-type", _relu_updatable),
    "weights-not-updatable": ("weights-not-updatable", _bias_flag),
    "weight-format": ("weight-format", _fp16),
    "name-collision": ("name-collision", _collision),
    "no-loss": ("loss-count", _no_loss),
    "two-losses": ("loss-count", _two_losses),
    "loss-type": ("loss-type", _untyped_loss),
    "cce-input": ("cce-input", _cce_on_scores),
    "loss-target": ("loss-target", _target_in_graph),
    "mse-input": ("mse-input", _mse_on_input),
    "no-optimizer": ("optimizer", _no_optimizer),
    "sgd-without-lr": ("optimizer", _sgd_no_lr),
    "lr-out-of-range": ("parameter", _lr_out_of_range),
    "batch-not-in-set": ("mini-batch-size", _batch_not_in_set),
    "batch-zero": ("mini-batch-size", _batch_zero),
    "no-epochs": ("epochs", _no_epochs),
    "epochs-out-of-range": ("epochs", _epochs_range),
    "backprop": ("backprop", _blocker),
    "one-training-input": ("training-inputs", _one_training_input),
    "target-type": ("training-inputs", _wrong_target_type),
    "target-missing": ("training-inputs", _target_missing),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_each_network_rule_fails_alone(case):
    rule, breaker = BROKEN[case]
    spec = copy_spec(BASE)
    breaker(spec)
    problems = [p for p in mlupdate.lint(spec) if p.severity == "error"]
    assert {p.rule for p in problems} == {rule}, problems
    assert rule not in _rules(BASE)
    for p in problems:
        assert len(p.message) > 40


def test_messages_name_the_layer_and_the_fix():
    spec = copy_spec(BASE)
    _softmax_nd(spec)  # Core ML reports the missing softmax, and the softmaxND blocks back-propagation
    p, q = mlupdate.lint(spec)
    assert (p.rule, q.rule) == ("cce-input", "backprop")
    assert p.layer == "lossLayer" and "softmaxND 'softmax'" in p.message and "make-updatable" in p.message
    assert q.layer == "softmax" and "rewrites a final softmaxND" in q.message
    spec = copy_spec(BASE)
    _blocker(spec)
    (p,) = mlupdate.lint(spec)
    assert p.layer == "leaky" and "'conv'" in p.message and "back-propagate" in p.message
    spec = copy_spec(BASE)
    _fp16(spec)
    (p,) = mlupdate.lint(spec)
    assert p.layer == "dense" and "float16" in p.message


@pytest.mark.parametrize("mutate", [
    lambda s: setattr(_nn(s).updateParams.seed, "defaultValue", -5),  # seeds may be <= 0
    lambda s: _nn(s).updateParams.ClearField("shuffle"),  # shuffle is optional
    lambda s: setattr(s.description.trainingInput[1], "name", "probs_true") or
    s.description.trainingInput[1].type.Clear() or s.description.trainingInput[1].type.int64Type.SetInParent(),
    lambda s: _layer(s, "conv").__setattr__("isUpdatable", False) or _blocker(s),  # blocker before the trained layer
    lambda s: s.description.trainingInput.add().CopyFrom(s.description.input[0]) or None,
])
def test_edge_cases_core_ml_accepts(mutate):
    spec = copy_spec(BASE)
    mutate(spec)
    assert _rules(spec) == set()


def test_not_updatable_is_only_a_warning():
    (p,) = mlupdate.lint(_network().spec)
    assert p.severity == "warning" and p.rule == "not-updatable"
    spec = copy_spec(BASE)
    spec.isUpdatable = False
    (p,) = mlupdate.lint(spec)
    assert p.severity == "warning" and "ignores" in p.message


def test_model_type_rule():
    prog = Model_pb2.Model()
    prog.specificationVersion = 6
    prog.mlProgram.SetInParent()
    assert {p.rule for p in mlupdate.lint(prog)} == {"load"}  # mlupdate cannot run it: lint says so
    prog.isUpdatable = True
    assert {p.rule for p in mlupdate.lint(prog)} == {"model-type"}


# -- k-NN ----------------------------------------------------------------------------------------------
def _knn():
    b = KNearestNeighborsClassifierBuilder(input_name="features", output_name="label", number_of_dimensions=4,
                                           default_class_label="unknown")
    b.add_samples(np.eye(4)[:3], ["a", "b", "a"])
    return b.spec


KNN_BROKEN = {
    "knn-k": lambda s: setattr(s.kNearestNeighborsClassifier.numberOfNeighbors, "defaultValue", 0),
    "knn-weighting": lambda s: s.kNearestNeighborsClassifier.ClearField("uniformWeighting"),
    "knn-default-label": lambda s: s.kNearestNeighborsClassifier.ClearField("defaultStringLabel")
    or s.kNearestNeighborsClassifier.ClearField("stringClassLabels")
    or s.kNearestNeighborsClassifier.nearestNeighborsIndex.ClearField("floatSamples"),
    "knn-samples": lambda s: s.kNearestNeighborsClassifier.stringClassLabels.vector.append("extra"),
    "knn-index": lambda s: setattr(s.kNearestNeighborsClassifier.nearestNeighborsIndex.singleKdTreeIndex,
                                   "leafSize", 0),
    "knn-distance": lambda s: s.kNearestNeighborsClassifier.nearestNeighborsIndex.ClearField(
        "squaredEuclideanDistance"),
}


@pytest.mark.parametrize("rule", sorted(KNN_BROKEN))
def test_each_knn_rule(rule):
    base = _knn()
    assert mlupdate.lint(base) == []
    spec = copy_spec(base)
    KNN_BROKEN[rule](spec)
    assert _rules(spec) == {rule}


def test_knn_default_label_type_and_sample_length():
    spec = _knn()
    spec.kNearestNeighborsClassifier.defaultInt64Label = 3
    assert _rules(spec) == {"knn-default-label"}
    spec = _knn()
    spec.kNearestNeighborsClassifier.nearestNeighborsIndex.floatSamples[0].vector.append(1.0)
    assert _rules(spec) == {"knn-samples"}


# -- pipelines and linked models -------------------------------------------------------------------------
def _pipeline(updatable=True):
    spec = Model_pb2.Model()
    spec.specificationVersion = 4
    spec.isUpdatable = updatable
    pipe = spec.pipelineClassifier.pipeline
    extractor = pipe.models.add()
    extractor.CopyFrom(_network(classifier=False).spec)
    extractor.specificationVersion = 4
    knn = pipe.models.add()
    knn.CopyFrom(_knn())
    knn.isUpdatable = updatable
    knn.description.input[0].name = "probs"  # the extractor's output feeds the k-NN (Core ML checks the names)
    knn.description.input[0].type.CopyFrom(extractor.description.output[0].type)
    knn.description.trainingInput[0].CopyFrom(knn.description.input[0])
    spec.description.input.extend(extractor.description.input)  # a pipeline declares its own interface
    spec.description.output.extend(knn.description.output)
    spec.description.predictedFeatureName = knn.description.predictedFeatureName
    return spec


def test_pipeline_rules():
    assert mlupdate.lint(_pipeline()) == []
    first = _pipeline()
    first.pipelineClassifier.pipeline.models[0].CopyFrom(BASE)
    assert "pipeline-updatable" in _rules(first)
    last = _pipeline()
    last.pipelineClassifier.pipeline.models[1].isUpdatable = False
    assert _rules(last) == {"pipeline-updatable"}
    inner = _pipeline(updatable=False)
    inner.pipelineClassifier.pipeline.models[1].isUpdatable = True
    assert _rules(inner) == {"pipeline-updatable"}
    names = _pipeline()
    names.pipelineClassifier.pipeline.names.extend(["x", "x"])
    assert _rules(names) == {"pipeline-names"}
    named = _pipeline()
    named.pipelineClassifier.pipeline.names.extend(["x", "y"])
    assert _rules(named) == set()
    nested = _pipeline()
    nested.pipelineClassifier.pipeline.models[1].kNearestNeighborsClassifier.numberOfNeighbors.defaultValue = -1
    found = mlupdate.lint(nested)
    assert {p.rule for p in found} == {"knn-k"} and all(p.message.startswith("pipeline model 1:") for p in found)


def test_linked_model_rules():
    spec = Model_pb2.Model()
    spec.specificationVersion = 4
    spec.linkedModel.linkedModelFile.linkedModelFileName.defaultValue = "Extractor.mlmodelc"
    assert _rules(spec) == {"load"}  # valid for Core ML, but a bare spec has no folder to find the file in
    spec.linkedModel.linkedModelFile.linkedModelFileName.defaultValue = ""
    assert _rules(spec) == {"linked-model"}
    spec.isUpdatable = True
    assert _rules(spec) == {"linked-model", "model-type"}


# -- CLI -------------------------------------------------------------------------------------------------
def test_cli_exit_codes(tmp_path, capsys):
    good, bad, junk = tmp_path / "good.mlmodel", tmp_path / "bad.mlmodel", tmp_path / "junk.mlmodel"
    write_spec(BASE, good)
    broken = copy_spec(BASE)
    _softmax_nd(broken)
    write_spec(broken, bad)
    junk.write_bytes(b"not a model")
    assert main(["lint", str(good)]) == 0
    assert "no problems" in capsys.readouterr().out
    assert main(["lint", str(bad)]) == 1
    out = capsys.readouterr().out
    assert "error [cce-input] (layer 'lossLayer')" in out and "2 error(s)" in out
    assert main(["lint", str(bad), "--json"]) == 1
    assert json.loads(capsys.readouterr().out)[0]["rule"] == "cce-input"
    assert main(["lint", str(junk)]) == 2
    assert "not a readable Core ML" in capsys.readouterr().err
    assert main(["lint", str(tmp_path / "missing.mlmodel")]) == 2


def test_lint_reports_what_load_refuses(tmp_path):
    from tests.unit.test_layers_base import builder, save

    b = builder([("x", (2, 6))], ("out",), nd=True)
    b.add_inner_product("fc", np.ones((4, 5), np.float32), None, 5, 4, False, "x", "out")  # 5 inputs, x has 6
    path = save(b, tmp_path)
    with pytest.raises(mlupdate.LayerError) as err:
        mlupdate.load(path)
    found = [p for p in mlupdate.lint(path) if p.rule == "load"]
    assert len(found) == 1 and found[0].severity == "error" and "'fc'" in found[0].message
    assert str(err.value) in found[0].message


def test_errors_only_skips_the_warnings_but_keeps_every_error():
    spec = _updatable()
    _layer(spec, "conv").convolution.weights.floatValue[0] = float("nan")
    assert any(p.rule == "non-finite" for p in mlupdate.lint(spec))
    assert not any(p.rule == "non-finite" for p in mlupdate.lint(spec, errors_only=True))
    _nn(spec).updateParams.ClearField("lossLayers")
    everything = [p for p in mlupdate.lint(spec) if p.severity == "error"]
    assert everything and mlupdate.lint(spec, errors_only=True) == everything
