"""predict_batch runs in chunks: the same results as one-by-one, and memory that does not grow with the count."""

from __future__ import annotations

import tracemalloc

import numpy as np
from coremltools.proto import FeatureTypes_pb2

import mlupdate
from tests.unit.test_layers_base import builder, save


def _image_model(tmp_path):
    b = builder([("image", (3, 224, 224))], ("y",))
    b.add_pooling("gap", 0, 0, 0, 0, "AVERAGE", "VALID", "image", "y", is_global=True)
    img = b.spec.description.input[0].type.imageType
    img.width, img.height, img.colorSpace = 224, 224, FeatureTypes_pb2.ImageFeatureType.RGB
    return mlupdate.load(save(b, tmp_path), executor="torch")


def _peak(model, examples):
    tracemalloc.start()
    model.predict_batch(examples)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def test_chunked_results_equal_single_predictions(tmp_path, pets):
    model = _image_model(tmp_path)
    photos = sorted((pets / "test" / "cat").glob("*.jpg"))[:40]
    batch = model.predict_batch([{"image": p} for p in photos])
    for p, got in zip(photos, batch, strict=True):
        np.testing.assert_array_equal(got["y"], model.predict({"image": p})["y"])


def test_peak_memory_does_not_grow_with_the_number_of_inputs(tmp_path, pets):
    model = _image_model(tmp_path)
    photo = sorted((pets / "test" / "dog").glob("*.jpg"))[0]
    small = _peak(model, [{"image": photo}] * 64)
    large = _peak(model, [{"image": photo}] * 320)
    # 320 decoded 224x224 float32 images would take 190 MB at once; chunks of 32 take 19 MB
    assert large < 1.5 * small, (small, large)
