"""The bad model files the issue measured: each is refused with an mlupdate.Error, never a raw exception."""

from __future__ import annotations

import re

import numpy as np
import pytest
from coremltools.models.nearest_neighbors import KNearestNeighborsClassifierBuilder

import mlupdate
from tests.unit.test_layers_base import builder, rand


def _conv(b):
    b.add_convolution("conv", 2, 3, 3, 3, 1, 1, "valid", 1, rand(3, 2, 3, 3), None, False,
                      input_name="x", output_name="out")


def _set(path):
    def mutate(spec):
        layer = spec.neuralNetwork.layers[0]
        *parents, last = path.split(".")
        msg = layer
        for p in parents:
            msg = getattr(msg, p)
        value = getattr(msg, last)
        if hasattr(value, "extend"):  # a repeated field: every entry 0
            del value[:]
            value.extend([0, 0])
        else:
            setattr(msg, last, 0)
    return mutate


BAD = {
    "conv stride 0": (_conv, _set("convolution.stride")),
    "conv dilation 0": (_conv, _set("convolution.dilationFactor")),
    "reorganizeData block size 0": (lambda b: b.add_reorganize_data("r", "x", "out", block_size=2),
                                    _set("reorganizeData.blockSize")),
    "pooling kernel larger than input": (lambda b: b.add_pooling("p", 9, 9, 1, 1, "MAX", "VALID", "x", "out"), None),
    "LRN size 0": (lambda b: b.add_lrn("l", "x", "out", alpha=1e-4, beta=0.75, local_size=3), _set("lrn.localSize")),
    "PReLU without alpha": (lambda b: b.add_activation("a", "PRELU", "x", "out", params=np.ones(2, np.float32)),
                            lambda spec: spec.neuralNetwork.layers[0].activation.PReLU.ClearField("alpha")),
    "batchnorm with 0 channels": (lambda b: b.add_batchnorm("bn", 2, np.ones(2), np.zeros(2), np.zeros(2),
                                                            np.ones(2), input_name="x", output_name="out"),
                                  _set("batchnorm.channels")),
    "innerProduct that does not fit its input": (
        lambda b: b.add_inner_product("fc", np.ones((3, 5), np.float32), None, 5, 3, False, "x", "out"), None),
    "a layer missing an input": (lambda b: b.add_elementwise("add", ["x", "x"], "out", "ADD"),
                                 lambda spec: spec.neuralNetwork.layers[0].ClearField("input")),
}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_layer_files_are_refused_with_an_mlupdate_error(tmp_path, case):
    add, mutate = BAD[case]
    b = builder([("x", (2, 4, 4))], ("out",))
    add(b)
    if mutate is not None:
        mutate(b.spec)
    path = tmp_path / "bad.mlmodel"
    path.write_bytes(b.spec.SerializeToString())
    with pytest.raises(mlupdate.Error):
        mlupdate.load(path)
    assert any(p.severity == "error" for p in mlupdate.lint(path))


@pytest.mark.parametrize("damage", ["no input", "negative dimensions"])
def test_bad_knn_files_are_refused(tmp_path, damage):
    b = KNearestNeighborsClassifierBuilder(input_name="f", output_name="label", number_of_dimensions=3,
                                           default_class_label="none")
    b.add_samples(np.eye(3), ["a", "b", "a"])
    if damage == "no input":
        del b.spec.description.input[:]
    else:
        b.spec.kNearestNeighborsClassifier.nearestNeighborsIndex.numberOfDimensions = -3
    path = tmp_path / "bad.mlmodel"
    path.write_bytes(b.spec.SerializeToString())
    with pytest.raises(mlupdate.Error):
        mlupdate.load(path)


HUGE = 1 << 31


def _field(path, value=HUGE):
    """Set a (possibly repeated) field of the first layer to ``value`` in every entry."""
    def mutate(spec):
        *parents, last = path.split(".")
        msg = spec.neuralNetwork.layers[0]
        for p in parents:
            msg = getattr(msg, p)
        field = getattr(msg, last)
        if hasattr(field, "extend"):
            n = len(field) or 2
            del field[:]
            field.extend([value] * n)
        else:
            setattr(msg, last, value)
    return mutate


