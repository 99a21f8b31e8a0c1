"""``convert(..., format="mlpackage")``, ``mlupdate convert ... OUT.mlpackage`` and the app on the layout.

Ground truth: the PyTorch module itself (its predictions, and a plain PyTorch SGD loop on its head with
features from its own layers), and coremltools reading the package back.
"""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import mlupdate
from mlupdate.cli import main
from mlupdate.spec.io import import_coremltools
from tests.unit.web_support import BLUE, RED, add, make_client, png, wait_trained

LABELS = ["Cat", "Dog"]
SIZE = 16


class SmallNet(nn.Module):
    """A CNN backbone and a two-layer head (the demo's shape, small)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(8, 12, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.dense_5 = nn.Linear(12, 10)
        self.relu = nn.ReLU()
        self.dense_6 = nn.Linear(10, 2)
        self.softmax = nn.Softmax(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.softmax(self.dense_6(self.relu(self.dense_5(self.features(x)))))


def small_net() -> SmallNet:
    """The factory ``mlupdate convert tests.unit.test_mlpackage_convert:small_net`` names."""
    torch.manual_seed(0)
    return SmallNet().eval()


def _images(n: int, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random((n, SIZE, SIZE, 3)) * 255).astype(np.uint8)


def _pixels(imgs: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(imgs.astype(np.float32) / 255).permute(0, 3, 1, 2)


def _convert(net: nn.Module, precision: str, **kw):
    return mlupdate.convert(net, torch.rand(1, 3, SIZE, SIZE), image_input={"scale": 1 / 255}, class_labels=LABELS,
                            updatable=["dense_5", "dense_6"], format="mlpackage", compute_precision=precision,
                            output_name="probs", **kw)


@pytest.mark.parametrize("precision, atol", [("float32", 1e-5), ("float16", 1e-2)])
def test_convert_makes_the_layout_and_predicts_like_torch(precision, atol):
    net = small_net()
    model = _convert(net, precision)
    spec = model.spec
    assert spec.WhichOneof("Type") == "pipelineClassifier" and spec.isUpdatable
    extractor, head = spec.pipelineClassifier.pipeline.models
    assert extractor.WhichOneof("Type") == "mlProgram" and not extractor.isUpdatable
    assert head.WhichOneof("Type") == "neuralNetworkClassifier" and head.isUpdatable
    assert {la.name for la in head.neuralNetworkClassifier.layers if la.isUpdatable} == {"dense_5", "dense_6"}
    assert [t.name for t in spec.description.trainingInput] == ["image", "classLabel"]
    assert mlupdate.lint(model) == []
    imgs = _images(6)
    want = net(_pixels(imgs)).detach().numpy()
    for img, p in zip(imgs, want, strict=True):
        got = model.predict({"image": img})
        np.testing.assert_allclose([got["probs"][k] for k in LABELS], p, atol=atol)


def test_converted_layout_updates_like_a_torch_loop(tmp_path):
    net = small_net()
    pkg = _convert(net, "float32", optimizer=mlupdate.SGD(learning_rate=0.05, mini_batch_size=2), epochs=2,
                   shuffle=False).write(tmp_path / "CatDog.mlpackage")
    imgs, labels = _images(5, seed=1), ["Cat", "Dog", "Dog", "Cat", "Dog"]
    ctx = mlupdate.UpdateTask(pkg, [{"image": i, "classLabel": y} for i, y in zip(imgs, labels, strict=True)]).run()

    with torch.no_grad():
        feats = net.features(_pixels(imgs))
    target = torch.tensor([LABELS.index(y) for y in labels])
    d5, d6 = nn.Linear(12, 10), nn.Linear(10, 2)
    d5.load_state_dict(net.dense_5.state_dict())
    d6.load_state_dict(net.dense_6.state_dict())
    opt = torch.optim.SGD([*d5.parameters(), *d6.parameters()], lr=0.05)
    for _ in range(2):
        for s in range(0, 5, 2):
            opt.zero_grad()
            F.cross_entropy(d6(torch.relu(d5(feats[s:s + 2]))), target[s:s + 2]).backward()
            opt.step()
    layers = {la.name: la.innerProduct for la in
              ctx.model.spec.pipelineClassifier.pipeline.models[1].neuralNetworkClassifier.layers
              if la.WhichOneof("layer") == "innerProduct"}
    for name, ref in (("dense_5", d5), ("dense_6", d6)):
        np.testing.assert_allclose(np.array(layers[name].weights.floatValue).reshape(ref.weight.shape),
                                   ref.weight.detach().numpy(), atol=1e-5)
        np.testing.assert_allclose(np.array(layers[name].bias.floatValue), ref.bias.detach().numpy(), atol=1e-5)
    want = torch.softmax(d6(torch.relu(d5(feats))), dim=1).detach().numpy()
    out = ctx.model.write(tmp_path / "Personal.mlpackage")
    for img, p in zip(imgs, want, strict=True):
        got = mlupdate.load(out).predict({"image": img})
        np.testing.assert_allclose([got["probs"][k] for k in LABELS], p, atol=1e-5)


def test_cli_converts_a_torch_module_to_the_layout(tmp_path, capsys):
    out = tmp_path / "CatDog.mlpackage"
    assert main(["convert", "tests.unit.test_mlpackage_convert:small_net", str(out), "--input-shape", "1", "3",
                 str(SIZE), str(SIZE), "--image-input", "image", "--scale", str(1 / 255), "--class-labels", "Cat",
                 "Dog", "--updatable", "dense_5", "dense_6", "--precision", "float32"]) == 0
    assert "ML Program extractor" in capsys.readouterr().out
    ct = import_coremltools()
    spec = ct.models.MLModel(str(out), skip_model_load=True).get_spec()
    assert [m.WhichOneof("Type") for m in spec.pipelineClassifier.pipeline.models] == [
        "mlProgram", "neuralNetworkClassifier"]
    img = _images(1)[0]
    want = small_net()(_pixels(img[None])).detach().numpy()[0]
    got = mlupdate.load(out).predict({"image": img})
    assert got["classLabel"] == LABELS[int(np.argmax(want))]
    assert main(["lint", str(out)]) == 0
    assert main(["convert", "tests.unit.test_mlpackage_convert:small_net", str(tmp_path / "x.mlpackage")]) == 2
    assert "--input-shape" in capsys.readouterr().err


def test_the_app_serves_and_trains_the_layout(tmp_path):
    net = small_net()
    pkg = _convert(net, "float32", optimizer=mlupdate.SGD(learning_rate=0.5, mini_batch_size=4),
                   epochs=10).write(tmp_path / "CatDog.mlpackage")
    data = tmp_path / "data"
    with make_client(pkg, data) as c:
        for i in range(4):
            assert add(c, png(RED, noise=30, seed=i), "Cat").status_code == 201
            assert add(c, png(BLUE, noise=30, seed=10 + i), "Dog").status_code == 201
        assert c.post("/api/train", json={"epochs": 10}).status_code == 202
        assert wait_trained(c)["personalized"] is True
        (personal,) = (data / "models").iterdir()
        assert personal.suffix == ".mlpackage" and mlupdate.lint(personal) == []
        red = c.post("/api/predict", files={"image": ("r.png", png(RED), "image/png")}).json()
        assert red["personalized"]
        from PIL import Image

        img = np.asarray(Image.open(io.BytesIO(png(RED))).convert("RGB"))
        mine, base = mlupdate.load(personal).predict({"image": img}), mlupdate.load(pkg).predict({"image": img})
        np.testing.assert_allclose([red["probabilities"][k] for k in LABELS], [mine["probs"][k] for k in LABELS],
                                   atol=1e-5)  # the app predicts with the trained package's weights
        assert abs(mine["probs"]["Cat"] - base["probs"]["Cat"]) > 1e-3
        r = c.get("/api/model/download")
        assert r.status_code == 200
        names = zipfile.ZipFile(io.BytesIO(r.content)).namelist()
        assert f"{personal.name}/Manifest.json" in names
        assert c.post("/api/reset").json()["reset"] is True
        assert list((data / "models").iterdir()) == []


@pytest.mark.slow
def test_demo_in_the_layout_predicts_like_torch_and_updates(tmp_path, pets):
    from PIL import Image, ImageOps

    from mlupdate.demo import demo_model_path
    from mlupdate.demo.model import IMAGE_BIAS, IMAGE_SCALE, build_demo_net

    path = demo_model_path(tmp_path, layout="mlpackage")
    assert path.suffix == ".mlpackage" and demo_model_path(tmp_path, layout="mlpackage") == path
    demo = mlupdate.load(path)
    assert demo.description.model_type == "pipelineClassifier" and mlupdate.lint(demo) == []
    net = build_demo_net()
    photos = [pets / "test" / "cat" / "Persian_15.jpg", pets / "test" / "dog" / "beagle_61.jpg"]
    for photo in photos:
        img = ImageOps.fit(Image.open(photo).convert("RGB"), (224, 224), Image.Resampling.BILINEAR)
        px = torch.from_numpy(np.asarray(img, np.float32).transpose(2, 0, 1).copy())[None]
        with torch.no_grad():
            expected = net(px * IMAGE_SCALE + torch.tensor(IMAGE_BIAS).view(1, 3, 1, 1))[0].numpy()
        out = demo.predict({"image": photo})
        np.testing.assert_allclose([out["classLabelProbs"][k] for k in LABELS], expected, atol=2e-2)  # fp16 extractor
        assert out["classLabel"] == LABELS[int(expected.argmax())]
    ctx = mlupdate.UpdateTask(path, [{"image": p, "classLabel": "Dog"} for p in photos]).run()
    written = ctx.model.write(tmp_path / "Personal.mlpackage")
    assert (written / "Data/com.apple.CoreML/weights/0-weight.bin").read_bytes() == \
        (path / "Data/com.apple.CoreML/weights/0-weight.bin").read_bytes()


class _Skip(nn.Module):
    """The head also uses a value from before the cut: no single-feature split exists."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(4, 4)
        self.dense = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.body(x)
        return self.dense(h) + x


