"""The demo model: assembled from the shipped head and the backbone package, updatable, lint-clean, and
deliberately wrong about its two confused breeds while right about the others.

Ground truth is PyTorch (the same network in torch, on pixels prepared with PIL directly) and
coremltools' own spec classes.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_path() -> Path:
    from mlupdate.demo import demo_model_path

    return demo_model_path()


@pytest.fixture(scope="module")
def demo(demo_path: Path):
    import mlupdate

    return mlupdate.load(demo_path)


def test_head_file_is_small_and_records_the_breeds() -> None:
    from mlupdate.demo import demo_info
    from mlupdate.demo.model import HEAD_PATH

    assert HEAD_PATH.stat().st_size < 400_000
    info = demo_info()
    assert info["cat_as_dog"][0].isupper() and info["dog_as_cat"][0].islower()  # a cat breed and a dog breed
    with np.load(HEAD_PATH) as z:
        assert z["dense_5.weight"].shape == (32, 1280) and z["dense_6.weight"].shape == (2, 32)


def test_cached_in_the_data_dir_and_reused(demo_path: Path) -> None:
    from mlupdate.demo import demo_model_path, user_data_dir

    assert demo_path.parent == user_data_dir() / "demo"
    assert demo_path.name.startswith("CatDog-") and demo_path.suffix == ".mlmodel"
    mtime = demo_path.stat().st_mtime_ns
    assert demo_model_path() == demo_path
    assert demo_path.stat().st_mtime_ns == mtime  # not rebuilt
    assert not [p for p in demo_path.parent.iterdir() if p.name.endswith(".tmp")]


def test_predicts_like_torch(demo, pets: Path) -> None:
    from mlupdate.demo.model import IMAGE_BIAS, IMAGE_SCALE, build_demo_net

    net = build_demo_net()
    photos = [pets / "test" / "cat" / "Persian_15.jpg", pets / "test" / "dog" / "beagle_61.jpg"]
    for photo in photos:
        img = ImageOps.fit(Image.open(photo).convert("RGB"), (224, 224), Image.Resampling.BILINEAR)
        px = torch.from_numpy(np.asarray(img, np.float32).transpose(2, 0, 1).copy())[None]
        x = px * IMAGE_SCALE + torch.tensor(IMAGE_BIAS).view(1, 3, 1, 1)
        with torch.no_grad():
            expected = net(x)[0].numpy()
        out = demo.predict({"image": photo})
        got = np.array([out["classLabelProbs"]["Cat"], out["classLabelProbs"]["Dog"]])
        np.testing.assert_allclose(got, expected, atol=1e-4)
        assert out["classLabel"] == ["Cat", "Dog"][int(expected.argmax())]


def test_updatable_as_the_tutorial(demo_path: Path, demo) -> None:
    import coremltools as ct
    from coremltools.models.utils import load_spec

    import mlupdate

    spec = load_spec(str(demo_path))
    assert spec.isUpdatable and spec.specificationVersion >= 4
    nn = spec.neuralNetworkClassifier
    updatable = sorted(layer.name for layer in nn.layers if layer.isUpdatable)
    assert updatable == ["dense_5", "dense_6"]
    assert {layer.name: layer.WhichOneof("layer") for layer in nn.layers if layer.isUpdatable} == \
        {"dense_5": "innerProduct", "dense_6": "innerProduct"}
    assert list(nn.stringClassLabels.vector) == ["Cat", "Dog"]
    up = nn.updateParams
    assert up.lossLayers[0].WhichOneof("LossLayerType") == "categoricalCrossEntropyLossLayer"
    assert up.optimizer.WhichOneof("OptimizerType") == "sgdOptimizer"
    assert up.optimizer.sgdOptimizer.miniBatchSize.defaultValue == 5
    assert up.optimizer.sgdOptimizer.learningRate.defaultValue == pytest.approx(0.01)
    assert up.epochs.defaultValue == 10
    assert [f.name for f in spec.description.trainingInput] == ["image", "classLabel"]
    ct.models.MLModel(spec)  # coremltools accepts it
    problems = mlupdate.lint(demo_path)
    assert not [p for p in problems if p.severity == "error"], problems
    assert demo.description.is_updatable


def test_confused_breeds_are_wrong_the_others_right(demo, pets: Path) -> None:
    from mlupdate.demo import demo_info

    info = demo_info()
    photos = [(p, sub) for sub in ("cat", "dog") for p in sorted((pets / "test" / sub).glob("*.jpg"))]
    preds = [r["classLabel"] for r in demo.predict_batch([{"image": p} for p, _ in photos])]
    truth = ["Cat" if sub == "cat" else "Dog" for _, sub in photos]
    breeds = [p.stem.rsplit("_", 1)[0] for p, _ in photos]
    for confused in (info["cat_as_dog"], info["dog_as_cat"]):
        idx = [i for i, b in enumerate(breeds) if b == confused]
        wrong = sum(preds[i] != truth[i] for i in idx)
        assert wrong / len(idx) > 0.5, (confused, wrong, len(idx))
    others = [i for i, b in enumerate(breeds) if b not in (info["cat_as_dog"], info["dog_as_cat"])]
    right = sum(preds[i] == truth[i] for i in others)
    assert right / len(others) > 0.9


def test_user_data_dir_env(monkeypatch, tmp_path: Path) -> None:
    from mlupdate.demo import user_data_dir

    monkeypatch.setenv("MLUPDATE_DATA_DIR", str(tmp_path / "x"))
    assert user_data_dir() == tmp_path / "x"
    monkeypatch.delenv("MLUPDATE_DATA_DIR")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert user_data_dir() == tmp_path / "xdg" / "mlupdate"
    monkeypatch.delenv("XDG_DATA_HOME")
    assert user_data_dir() == Path(os.path.expanduser("~")) / ".local" / "share" / "mlupdate"


def test_packaged_samples_are_small_credited_and_as_the_page_says(demo, monkeypatch) -> None:
    # the photos' labels are the dataset's (folder) and breeds (file names); CREDITS.md says which the model misses
    from mlupdate.cli.demo import default_samples, mistakes
    from mlupdate.demo import SAMPLES_DIR, demo_info

    photos = sorted(SAMPLES_DIR.rglob("*.jpg"))
    assert len(photos) >= 8 and sum(p.stat().st_size for p in photos) < 1_000_000
    credits = (SAMPLES_DIR / "CREDITS.md").read_text()
    assert "CC BY-SA 4.0" in credits and "Oxford-IIIT Pet" in credits
    assert all(p.stem in credits for p in photos)
    info = demo_info()
    confused = (info["cat_as_dog"], info["dog_as_cat"])
    preds = [r["classLabel"] for r in demo.predict_batch([{"image": p} for p in photos])]
    for p, pred in zip(photos, preds, strict=True):
        truth = p.parent.name.title()
        assert (pred != truth) == p.stem.startswith(confused), (p.name, pred)
    assert {p.stem.startswith(c) for p in photos for c in confused} == {True, False}  # some wrong, some right
    assert "Sphynx (hairless) cats dogs" in mistakes() and "Great Pyrenees" in mistakes()
    monkeypatch.setenv("MLUPDATE_PETS", "")
    monkeypatch.chdir(SAMPLES_DIR)  # no ../shared beside the working folder
    assert default_samples() in (SAMPLES_DIR, Path(__file__).resolve().parents[3] / "shared" / "data" / "pets")