# Layers whose output size a parameter sets: a huge value must be refused before anything is
# allocated or looped over (the fuzzer found split.nOutputs = 2^31 looping for minutes).
OVERSIZED = {
    "split nOutputs": (False, lambda b: b.add_split("s", "x", ["out", "o2"]), _field("split.nOutputs")),
    "upsample factor": (False, lambda b: b.add_upsample("u", 2, 2, "x", "out"), _field("upsample.scalingFactor")),
    "resizeBilinear targetSize": (False, lambda b: b.add_resize_bilinear("r", "x", "out", 2, 2),
                                  _field("resizeBilinear.targetSize", 1 << 16)),
    "padding amounts": (False, lambda b: b.add_padding("p", 1, 1, 1, 1, input_name="x", output_name="out"),
                        lambda spec: [setattr(a, "startEdgeSize", 1 << 16) for a in
                                      spec.neuralNetwork.layers[0].padding.paddingAmounts.borderAmounts]),
    "deconvolution stride": (False, lambda b: b.add_convolution("d", 2, 2, 3, 3, 1, 1, "valid", 1, rand(2, 2, 3, 3),
                                                                None, False, is_deconv=True, input_name="x",
                                                                output_name="out"),
                             _field("convolution.stride", 1 << 16)),
    "fillStatic targetShape": (True, lambda b: b.add_fill_static("f", "out", [2, 2]),
                               _field("fillStatic.targetShape", 1 << 16)),
    "rangeStatic end": (True, lambda b: b.add_range_static("r", "out", end=4),
                        _field("rangeStatic.endValue", 1e12)),
    "tile reps": (True, lambda b: b.add_tile("t", "x", "out", [2, 2, 2]), _field("tile.reps", 1 << 12)),
    "constantPad amounts": (True, lambda b: b.add_constant_pad("c", ["x"], "out", pad_amounts=[1, 1, 1, 1, 1, 1]),
                            _field("constantPad.padAmounts", 1 << 12)),
    "randomUniformStatic outputShape": (True, lambda b: b.add_random_uniform_static("r", "out", [2, 2]),
                                        _field("randomUniformStatic.outputShape", 1 << 16)),
    "oneHot size": (True, lambda b: b.add_one_hot("o", ["x"], "out", one_hot_vector_size=3),
                    _field("oneHot.oneHotVectorSize", HUGE)),
    "sequenceRepeat nRepetitions": (False, lambda b: b.add_sequence_repeat("s", 2, "x", "out"),
                                    _field("sequenceRepeat.nRepetitions", HUGE)),
}


@pytest.mark.parametrize("case", list(OVERSIZED), ids=list(OVERSIZED))
def test_parameters_that_would_make_huge_outputs_are_refused_at_load(tmp_path, case):
    nd, add, mutate = OVERSIZED[case]
    b = builder([("x", (2, 4, 4))], ("out",), nd=nd)
    add(b)
    mutate(b.spec)
    path = tmp_path / "huge.mlmodel"
    path.write_bytes(b.spec.SerializeToString())
    with pytest.raises(mlupdate.Error, match="limit|parts"):
        mlupdate.load(path)


def _sklearn_spec(kind):
    import warnings

    import coremltools as ct
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.svm import SVC

    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((20, 3)), np.arange(20) % 2
    est = RandomForestClassifier(2, max_depth=2, random_state=0) if kind == "forest" else SVC()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ct.converters.sklearn.convert(est.fit(x, y), "x", "y").get_spec()


def _forest_dims(spec):  # found by the fuzzer: numPredictionDimensions = 2^31 allocated 432 GiB
    spec.treeEnsembleClassifier.treeEnsemble.numPredictionDimensions = HUGE


def _sparse_svm(spec):
    svc = spec.supportVectorClassifier
    vectors = [list(v.values) for v in svc.denseSupportVectors.vectors]
    svc.ClearField("denseSupportVectors")
    for v in vectors:
        node = svc.sparseSupportVectors.vectors.add().nodes.add()
        node.index, node.value = 1, v[0]
    svc.sparseSupportVectors.vectors[0].nodes[0].index = HUGE - 1  # an int32 field
    spec.description.input[0].type.multiArrayType.ClearField("shape")


@pytest.mark.parametrize(("kind", "mutate"), [("forest", _forest_dims), ("svm", _sparse_svm)],
                         ids=["tree numPredictionDimensions", "SVM sparse index"])
def test_classic_counts_past_the_limit_are_refused_before_allocating(kind, mutate):
    spec = _sklearn_spec(kind)
    mutate(spec)
    with pytest.raises(mlupdate.SpecError, match="limit"):
        mlupdate.Model(spec)


# -- the four findings of the outside fuzzer (issue 19) -------------------------------------------------------


def _updatable_knn():
    b = KNearestNeighborsClassifierBuilder(input_name="features", output_name="label", number_of_dimensions=4,
                                           default_class_label="none", k=2)
    b.add_samples(np.random.default_rng(0).standard_normal((5, 4)), ["a", "b", "a", "b", "a"])
    b.spec.isUpdatable = True
    return b.spec


def test_a_knn_whose_input_is_a_dictionary_is_refused_naming_the_input():
    spec = _updatable_knn()
    for fd in (spec.description.input[0], spec.description.trainingInput[0]):
        fd.type.ClearField("multiArrayType")
        fd.type.dictionaryType.stringKeyType.SetInParent()
    with pytest.raises(mlupdate.Error, match="'features' is declared a dictionary.*multiArray of shape \\[4\\]"):
        mlupdate.UpdateTask(spec, [{"features": {"a": 1.0}, "label": "a"}])
    assert any(p.severity == "error" and "dictionary" in p.message for p in mlupdate.lint(spec))


