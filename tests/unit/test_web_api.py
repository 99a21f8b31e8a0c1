"""The web app's JSON API through FastAPI's TestClient: every route, its successes and its refusals.

Most tests use a tiny updatable image classifier built with coremltools' NeuralNetworkBuilder
(16x16 RGB -> 4x4 average pooling -> dense_5 -> ReLU -> dense_6 -> softmax, classes Cat/Dog), so they run
in milliseconds; its predictions are checked against numpy on the weights read back with coremltools.
One test drives the real demo model.
"""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

LABELS = ["Cat", "Dog"]


# -- the small model ------------------------------------------------------------------------------
def build_small_model(path: Path, *, epochs: int = 10, lr: float = 0.5) -> Path:
    """An updatable Cat/Dog classifier on 16x16 RGB images, made with coremltools' builder."""
    import coremltools as ct
    from coremltools.models import datatypes
    from coremltools.models.neural_network import NeuralNetworkBuilder, SgdParams

    rng = np.random.default_rng(0)
    b = NeuralNetworkBuilder([("image", datatypes.Array(3, 16, 16))], [("classLabelProbs", datatypes.Array(2))],
                             mode="classifier")
    b.set_pre_processing_parameters(image_input_names=["image"], is_bgr=False, image_scale=1 / 255.0)
    b.add_pooling("pool", 4, 4, 4, 4, layer_type="AVERAGE", padding_type="VALID", input_name="image",
                  output_name="pooled")
    b.add_flatten("flat", mode=0, input_name="pooled", output_name="flat")
    b.add_inner_product("dense_5", rng.normal(0, 0.3, (8, 48)).astype(np.float32), np.zeros(8, np.float32), 48, 8,
                        True, "flat", "h")
    b.add_activation("relu", "RELU", "h", "hr")
    b.add_inner_product("dense_6", rng.normal(0, 0.3, (2, 8)).astype(np.float32), np.zeros(2, np.float32), 8, 2,
                        True, "hr", "logits")
    b.add_softmax("softmax", "logits", "classLabelProbs")
    b.set_class_labels(LABELS, predicted_feature_name="classLabel", prediction_blob="classLabelProbs")
    b.make_updatable(["dense_5", "dense_6"])
    b.set_categorical_cross_entropy_loss(name="loss", input="classLabelProbs")
    b.set_sgd_optimizer(SgdParams(lr=lr, batch=5))
    b.set_epochs(epochs, allowed_set=[1, 2, 3, epochs, 50])
    ct.models.utils.save_spec(b.spec, str(path))
    return path


def numpy_predict(model_path: Path, img: Image.Image) -> np.ndarray:
    """[P(Cat), P(Dog)] computed with numpy from the weights in the file (read with coremltools)."""
    from coremltools.models.utils import load_spec

    layers = {layer.name: layer for layer in load_spec(str(model_path)).neuralNetworkClassifier.layers}

    def dense(name: str, x: np.ndarray) -> np.ndarray:
        ip = layers[name].innerProduct
        w = np.array(ip.weights.floatValue, np.float32).reshape(ip.outputChannels, ip.inputChannels)
        return w @ x + np.array(ip.bias.floatValue, np.float32)

    px = np.asarray(img.convert("RGB").resize((16, 16)), np.float32).transpose(2, 0, 1) / 255.0
    pooled = px.reshape(3, 4, 4, 4, 4).mean(axis=(2, 4))
    logits = dense("dense_6", np.maximum(dense("dense_5", pooled.reshape(-1)), 0))
    e = np.exp(logits - logits.max())
    return e / e.sum()


def png(color: tuple[int, int, int], size: tuple[int, int] = (16, 16), noise: int = 0, seed: int = 0) -> bytes:
    arr = np.empty((size[1], size[0], 3), np.uint8)
    arr[:] = color
    if noise:
        arr = np.clip(arr.astype(int) + np.random.default_rng(seed).integers(-noise, noise, arr.shape), 0, 255)
    buf = io.BytesIO()
    Image.fromarray(arr.astype(np.uint8)).save(buf, "PNG")
    return buf.getvalue()


