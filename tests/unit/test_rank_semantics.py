"""Core ML's rank rules at the network's edges: ND inputs without a batch axis, legacy sequences,
ND image inputs, and outputs in their declared shapes and data types."""

from __future__ import annotations

import numpy as np
import pytest
from coremltools.models import datatypes
from coremltools.models.neural_network import NeuralNetworkBuilder
from coremltools.proto import FeatureTypes_pb2
from PIL import Image

import mlupdate
from tests.unit.test_layers_base import EXECUTORS, builder, save


@pytest.mark.parametrize("executor", EXECUTORS)
def test_nd_axis_0_is_a_core_ml_axis(tmp_path, executor):
    b = builder([("x", (5, 3))], ("s", "r", "q"), nd=True)
    b.add_slice_static("s", "x", "s", [1, 0], [4, 3], [1, 1], [False, True], [False, True], [False, False])
    b.add_reduce_sum("r", "x", "r", reduce_all=True, keepdims=False)
    b.add_reduce_mean("q", "x", "q", axes=[0], keepdims=True)
    model = mlupdate.load(save(b, tmp_path), executor=executor)
    x = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    got = model.predict_batch([{"x": x}, {"x": x[::-1].copy()}])[0]
    np.testing.assert_allclose(got["s"], x[1:4], rtol=1e-6)
    assert got["r"].shape == (1,)  # Core ML has no rank-0 tensors
    np.testing.assert_allclose(got["r"], [x.sum()], rtol=1e-5)
    np.testing.assert_allclose(got["q"], x.mean(0, keepdims=True), rtol=1e-5)


@pytest.mark.parametrize("executor", EXECUTORS)
def test_outputs_keep_their_declared_data_type(tmp_path, executor):
    b = builder([("x", (3,))], ("d", "i"), nd=True)
    b.add_activation("a", "RELU", "x", "d")
    b.add_floor("f", "x", "i")
    arrays = FeatureTypes_pb2.ArrayFeatureType
    b.spec.description.output[0].type.multiArrayType.dataType = arrays.DOUBLE
    b.spec.description.output[1].type.multiArrayType.dataType = arrays.INT32
    model = mlupdate.load(save(b, tmp_path), executor=executor)
    got = model.predict({"x": np.array([-1.5, 0.25, 2.75], np.float32)})
    assert got["d"].dtype == np.float64 and got["i"].dtype == np.int32
    np.testing.assert_array_equal(got["i"], [-2, 0, 2])


@pytest.mark.parametrize("executor", EXECUTORS)
def test_legacy_rank5_input_with_a_sequence(tmp_path, executor):
    b = NeuralNetworkBuilder([("x", datatypes.Array(4, 1, 3, 1, 1))], [("y", None)])
    b.add_activation("a", "LINEAR", "x", "y", params=[2.0, 1.0])
    model = mlupdate.load(save(b, tmp_path), executor=executor)
    x = np.arange(12, dtype=np.float32).reshape(4, 1, 3, 1, 1)
    got = model.predict_batch([{"x": x}, {"x": -x}])
    assert got[0]["y"].shape == (4, 1, 3, 1, 1)
    np.testing.assert_allclose(got[0]["y"], 2 * x + 1)
    np.testing.assert_allclose(got[1]["y"], -2 * x + 1)


@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize("rank4", [True, False])
def test_nd_image_inputs_have_the_mapped_rank(tmp_path, executor, rank4):
    # coremltools' make_image_input adds a transpose like this one to NHWC inputs
    rank = 4 if rank4 else 5
    b = builder([("image", (1, 3, 2, 4) if rank4 else (1, 1, 3, 2, 4))], ("y",), nd=True)
    b.add_transpose("t", [0, 2, 3, 1] if rank4 else [0, 1, 3, 4, 2], "image", "y")
    b.spec.neuralNetwork.imageInputShapeMapping = 1 if rank4 else 0
    inp = b.spec.description.input[0]
    inp.type.imageType.width, inp.type.imageType.height = 4, 2
    inp.type.imageType.colorSpace = FeatureTypes_pb2.ImageFeatureType.RGB
    model = mlupdate.load(save(b, tmp_path), executor=executor)
    pixels = np.random.default_rng(1).integers(0, 256, (2, 4, 3), dtype=np.uint8)
    y = model.predict({"image": Image.fromarray(pixels)})["y"]
    assert y.ndim == rank
    np.testing.assert_allclose(y.reshape(2, 4, 3), pixels.astype(np.float32))
