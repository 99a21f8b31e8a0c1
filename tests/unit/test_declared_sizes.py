"""Declared sizes are checked before anything is allocated; lint and load agree; NaN weights are flagged."""

from __future__ import annotations

import numpy as np
import pytest

import mlupdate
from tests.unit.test_layers_base import builder, save


def _array_model(tmp_path, shape):
    b = builder([("x", (3,))], ("y",), nd=True)
    b.add_activation("a", "RELU", "x", "y")
    inp = b.spec.description.input[0].type.multiArrayType
    del inp.shape[:]
    inp.shape.extend(shape)
    path = tmp_path / "m.mlmodel"
    path.write_bytes(b.spec.SerializeToString())
    return path


@pytest.mark.parametrize("shape", [[2147483647], [-3], [100000, 100000]])
def test_huge_or_negative_arrays_are_refused_by_load_and_lint(tmp_path, shape):
    path = _array_model(tmp_path, shape)
    with pytest.raises(mlupdate.SpecError, match="x"):
        mlupdate.load(path)
    assert any(p.rule == "declared-size" and p.severity == "error" for p in mlupdate.lint(path))


def test_a_huge_image_is_refused_and_the_limit_is_settable(tmp_path, monkeypatch):
    from coremltools.proto import FeatureTypes_pb2

    b = builder([("image", (3, 4, 4))], ("y",))
    b.add_activation("a", "RELU", "image", "y")
    img = b.spec.description.input[0].type.imageType
    img.width, img.height, img.colorSpace = 30000, 30000, FeatureTypes_pb2.ImageFeatureType.RGB
    path = tmp_path / "m.mlmodel"
    path.write_bytes(b.spec.SerializeToString())
    with pytest.raises(mlupdate.SpecError, match="30000x30000"):
        mlupdate.load(path)
    monkeypatch.setenv("MLUPDATE_MAX_IMAGE_PIXELS", "10")
    small = _array_model(tmp_path, [3])
    mlupdate.load(small)  # arrays are not images: still fine


def test_nan_weights_are_a_lint_warning(tmp_path):
    b = builder([("x", (2,))], ("y",), nd=True)
    b.add_inner_product("fc", np.array([[1.0, np.nan]], np.float32), None, 2, 1, False, "x", "y")
    problems = mlupdate.lint(save(b, tmp_path))
    assert any(p.rule == "non-finite" and p.layer == "fc" for p in problems)


def test_a_layer_that_would_produce_a_huge_tensor_is_refused_at_load(tmp_path):
    b = builder([("x", (1,))], ("y",), nd=True)
    b.add_broadcast_to_static("big", "x", "y", output_shape=[2147483647])  # found by the fuzzer: 16 GiB
    with pytest.raises(mlupdate.LayerError, match="limit"):
        mlupdate.load(save(b, tmp_path), executor="torch")