def test_a_knn_training_value_that_is_not_a_vector_is_refused_naming_the_example():
    model = mlupdate.Model(_updatable_knn())
    with pytest.raises(mlupdate.FeatureError, match="example 0: Input 'features' must be a numeric array.*dict"):
        mlupdate.UpdateTask(model, [{"features": {"a": 1.0}, "label": "a"}])


@pytest.mark.parametrize("samples", [0, 5], ids=["empty", "with samples"])
def test_a_knn_index_with_negative_dimensions_is_refused_naming_the_field(samples):
    spec = _updatable_knn()
    knn = spec.kNearestNeighborsClassifier
    knn.nearestNeighborsIndex.numberOfDimensions = -4
    del knn.nearestNeighborsIndex.floatSamples[samples:]
    del knn.stringClassLabels.vector[samples:]
    with pytest.raises(mlupdate.SpecError, match="numberOfDimensions is -4; it must be positive"):
        mlupdate.Model(spec)
    assert any(p.severity == "error" and "numberOfDimensions" in p.message for p in mlupdate.lint(spec))


@pytest.mark.parametrize("values", [0, 47], ids=["empty", "one short"])
def test_a_mean_image_of_the_wrong_size_is_refused_naming_the_field(values):
    from coremltools.models import datatypes
    from coremltools.models.neural_network import NeuralNetworkBuilder

    b = NeuralNetworkBuilder([("image", datatypes.Array(3, 4, 4))], [("out", None)])
    b.add_activation("relu", "RELU", "image", "out")
    b.set_pre_processing_parameters(image_input_names=["image"])
    pre = b.nn_spec.preprocessing[0]
    pre.ClearField("scaler")
    pre.meanImage.meanImage.extend([0.5] * values)
    assert b.spec.description.input[0].type.WhichOneof("Type") == "imageType"
    with pytest.raises(mlupdate.SpecError, match=f"meanImage holds {values} values but the image is 3x4x4.*48"):
        mlupdate.Model(b.spec)
    assert any(p.severity == "error" and "meanImage" in p.message for p in mlupdate.lint(b.spec))


def test_a_mean_image_of_the_right_size_is_subtracted():
    from coremltools.models import datatypes
    from coremltools.models.neural_network import NeuralNetworkBuilder

    b = NeuralNetworkBuilder([("image", datatypes.Array(3, 4, 4))], [("out", None)])
    b.add_activation("linear", "LINEAR", "image", "out", params=[1.0, 0.0])
    b.set_pre_processing_parameters(image_input_names=["image"])
    pre = b.nn_spec.preprocessing[0]
    pre.ClearField("scaler")
    mean = np.arange(48, dtype=np.float32)
    pre.meanImage.meanImage.extend(mean.tolist())
    pixels = np.full((4, 4, 3), 100, np.uint8)  # HxWxC
    out = mlupdate.Model(b.spec).predict({"image": pixels})["out"]
    np.testing.assert_allclose(np.asarray(out).reshape(3, 4, 4), 100.0 - mean.reshape(3, 4, 4))


def _regressor_with_target_shape(shape):
    from tests.unit import _update_models as M

    spec = M.mse_regressor()
    target = next(t for t in spec.description.trainingInput if t.name == "out_true")
    del target.type.multiArrayType.shape[:]
    target.type.multiArrayType.shape.extend(shape)
    return spec


@pytest.mark.parametrize("shape", [[4], [1]], ids=["larger", "smaller (torch would broadcast it)"])
def test_a_training_input_shaped_unlike_the_loss_input_is_refused_before_training(shape):
    spec = _regressor_with_target_shape(shape)
    rng = np.random.default_rng(0)
    rows = [{"input": rng.standard_normal(4).astype(np.float32),
             "out_true": rng.standard_normal(shape).astype(np.float32)} for _ in range(4)]
    want = re.escape(f"'out_true' declares shape {shape} but MSE loss 'mse' compares it with 'out', declared [2]")
    with pytest.raises(mlupdate.NotUpdatableError, match=want):
        mlupdate.UpdateTask(spec, rows)
    assert [p.rule for p in mlupdate.lint(spec) if p.severity == "error"] == ["loss-target-shape"]


def test_an_mse_target_that_is_not_an_array_is_refused():
    spec = _regressor_with_target_shape([2])
    target = next(t for t in spec.description.trainingInput if t.name == "out_true")
    target.type.ClearField("multiArrayType")
    target.type.stringType.SetInParent()
    problems = [p for p in mlupdate.lint(spec) if p.rule == "loss-target-shape"]
    assert problems and "must be a multiArray" in problems[0].message

