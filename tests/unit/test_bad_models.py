"""The bad model files the issue measured: each is refused with an mlupdate.Error, never a raw exception."""

from __future__ import annotations

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