RED, BLUE = (220, 40, 40), (40, 40, 220)


@pytest.fixture(scope="module")
def small_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_small_model(tmp_path_factory.mktemp("model") / "Small.mlmodel")


@pytest.fixture()
def samples(tmp_path: Path) -> Path:
    d = tmp_path / "samples"
    (d / "cat").mkdir(parents=True)
    (d / "cat" / "red.png").write_bytes(png(RED))
    (d / "blue.png").write_bytes(png(BLUE))
    (d / "notes.txt").write_text("not a photo")
    return d


def make_client(model: Path, data: Path, samples: Path | None = None, **kw) -> TestClient:
    from mlupdate.web import create_app

    return TestClient(create_app(model, data, samples, **kw))


@pytest.fixture()
def client(small_model: Path, tmp_path: Path, samples: Path) -> TestClient:
    with make_client(small_model, tmp_path / "data", samples) as c:
        yield c


def add(client: TestClient, data: bytes, label: str, name: str = "x.png"):
    return client.post("/api/examples", data={"label": label}, files={"image": (name, data, "image/png")})


def wait_trained(client: TestClient, timeout: float = 60) -> dict:
    end = time.time() + timeout
    while time.time() < end:
        st = client.get("/api/train").json()
        if st["state"] != "running":
            return st
        time.sleep(0.05)
    raise AssertionError("training did not finish")


# -- the page and model info ------------------------------------------------------------------------
def test_page_renders_labels_buttons_gallery_and_credit(client: TestClient) -> None:
    r = client.get("/")
    assert r.status_code == 200
    html = r.text
    assert "It's a Cat!" in html and "It's a Dog!" in html
    assert 'data-name="cat/red.png"' in html and 'data-name="blue.png"' in html
    assert "notes.txt" not in html
    assert "Oxford-IIIT Pet" in html and "CC BY-SA 4.0" in html
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/static/style.css").status_code == 200


def test_model_info(client: TestClient, small_model: Path) -> None:
    info = client.get("/api/model").json()
    assert info["labels"] == LABELS
    assert info["personalized"] is False and info["training"] is False
    assert info["image_input"] == "image" and info["label_input"] == "classLabel"
    assert info["image_size"] == [16, 16]
    assert info["update_parameters"]["epochs"] == 10


