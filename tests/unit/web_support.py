"""Shared pieces of the web app's tests: a tiny updatable Cat/Dog model, photos, a client.

The model is built with coremltools' NeuralNetworkBuilder (16x16 RGB -> 4x4 average pooling -> dense_5 -> ReLU
-> dense_6 -> softmax), so tests run in milliseconds; `numpy_predict` recomputes its predictions from the
weights read back with coremltools (the ground truth the API's answers are checked against).
"""

from __future__ import annotations

import contextlib
import io
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient
from PIL import Image

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


def make_client(model: Path, data: Path, samples: Path | None = None, **kw) -> TestClient:
    """A TestClient that talks to the app as a script on this machine does: Host 127.0.0.1, the client header."""
    from mlupdate.web import create_app

    return TestClient(create_app(model, data, samples, **kw), base_url="http://127.0.0.1",
                      headers={"X-Requested-With": "tests"})


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


def parse_sse(text: str) -> list[tuple[int | None, str, dict]]:
    """The (id, event, data) of every event in a text/event-stream body (comments skipped)."""
    out = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line and not line.startswith(":"))
        if "event" in fields:
            out.append((int(fields["id"]) if "id" in fields else None, fields["event"], json.loads(fields["data"])))
    return out



@contextlib.contextmanager
def live_server(app) -> Iterator[str]:
    """Serve ``app`` with a real uvicorn on a free port of 127.0.0.1 (in a thread); yields its base URL."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    srv = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    end = time.time() + 30
    while not srv.started:
        if time.time() > end or not thread.is_alive():
            raise AssertionError("the uvicorn server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        srv.should_exit = True
        thread.join(10)
        sock.close()
