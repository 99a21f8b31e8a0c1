"""``mlupdate serve`` in the terminal: a clear error for a port in use, and one log line per action."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import pytest

from tests.shared_data import model_or_skip
from tests.unit.web_support import RED, add, build_small_model, make_client, png, wait_trained


def test_port_in_use_is_reported_before_serving(tmp_path: Path, capsys) -> None:
    from mlupdate.cli import main

    model = build_small_model(tmp_path / "m.mlmodel")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        assert main(["serve", str(model), "--port", str(port), "--data-dir", str(tmp_path / "d")]) == 2
    out = capsys.readouterr()
    assert f"Port {port} on 127.0.0.1 is already in use" in out.err and f"--port {port + 1}" in out.err
    assert "Serving" not in out.out and "Errno" not in out.err


def test_one_log_line_per_action(small_model: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="mlupdate.web")
    with make_client(small_model, tmp_path / "d") as c:
        c.post("/api/predict", files={"image": ("red.png", png(RED), "image/png")})
        ex = add(c, png(RED), "Cat", "red.png").json()
        add(c, png(RED), "Cat", "red2.png")
        c.delete(f"/api/examples/{ex['id']}")
        c.post("/api/train", json={"epochs": 1})
        assert wait_trained(c)["state"] == "completed"
        c.post("/api/reset")
    lines = [r.getMessage() for r in caplog.records if r.name == "mlupdate.web"]
    assert lines[0].startswith("Predicted ") and "red.png" in lines[0] and "original model" in lines[0]
    assert lines[1] == "Added red.png as Cat (1 waiting to train on)"
    assert lines[3] == "Removed red.png (Cat) from the training set"
    assert lines[4] == "Training on 1 photo, 1 epoch..." and lines[5].startswith("Trained on 1 photo in ")
    assert lines[6] == "Reset to the original model" and len(lines) == 7


@pytest.mark.parametrize(("model", "reason"), [
    ("TinyDrawingClassifier.mlmodel", "no fixed list of class labels (a k-NN learns its classes"),
    ("MNIST_Model.mlmodel", "0 image input(s) among its inputs (image: MultiArray"),
])
def test_serve_says_why_a_model_is_not_one_it_serves(tmp_path: Path, capsys, model: str, reason: str) -> None:
    from mlupdate.cli import main

    assert main(["serve", str(model_or_skip(model)), "--data-dir", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err
    assert reason in err and "Traceback" not in err