def test_openapi_documents_every_route(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    for path, method in [("/api/predict", "post"), ("/api/examples", "get"), ("/api/examples", "post"),
                         ("/api/examples/{example_id}", "delete"), ("/api/train", "post"), ("/api/train", "get"),
                         ("/api/train/events", "get"), ("/api/model/download", "get"), ("/api/reset", "post"),
                         ("/api/model", "get")]:
        op = paths[path][method]
        assert op.get("summary") and op.get("description"), (path, method)
    assert "409" in paths["/api/train"]["post"]["responses"]
    assert spec["components"]["schemas"]["Prediction"]["properties"]["probabilities"]["description"]


# -- predict ----------------------------------------------------------------------------------------
def test_predict_upload_matches_numpy(client: TestClient, small_model: Path) -> None:
    data = png((200, 120, 30), size=(40, 32), noise=40)
    r = client.post("/api/predict", files={"image": ("a.png", data, "image/png")})
    assert r.status_code == 200, r.text
    body = r.json()
    # The app centre-crops to 16x16 as Vision does; numpy sees the same crop.
    from PIL import ImageOps
    img = ImageOps.fit(Image.open(io.BytesIO(data)).convert("RGB"), (16, 16), Image.Resampling.BILINEAR)
    expected = numpy_predict(small_model, img)
    got = np.array([body["probabilities"]["Cat"], body["probabilities"]["Dog"]])
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert body["label"] == LABELS[int(expected.argmax())]
    assert body["personalized"] is False


def test_predict_sample(client: TestClient, small_model: Path) -> None:
    r = client.post("/api/predict", data={"sample": "cat/red.png"})
    assert r.status_code == 200, r.text
    np.testing.assert_allclose([r.json()["probabilities"][k] for k in LABELS],
                               numpy_predict(small_model, Image.open(io.BytesIO(png(RED)))), atol=1e-5)
    assert client.get("/api/samples").json() == ["blue.png", "cat/red.png"]
    assert client.get("/samples/cat/red.png").content == png(RED)


@pytest.mark.parametrize("payload,status,words", [
    ({"files": {"image": ("notes.txt", b"hello, not an image", "text/plain")}}, 400, "not an image"),
    ({"files": {"image": ("empty.png", b"", "image/png")}}, 400, "empty"),
    ({"data": {"sample": "../../etc/passwd"}}, 404, "no sample"),
    ({"data": {"sample": "nope.png"}}, 404, "no sample"),
    ({}, 400, "no photo"),
])
def test_predict_refusals(client: TestClient, payload: dict, status: int, words: str) -> None:
    r = client.post("/api/predict", **payload)
    assert r.status_code == status, r.text
    assert words in r.json()["detail"].lower()


def test_predict_truncated_image(client: TestClient) -> None:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (300, 300, 3), dtype=np.uint8)).save(buf, "JPEG")
    cut = buf.getvalue()[: len(buf.getvalue()) // 2]
    r = client.post("/api/predict", files={"image": ("cut.jpg", cut, "image/jpeg")})
    assert r.status_code == 400
    assert "truncated" in r.json()["detail"] and "cut.jpg" in r.json()["detail"]
    assert client.get("/api/model").status_code == 200  # the server is still fine


def test_decompression_bomb_is_refused(small_model: Path, tmp_path: Path) -> None:
    # A 1-colour PNG compresses to almost nothing: 3000x3000 = 9 Mpx in a few KB, over a 4 Mpx limit.
    buf = io.BytesIO()
    Image.new("L", (3000, 3000)).save(buf, "PNG")
    assert len(buf.getvalue()) < 100_000
    with make_client(small_model, tmp_path / "d", max_pixels=4_000_000) as c:
        r = c.post("/api/predict", files={"image": ("bomb.png", buf.getvalue(), "image/png")})
        assert r.status_code == 400
        assert "over the limit" in r.json()["detail"] and "bomb.png" in r.json()["detail"]
        r = add(c, buf.getvalue(), "Cat", "bomb.png")
        assert r.status_code == 400
        assert c.get("/api/examples").json()["count"] == 0


def test_oversized_upload_is_413(small_model: Path, tmp_path: Path) -> None:
    with make_client(small_model, tmp_path / "d", max_upload_bytes=50_000) as c:
        big = png((1, 2, 3), size=(400, 400), noise=120)
        assert len(big) > 50_000
        r = c.post("/api/predict", files={"image": ("big.png", big, "image/png")})
        assert r.status_code == 413
        assert "limit" in r.json()["detail"]
        # Without a Content-Length header (a chunked body) the limit holds as the body streams in.
        body = (b"--XyZ\r\nContent-Disposition: form-data; name=\"image\"; filename=\"big.png\"\r\n"
                b"Content-Type: image/png\r\n\r\n" + big + b"\r\n--XyZ--\r\n")

        def chunks():
            for i in range(0, len(body), 8192):
                yield body[i:i + 8192]
        r = c.post("/api/predict", content=chunks(), headers={"content-type": "multipart/form-data; boundary=XyZ"})
        assert r.status_code == 413
        ok = c.post("/api/predict", files={"image": ("ok.png", png(RED), "image/png")})
        assert ok.status_code == 200


# -- examples ---------------------------------------------------------------------------------------
def test_add_list_remove_examples_persist(small_model: Path, tmp_path: Path, samples: Path) -> None:
    data_dir = tmp_path / "data"
    with make_client(small_model, data_dir, samples) as c:
        r = add(c, png(RED), "Cat", "red.png")
        assert r.status_code == 201, r.text
        ex = r.json()
        assert ex["label"] == "Cat" and ex["name"] == "red.png"
        assert c.get(ex["image_url"]).content == png(RED)
        r2 = c.post("/api/examples", data={"label": "dog", "sample": "blue.png"})  # labels match case-insensitively
        assert r2.status_code == 201 and r2.json()["label"] == "Dog"
        lst = c.get("/api/examples").json()
        assert lst["count"] == 2 and lst["counts"] == {"Cat": 1, "Dog": 1}
        assert [e["id"] for e in lst["examples"]] == [ex["id"], r2.json()["id"]]
    index = json.loads((data_dir / "examples" / "index.json").read_text())
    assert len(index) == 2
    with make_client(small_model, data_dir, samples) as c:  # a restart keeps them
        assert c.get("/api/examples").json()["count"] == 2
        assert c.delete(f"/api/examples/{ex['id']}").status_code == 204
        assert c.get("/api/examples").json()["count"] == 1
        assert c.delete(f"/api/examples/{ex['id']}").status_code == 404
        assert c.get(f"/api/examples/{ex['id']}/image").status_code == 404
    assert len(list((data_dir / "examples").glob("*.png"))) == 1


@pytest.mark.parametrize("label", ["Horse", "", "Cats"])
def test_unknown_label(client: TestClient, label: str) -> None:
    r = add(client, png(RED), label)
    assert r.status_code in (400, 422)
    detail = r.json()["detail"]
    assert isinstance(detail, str) and ("label" in detail.lower())
    assert client.get("/api/examples").json()["count"] == 0


def test_add_refuses_non_images(client: TestClient) -> None:
    r = add(client, b"%PDF-1.4 not a photo", "Cat", "doc.pdf")
    assert r.status_code == 400 and "doc.pdf" in r.json()["detail"]
    assert client.get("/api/examples").json()["count"] == 0


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
        names = [line.split(": ", 1)[1] for line in text.splitlines() if line.startswith("event: ")]
        assert names[0] == "training_begin" and names[-1] == "completed"
        assert names.count("epoch_end") == 50
        datas = [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]
        losses = [d["loss"] for d in datas if "epoch" in d]
        assert losses[-1] < losses[0]
        st = c.get("/api/train").json()
        assert st["state"] == "completed" and st["epoch"] == 50 and st["personalized"] is True
        assert st["losses"] == pytest.approx(losses)
        assert c.get("/api/examples").json()["count"] == 0  # the examples were used
        personal = data_dir / "personalized.mlmodel"
        assert personal.is_file()
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
        personal = data_dir / "personalized.mlmodel"
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
        assert st["state"] == "failed" and "No space left" in st["error"]
        assert personal.read_bytes() == before
        assert not [p for p in data_dir.iterdir() if p.name.endswith(".tmp")]
        after_pred = c.post("/api/predict", files={"image": ("r.png", png(RED), "image/png")}).json()
        assert after_pred == before_pred  # the app keeps using the last good model
        assert c.get("/api/examples").json()["count"] == 1  # nothing was consumed
        import mlupdate
        assert mlupdate.load(personal).is_updatable  # still a valid model


def test_events_resume_after_last_event_id(client: TestClient) -> None:
    add(client, png(RED), "Cat")
    client.post("/api/train", json={"epochs": 3})
    assert wait_trained(client)["state"] == "completed"
    with client.stream("GET", "/api/train/events", headers={"Last-Event-ID": "2"}) as s:
        text = "".join(s.iter_text())
    ids = [int(line[4:]) for line in text.splitlines() if line.startswith("id: ")]
    assert ids == [3, 4]  # epoch 3 and completed; training_begin, epochs 1-2 were already seen
    assert "event: completed" in text and "training_begin" not in text


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
