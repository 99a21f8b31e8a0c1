"""The web app's JSON API through FastAPI's TestClient: the page, predictions, pending examples.

Most tests use a tiny updatable image classifier built with coremltools' NeuralNetworkBuilder
(16x16 RGB -> 4x4 average pooling -> dense_5 -> ReLU -> dense_6 -> softmax, classes Cat/Dog), so they run
in milliseconds; its predictions are checked against numpy on the weights read back with coremltools.
One test drives the real demo model.
"""

from __future__ import annotations

import io
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tests.unit.web_support import LABELS, RED, add, make_client, numpy_predict, png


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
    with sqlite3.connect(data_dir / "state.sqlite3") as db:
        assert db.execute("SELECT count(*) FROM examples").fetchone() == (2,)
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