class _Direct(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.dense = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dense(x)


@pytest.mark.parametrize("module, updatable, message", [
    (_Skip(), ["dense"], "also uses 'x'"),
    (_Direct(), ["dense"], "no feature extractor"),
    (SmallNet(), None, "pass updatable"),
    (SmallNet(), ["features.0", "dense_6"], "takes the model's input directly"),
])
def test_layouts_that_cannot_be_split_are_refused(module, updatable, message):
    example = torch.rand(1, 4) if not isinstance(module, SmallNet) else torch.rand(1, 3, SIZE, SIZE)
    with pytest.raises(mlupdate.ConversionError, match=message):
        mlupdate.convert(module, example, updatable=updatable, format="mlpackage")


def test_split_keeps_the_module_and_its_names():
    from mlupdate.authoring.split_torch import split_module

    net = small_net()
    extractor, head, first = split_module(net, ["dense_5", "dense_6"])
    x = torch.rand(3, 3, SIZE, SIZE)
    with torch.no_grad():
        np.testing.assert_array_equal(head(extractor(x)).numpy(), net(x).numpy())
        np.testing.assert_array_equal(extractor(x).numpy(), net.features(x).numpy())
    assert first == "dense_5" and {"dense_5", "dense_6"} <= {n for n, _ in head.named_modules()}
