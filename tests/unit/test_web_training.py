"""The web app's JSON API: training, its events, the personalised model, refusals, and the real demo model."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tests.unit.web_support import (
    BLUE,
    LABELS,
    RED,
    add,
    build_small_model,
    make_client,
    numpy_predict,
    parse_sse,
    png,
    wait_trained,
)

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


# -- training ---------------------------------------------------------------------------------------
def test_train_without_examples(client: TestClient) -> None:
    r = client.post("/api/train")
    assert r.status_code == 400
    assert "no examples" in r.json()["detail"].lower()
    assert client.get("/api/train").json()["state"] == "idle"


def test_train_bad_parameters(client: TestClient) -> None:
    add(client, png(RED), "Cat")
    r = client.post("/api/train", json={"epochs": 7})  # not in the model's allowed set
    assert r.status_code == 400 and "epochs" in r.json()["detail"]
    r = client.post("/api/train", json={"epochs": -1})
    assert r.status_code == 422 and "epochs" in r.json()["detail"]


def test_train_events_then_personalised_predictions(small_model: Path, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with make_client(small_model, data_dir) as c:
        for i in range(5):
            assert add(c, png(RED, noise=30, seed=i), "Cat").status_code == 201
            assert add(c, png(BLUE, noise=30, seed=10 + i), "Dog").status_code == 201
        r = c.post("/api/train", json={"epochs": 50})
        assert r.status_code == 202, r.text
        assert r.json()["state"] in ("running", "completed") and r.json()["examples"] == 10
        with c.stream("GET", "/api/train/events") as s:
            assert s.headers["content-type"].startswith("text/event-stream")
            text = "".join(s.iter_text())
        events = parse_sse(text)
        names = [e[1] for e in events]
        assert names[:2] == ["preparing", "training_begin"] and names[-2:] == ["saving", "completed"]
        assert [e[0] for e in events] == list(range(len(events)))
        assert names.count("epoch_end") == 50
        steps = [d for _, name, d in events if name == "mini_batch_end"]
        assert [d["step"] for d in steps] == list(range(1, 101)) and steps[-1]["steps"] == 100  # 2 per epoch
        assert steps[0]["batches"] == 2 and steps[0]["epoch"] == 1 and steps[-1]["epoch"] == 50
        losses = [d["loss"] for _, name, d in events if name == "epoch_end"]
        assert losses[-1] < losses[0]
        st = c.get("/api/train").json()
        assert st["state"] == "completed" and st["epoch"] == 50 and st["personalized"] is True
        assert st["losses"] == pytest.approx(losses)
        assert c.get("/api/examples").json()["count"] == 0  # the examples were used
        (personal,) = (data_dir / "models").iterdir()
        red = c.post("/api/predict", files={"image": ("r.png", png(RED), "image/png")}).json()
        blue = c.post("/api/predict", files={"image": ("b.png", png(BLUE), "image/png")}).json()
        assert red["label"] == "Cat" and blue["label"] == "Dog" and red["personalized"]
        np.testing.assert_allclose([red["probabilities"][k] for k in LABELS],
                                   numpy_predict(personal, Image.open(io.BytesIO(png(RED)))), atol=1e-5)
        dl = c.get("/api/model/download")
        assert dl.status_code == 200 and dl.content == personal.read_bytes()
        assert "personalized.mlmodel" in dl.headers["content-disposition"]
        assert c.get("/api/model/download?original=true").content == small_model.read_bytes()
        # the original file is never modified
        assert numpy_predict(small_model, Image.open(io.BytesIO(png(RED)))).tolist() != \
            [red["probabilities"][k] for k in LABELS]
    with make_client(small_model, data_dir) as c:  # after a restart the personalised model answers
        again = c.post("/api/predict", files={"image": ("r.png", png(RED), "image/png")}).json()
        assert again["personalized"] is True
        assert again["probabilities"] == pytest.approx(red["probabilities"], abs=1e-6)
        r = c.post("/api/reset")
        assert r.status_code == 200 and r.json() == {"reset": True, "personalized": False}
        assert not personal.exists()
        orig = c.post("/api/predict", files={"image": ("r.png", png(RED), "image/png")}).json()
        assert orig["personalized"] is False
        np.testing.assert_allclose([orig["probabilities"][k] for k in LABELS],
                                   numpy_predict(small_model, Image.open(io.BytesIO(png(RED)))), atol=1e-5)
        assert c.get("/api/model/download").status_code == 404
        assert c.post("/api/reset").json()["reset"] is False


def test_second_train_while_running_is_409(client: TestClient) -> None:
    import threading

    from mlupdate.web.service import AppService

    gate = threading.Event()
    svc: AppService = client.app.state.service
    original = svc._progress

    def slow(job, ctx):  # hold the first Train at its first event
        original(job, ctx)
        gate.wait(10)

    svc._progress = slow
    add(client, png(RED), "Cat")
    first = client.post("/api/train")
    assert first.status_code == 202
    second = client.post("/api/train")
    assert second.status_code == 409 and "already running" in second.json()["detail"]
    assert client.post("/api/reset").status_code == 409
    ex_id = client.get("/api/examples").json()["examples"][0]["id"]
    assert client.delete(f"/api/examples/{ex_id}").status_code == 409
    assert client.get("/api/train").json()["state"] == "running"
    assert client.post("/api/predict", files={"image": ("r.png", png(RED), "image/png")}).status_code == 200
    gate.set()
    assert wait_trained(client)["state"] == "completed"


def test_failed_write_keeps_the_old_model(small_model: Path, tmp_path: Path, monkeypatch) -> None:
    """A failure in the middle of writing the personalised model leaves the previous file intact."""
    import os

    data_dir = tmp_path / "data"
    with make_client(small_model, data_dir) as c:
        add(c, png(RED), "Cat")
        c.post("/api/train")
        assert wait_trained(c)["state"] == "completed"
        (personal,) = (data_dir / "models").iterdir()
        before = personal.read_bytes()
        before_pred = c.post("/api/predict", files={"image": ("r.png", png(RED), "image/png")}).json()

        real_fsync = os.fsync

        def broken_fsync(fd):  # the bytes are half on disk when the "crash" happens
            raise OSError(28, "No space left on device")

        assert add(c, png(BLUE), "Dog").status_code == 201
        monkeypatch.setattr(os, "fsync", broken_fsync)
        assert add(c, png(BLUE), "Dog").status_code == 507  # a photo that cannot be stored: a clear answer
        c.post("/api/train")
        st = wait_trained(c)
        monkeypatch.setattr(os, "fsync", real_fsync)
        assert st["state"] == "failed"
        assert personal.read_bytes() == before
        assert list((data_dir / "models").iterdir()) == [personal]  # no leftovers
        assert "disk holding" in st["error"] and "free some disk space" in st["error"]
        after_pred = c.post("/api/predict", files={"image": ("r.png", png(RED), "image/png")}).json()
        assert after_pred == before_pred  # the app keeps using the last good model
        assert c.get("/api/examples").json()["count"] == 1  # nothing was consumed
        import mlupdate
        assert mlupdate.load(personal).is_updatable  # still a valid model


def test_events_resume_after_last_event_id(client: TestClient) -> None:
    add(client, png(RED), "Cat")
    client.post("/api/train", json={"epochs": 3})
    assert wait_trained(client)["state"] == "completed"
    with client.stream("GET", "/api/train/events", headers={"Last-Event-ID": "7"}) as s:
        events = parse_sse("".join(s.iter_text()))
    # preparing, training_begin, then (mini_batch_end, epoch_end) x 3 were already seen (ids 0-7)
    assert [(i, name) for i, name, _ in events] == [(8, "saving"), (9, "completed")]


def test_cli_serve_refuses_a_missing_model(tmp_path: Path, capsys) -> None:
    from mlupdate.cli import main

    assert main(["serve", str(tmp_path / "nope.mlmodel")]) == 2
    assert "No model file" in capsys.readouterr().err
    assert main(["serve", "--samples", str(tmp_path / "none"), str(build_small_model(tmp_path / "m.mlmodel"))]) == 2
    assert "--samples" in capsys.readouterr().err


def test_cli_default_data_dirs(tmp_path: Path, monkeypatch) -> None:
    from mlupdate.cli.serve import default_data_dir

    monkeypatch.setenv("MLUPDATE_DATA_DIR", str(tmp_path))
    assert default_data_dir(None) == tmp_path / "app" / "demo"
    a, b = default_data_dir(Path("x/CatDog.mlmodel")), default_data_dir(Path("y/CatDog.mlmodel"))
    assert a.parent == tmp_path / "app" and a.name.startswith("CatDog-") and a != b


def test_events_when_idle(client: TestClient) -> None:
    with client.stream("GET", "/api/train/events") as s:
        text = "".join(s.iter_text())
    assert "event: idle" in text and '"state": "idle"' in text


def test_rejects_a_non_updatable_model(tmp_path: Path) -> None:
    import coremltools as ct
    from coremltools.models import datatypes
    from coremltools.models.neural_network import NeuralNetworkBuilder

    import mlupdate
    from mlupdate.web import create_app

    b = NeuralNetworkBuilder([("image", datatypes.Array(3, 8, 8))], [("p", datatypes.Array(2))], mode="classifier")
    b.set_pre_processing_parameters(image_input_names=["image"])
    b.add_pooling("pool", 8, 8, 8, 8, layer_type="AVERAGE", padding_type="VALID", input_name="image",
                  output_name="pooled")
    b.add_flatten("flat", mode=0, input_name="pooled", output_name="flat")
    b.add_inner_product("fc", np.ones((2, 3), np.float32), None, 3, 2, False, "flat", "logits")
    b.add_softmax("softmax", "logits", "p")
    b.set_class_labels(LABELS, prediction_blob="p")
    path = tmp_path / "Frozen.mlmodel"
    ct.models.utils.save_spec(b.spec, str(path))
    with pytest.raises(mlupdate.NotUpdatableError, match="not updatable"):
        create_app(path, tmp_path / "d")


# -- the real demo model ----------------------------------------------------------------------------
@pytest.mark.slow
def test_demo_model_through_the_api(pets: Path, tmp_path: Path) -> None:
    """The demo calls a Great Pyrenees a Cat; after 5 corrected photos it says Dog."""
    from mlupdate.demo import demo_info, demo_model_path

    breed = demo_info()["dog_as_cat"]
    photos = sorted((pets / "train" / "dog").glob(f"{breed}_*.jpg"))[:5]
    test_photos = sorted((pets / "test" / "dog").glob(f"{breed}_*.jpg"))
    with make_client(demo_model_path(), tmp_path / "data", pets) as c:
        before = [c.post("/api/predict", data={"sample": f"test/dog/{p.name}"}).json()["label"] for p in test_photos]
        assert before.count("Cat") > len(before) / 2
        for p in photos:
            assert c.post("/api/examples", data={"label": "Dog", "sample": f"train/dog/{p.name}"}).status_code == 201
        assert c.post("/api/train").status_code == 202
        st = wait_trained(c, timeout=300)
        assert st["state"] == "completed", st
        after = [c.post("/api/predict", data={"sample": f"test/dog/{p.name}"}).json()["label"] for p in test_photos]
        assert after.count("Dog") > len(after) / 2


def test_the_earlier_data_layout_is_taken_over(small_model: Path, tmp_path: Path) -> None:
    """A data directory of mlupdate 0.1 (JSON index, personalized.mlmodel) keeps its photos and its model."""
    import hashlib
    import shutil

    data = tmp_path / "old"
    (data / "examples").mkdir(parents=True)
    (data / "examples" / "abc.png").write_bytes(png(RED))
    (data / "examples" / "index.json").write_text(json.dumps(
        [{"id": "abc", "label": "Cat", "file": "abc.png", "name": "red.png", "added": 1.0},
         {"id": "gone", "label": "Dog", "file": "gone.png", "name": "lost.png", "added": 2.0}]))
    shutil.copy(small_model, data / "personalized.mlmodel")
    sha = hashlib.sha256(small_model.read_bytes()).hexdigest()
    (data / "personalized.json").write_text(json.dumps({"base_sha256": sha, "trainings": 3}))
    with make_client(small_model, data) as c:
        assert [e["id"] for e in c.get("/api/examples").json()["examples"]] == ["abc"]
        info = c.get("/api/model").json()
        assert info["personalized"] is True and info["trained"]["trainings"] == 3
    assert not list(data.glob("personalized.*")) and len(list((data / "models").iterdir())) == 1
    assert [p.name for p in (data / "examples").iterdir()] == ["abc.png"]
