"""Flexible multiarray inputs (enumerated shapes, shape ranges) and Core ML's strict input checks."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import mlupdate
from tests.unit.test_layers_base import builder, save


def _model(tmp_path, flex):
    b = builder([("x", (2, 3))], ("y",), nd=True)
    b.add_reduce_sum("r", "x", "y", axes=[-1], keepdims=False)
    flex(b.spec)
    return mlupdate.load(save(b, tmp_path))


def test_enumerated_shapes_are_accepted_and_others_refused(tmp_path):
    def flex(spec):
        for shape in ((2, 3), (4, 3), (1, 5)):
            spec.description.input[0].type.multiArrayType.enumeratedShapes.shapes.add().shape.extend(shape)

    model = _model(tmp_path, flex)
    assert "[2, 3] or [4, 3] or [1, 5]" in str(model.description.inputs["x"])
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    z = np.arange(5, dtype=np.float32).reshape(1, 5)
    got = model.predict_batch([{"x": x}, {"x": z}])
    np.testing.assert_allclose(got[0]["y"], x.sum(-1))
    np.testing.assert_allclose(got[1]["y"], z.sum(-1))
    with pytest.raises(mlupdate.FeatureError, match=r"\[3, 3\]"):
        model.predict({"x": np.ones((3, 3), np.float32)})


def test_shape_ranges_are_checked_per_axis(tmp_path):
    def flex(spec):  # the proto's fields set directly: axis 0 in 1..4, axis 1 at least 3
        for lo, hi in ((1, 4), (3, -1)):
            size = spec.description.input[0].type.multiArrayType.shapeRange.sizeRanges.add()
            size.lowerBound, size.upperBound = lo, hi

    model = _model(tmp_path, flex)
    assert "[1..4, 3..]" in str(model.description.inputs["x"])
    x = np.arange(21, dtype=np.float32).reshape(3, 7)
    np.testing.assert_allclose(model.predict({"x": x})["y"], x.sum(-1))
    for bad in ((5, 3), (2, 2), (2, 3, 1)):
        with pytest.raises(mlupdate.FeatureError):
            model.predict({"x": np.ones(bad, np.float32)})


def test_a_wrong_rank_and_an_image_are_refused_for_an_array_input(tmp_path):
    b = builder([("x", (1, 4, 4))], ("y",), nd=True)
    b.add_activation("a", "RELU", "x", "y")
    model = mlupdate.load(save(b, tmp_path))
    with pytest.raises(mlupdate.FeatureError, match="rank"):
        model.predict({"x": np.ones((4, 4), np.float32)})
    with pytest.raises(mlupdate.FeatureError, match="image"):
        model.predict({"x": Image.new("L", (4, 4))})


def test_a_shape_range_is_checked_against_the_layers_at_predict_not_at_load(tmp_path):
    # the default shape (1, 1, 6, 6) has 1 channel, the convolution 4; the range allows 1 to 8 channels, so Core ML
    # loads the model and runs the inputs that fit (the MIL conv tests with a symbolic channel axis do this)
    from coremltools.models.neural_network import flexible_shape_utils

    w = np.random.default_rng(0).uniform(-1, 1, (3, 3, 4, 2)).astype(np.float32)  # [kh, kw, C_in, C_out]
    b = builder([("x", (1, 1, 6, 6))], ("y",), nd=True)
    b.add_convolution("conv", 4, 2, 3, 3, 1, 1, "valid", 1, w, None, False, input_name="x", output_name="y")
    flexible_shape_utils.set_multiarray_ndshape_range(b.spec, "x", lower_bounds=[1, 1, 3, 3],
                                                      upper_bounds=[1, 8, -1, -1])
    model = mlupdate.load(save(b, tmp_path))
    x = np.random.default_rng(1).uniform(-1, 1, (1, 4, 5, 7)).astype(np.float32)
    win = np.lib.stride_tricks.sliding_window_view(x[0], (3, 3), axis=(1, 2))  # [C, 3, 5, kh, kw]
    want = np.einsum("chwij,ijco->ohw", win, w)[None]  # the proto's valid cross-correlation
    np.testing.assert_allclose(model.predict({"x": x})["y"], want, atol=1e-5)
    with pytest.raises(mlupdate.LayerError, match="conv"):  # a shape in the range that the layer cannot take
        model.predict({"x": np.ones((1, 3, 5, 5), np.float32)})
