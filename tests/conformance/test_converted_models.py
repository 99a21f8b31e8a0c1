"""Conformance: PyTorch models converted by coremltools (neuralnetwork backend) predict like PyTorch.

Each architecture is converted once per module with ``tests.helpers.ct_convert``; mlupdate must
match the torch module within 1e-4 through ``predict`` and ``predict_batch`` (3 examples) on both
executors. Image variants feed HxWx3 uint8 arrays and compare with torch on the same
preprocessed pixels (``x * scale + bias``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import mlupdate
from tests.helpers import ct_convert

EXECUTORS = ("torch", "onnxruntime")
ATOL = 1e-4


class PlainCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 12, 3, stride=2), nn.Tanh(), nn.AvgPool2d(2, ceil_mode=False),
        )
        self.head = nn.Linear(12 * 1 * 1, 5)

    def forward(self, x):
        return self.head(torch.flatten(self.features(x), 1))


class ResidualBN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.block = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                                   nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8))
        self.down = nn.Sequential(nn.Conv2d(8, 16, 1, stride=2, bias=False), nn.BatchNorm2d(16))
        self.block2 = nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(16))
        self.fc = nn.Linear(16, 4)

    def forward(self, x):
        x = self.stem(x)
        x = torch.relu(x + self.block(x))
        x = torch.relu(self.down(x) + self.block2(x))
        return torch.softmax(self.fc(x.mean(dim=(2, 3))), dim=1)


class InvertedResidual(nn.Module):
    def __init__(self, c: int, expand: int) -> None:
        super().__init__()
        h = c * expand
        self.body = nn.Sequential(nn.Conv2d(c, h, 1, bias=False), nn.BatchNorm2d(h), nn.ReLU6(),
                                  nn.Conv2d(h, h, 3, padding=1, groups=h, bias=False), nn.BatchNorm2d(h), nn.ReLU6(),
                                  nn.Conv2d(h, c, 1, bias=False), nn.BatchNorm2d(c))

    def forward(self, x):
        return x + self.body(x)


class MobileNetV2ish(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU6())
        self.blocks = nn.Sequential(InvertedResidual(8, 4), InvertedResidual(8, 2))
        self.dw = nn.Sequential(nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8), nn.ReLU6(), nn.Conv2d(8, 16, 1))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 3)

    def forward(self, x):
        x = self.dw(self.blocks(self.stem(x)))
        return self.fc(self.pool(x).flatten(1))


class SqueezeExcite(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc1 = nn.Conv2d(8, 4, 1)
        self.fc2 = nn.Conv2d(4, 8, 1)
        self.lin1 = nn.Linear(8, 2)
        self.lin2 = nn.Linear(2, 8)
        self.out = nn.Linear(8, 6)

    def forward(self, x):
        x = torch.relu(self.conv(x))
        s = torch.sigmoid(self.fc2(torch.relu(self.fc1(x.mean(dim=(2, 3), keepdim=True)))))
        x = x * s
        t = torch.sigmoid(self.lin2(torch.relu(self.lin1(x.mean(dim=(2, 3))))))
        x = x * t[:, :, None, None]
        return self.out(x.amax(dim=(2, 3)))


class ChannelConcat(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 4, 1)
        self.b = nn.Conv2d(3, 6, 3, padding=1)
        self.c = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1), nn.Conv2d(3, 2, 1))
        self.fuse = nn.Conv2d(12, 5, 3, stride=2)
        self.fc = nn.Linear(5 * 3 * 3, 4)

    def forward(self, x):
        y = torch.cat([self.a(x), self.b(x), self.c(x)], dim=1)
        # x.reshape(x.shape[0], -1) makes coremltools 9 fail on its "int" op with torch 2.13: flatten instead
        return self.fc(torch.relu(self.fuse(y)).flatten(1))


class UpsampleDecoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Conv2d(3, 6, 3, stride=2, padding=1)
        self.dec = nn.ConvTranspose2d(6, 4, 3, stride=2, padding=1, output_padding=1)
        self.dec2 = nn.ConvTranspose2d(4, 4, 2, stride=2)
        self.up_nn = nn.Upsample(scale_factor=2, mode="nearest")
        self.up_bl = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        self.up_ac = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
        self.head = nn.Conv2d(12, 2, 1)

    def forward(self, x):
        y = torch.relu(self.enc(x))
        z = torch.relu(self.dec(y))
        w = self.dec2(z)
        return self.head(torch.cat([self.up_nn(z), self.up_bl(z), self.up_ac(z)], 1)) + w.mean(1, keepdim=True)


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Dropout(0.1), nn.Linear(16, 16), nn.ELU(),
                                 nn.LayerNorm(16), nn.Linear(16, 3))

    def forward(self, x):
        return torch.log_softmax(self.net(x), dim=-1)


ARRAY_MODELS = {
    "plain_cnn": (PlainCNN, (1, 3, 16, 16)),
    "residual_bn": (ResidualBN, (1, 3, 12, 12)),
    "mobilenet_v2ish": (MobileNetV2ish, (1, 3, 16, 16)),
    "squeeze_excite": (SqueezeExcite, (1, 3, 10, 10)),
    "channel_concat": (ChannelConcat, (1, 3, 8, 8)),
    "upsample_decoder": (UpsampleDecoder, (1, 3, 8, 8)),
    "mlp": (MLP, (1, 10)),
}


def _init(module: nn.Module, seed: int) -> nn.Module:
    """Random weights and non-trivial batch-norm statistics, in eval mode."""
    torch.manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.3, 0.3)
    return module.eval()


@pytest.fixture(scope="module", params=list(ARRAY_MODELS))
def array_model(request, tmp_path_factory):
    cls, shape = ARRAY_MODELS[request.param]
    torch.manual_seed(0)
    module = _init(cls(), 0)
    path = ct_convert(module, torch.rand(*shape), tmp_path_factory.mktemp(request.param) / "m.mlmodel")
    return request.param, module, shape, path


def _only_output(model: mlupdate.Model, result: dict) -> np.ndarray:
    (name,) = model.description.outputs
    return np.asarray(result[name])


@pytest.mark.parametrize("executor", EXECUTORS)
def test_converted_model_matches_torch(array_model, executor):
    name, module, shape, path = array_model
    model = mlupdate.load(path, executor=executor)
    rng = np.random.default_rng(1)
    xs = [rng.uniform(-1, 1, shape).astype(np.float32) for _ in range(3)]
    with torch.no_grad():
        want = [module(torch.from_numpy(x)).numpy() for x in xs]
    one = _only_output(model, model.predict({"input": xs[0]}))
    np.testing.assert_allclose(one.reshape(want[0].shape), want[0], atol=ATOL, err_msg=f"{name} predict")
    batch = model.predict_batch([{"input": x} for x in xs])
    assert len(batch) == 3
    for i, (res, w) in enumerate(zip(batch, want, strict=True)):
        got = _only_output(model, res)
        np.testing.assert_allclose(got.reshape(w.shape), w, atol=ATOL, err_msg=f"{name} predict_batch[{i}]")


IMAGE_MODELS = {
    "plain_cnn_image": (PlainCNN, 16, dict(scale=1 / 255.0, bias=[-0.5, -0.4, -0.3], color_layout="RGB")),
    "squeeze_excite_image": (SqueezeExcite, 10, dict(scale=0.017, bias=[-2.1, -2.0, -1.8], color_layout="BGR")),
}


@pytest.fixture(scope="module", params=list(IMAGE_MODELS))
def image_model(request, tmp_path_factory):
    import coremltools as ct

    cls, size, pre = IMAGE_MODELS[request.param]
    module = _init(cls(), 1)
    kw = dict(pre)
    kw["color_layout"] = getattr(ct.colorlayout, kw["color_layout"])
    labels = [f"class{i}" for i in range(module(torch.rand(1, 3, size, size)).shape[1])]
    path = ct_convert(module, torch.rand(1, 3, size, size), tmp_path_factory.mktemp(request.param) / "m.mlmodel",
                      image=kw, labels=labels)
    return module, size, pre, labels, path


@pytest.mark.parametrize("executor", EXECUTORS)
def test_converted_image_classifier_matches_torch_on_preprocessed_pixels(image_model, executor):
    module, size, pre, labels, path = image_model
    model = mlupdate.load(path, executor=executor)
    rng = np.random.default_rng(2)
    images = [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(3)]

    def torch_scores(img: np.ndarray) -> np.ndarray:
        chw = img.astype(np.float32).transpose(2, 0, 1)  # RGB planes
        if pre["color_layout"] == "BGR":
            chw = chw[::-1]
        x = chw * pre["scale"] + np.asarray(pre["bias"], np.float32)[:, None, None]
        with torch.no_grad():
            return module(torch.from_numpy(np.ascontiguousarray(x))[None]).numpy()[0]

    results = [model.predict({"input": images[0]})] + model.predict_batch([{"input": im} for im in images])
    for res, img in zip(results, [images[0], *images], strict=True):
        want = torch_scores(img)
        probs = next(v for v in res.values() if isinstance(v, dict))
        got = np.array([probs[lab] for lab in labels])
        np.testing.assert_allclose(got, want, atol=ATOL)
        top = next(v for v in res.values() if isinstance(v, str))
        assert top == labels[int(np.argmax(want))]
