"""Ctrl-C and SIGTERM stop every long command within seconds: exit 130/143, one line, nothing half-written.

Each command runs in its own process (and session, so that every process it starts can be found),
with SIGINT's default handling restored (a test runner in the background may ignore it). The signal
lands at a moment the command's own output announces: while loading, during the frozen pass, between
epochs, while writing (in-process: the write itself is interrupted), during a Train of the web app.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import mlupdate
from mlupdate.cli import main
from tests.unit.web_support import build_small_model

pytestmark = pytest.mark.slow
STOP_S = 6.0  # the command's limit is 1.5 s to stop its work; the rest is a loaded test machine's slack
ONE_LINE = re.compile(r"mlupdate [a-z-]+: stopped by (Ctrl-C|SIGTERM); unfinished work was cancelled and no partial "
                      r"output was left\.$")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A Cat/Dog model that trains for ever, and 400 photos (symlinks to two large noise PNGs: a slow frozen pass)."""
    root = tmp_path_factory.mktemp("interrupts")
    model = build_small_model(root / "m.mlmodel", epochs=100000)
    rng = np.random.default_rng(0)
    for label in ("cat", "dog"):  # lower case: the label rule's warning marks the end of reading the data
        (root / "data" / label).mkdir(parents=True)
        first = root / "data" / label / "0.png"
        Image.fromarray(rng.integers(0, 255, (700, 700, 3), dtype=np.uint8)).save(first)
        for i in range(1, 200):
            (root / "data" / label / f"{i}.png").symlink_to(first)
    return root, model


def _session(sid: int) -> list[int]:
    """Processes still alive in session ``sid`` (the command's Ray workers, pools, ...)."""
    alive = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == sid and fields[0] != "Z":
                alive.append(int(entry.name))
    return alive


def _interrupt(args: list[str], log: Path, ready: str | None, delay: float, sig: int = signal.SIGINT,
               env: dict[str, str] | None = None) -> tuple[int, float, str]:
    """Run ``mlupdate ARGS``, send ``sig`` ``delay`` s after ``ready`` appears in its output; (status, s, output)."""
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "mlupdate", *args], stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, **(env or {})}, start_new_session=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        end = time.monotonic() + 300
        while ready is not None and not re.search(ready, log.read_text()) and proc.poll() is None:
            assert time.monotonic() < end, log.read_text()[-2000:]
            time.sleep(0.05)
        assert proc.poll() is None, f"finished before the signal: {log.read_text()[-2000:]}"
        time.sleep(delay)
        sent = time.monotonic()
        proc.send_signal(sig)
        code = proc.wait(60)
        took = time.monotonic() - sent
        time.sleep(0.5)
        assert _session(proc.pid) == [], "processes left behind"
    finally:
        if proc.poll() is None:
            proc.kill()
        for pid in _session(proc.pid):
            os.kill(pid, signal.SIGKILL)
    return code, took, log.read_text()


def _stopped_cleanly(code: int, took: float, output: str, sig: int = signal.SIGINT) -> None:
    lines = [line for line in re.split(r"[\r\n]", output) if line.strip()]
    # 128 + sig, or ended by the signal itself after its one line (seen once in a fresh venv, when the signal came
    # while loading): a shell reports 130 / 143 for both; the cause is not found yet (see the closing note)
    assert code in (128 + sig, -sig), output[-2000:]
    assert took < STOP_S, took
    assert ONE_LINE.match(lines[-1]), lines[-3:]
    assert "Traceback" not in output and "terminate called" not in output


@pytest.mark.parametrize(("moment", "ready", "delay", "sig"), [
    ("loading", None, 1.0, signal.SIGINT),
    ("frozen pass", r"warning: labels cat, dog", 0.3, signal.SIGINT),
    ("epochs", r"epoch=3", 0.0, signal.SIGINT),
    ("epochs", r"epoch=2", 0.0, signal.SIGTERM),
])
def test_update_stops_at_any_moment_and_writes_nothing(setup, tmp_path, moment, ready, delay, sig):
    root, model = setup
    before = model.read_bytes()
    out = tmp_path / "o.mlmodel"
    code, took, output = _interrupt(["update", str(model), str(root / "data"), "--out", str(out)],
                                    tmp_path / "log", ready, delay, sig)
    _stopped_cleanly(code, took, output, sig)
    if moment == "frozen pass":
        assert "batch/s" not in output  # before training began (no progress bar yet)
    assert not out.exists() and list(tmp_path.iterdir()) == [tmp_path / "log"]
    assert model.read_bytes() == before


def test_update_interrupted_while_writing_leaves_no_file(tmp_path, monkeypatch, capsys):
    small = build_small_model(tmp_path / "small.mlmodel", epochs=1)
    rng = np.random.default_rng(0)
    for label in ("Cat", "Dog"):
        (tmp_path / "data" / label).mkdir(parents=True)
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(tmp_path / "data" / label / "0.png")
    (tmp_path / "out").mkdir()

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)  # lands inside the atomic write, after the bytes went out
    assert main(["update", str(small), str(tmp_path / "data"), "--out", str(tmp_path / "out" / "o.mlmodel")]) == 130
    assert ONE_LINE.match(capsys.readouterr().err.strip().splitlines()[-1])
    assert list((tmp_path / "out").iterdir()) == []


def test_compile_stops_while_exporting(setup, tmp_path):
    _, model = setup
    cache = tmp_path / "cache"
    code, took, output = _interrupt(["compile", str(model)], tmp_path / "log", r"Compiling", 0.2,
                                    env={"MLUPDATE_CACHE_DIR": str(cache)})
    _stopped_cleanly(code, took, output)
    leftovers = [p.name for p in cache.rglob("*") if p.is_file() and p.name.endswith(".tmp")]
    assert leftovers == []


def _post(url: str, body: bytes, ctype: str) -> dict:
    req = urllib.request.Request(url, data=body, method="POST",
                                 headers={"Content-Type": ctype, "X-Requested-With": "test"})
    with urllib.request.urlopen(req, timeout=60) as res:
        return json.loads(res.read() or b"null")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_serve_stops_during_a_train(setup, tmp_path, sig):
    _, model = setup
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log, data = tmp_path / "log", tmp_path / "appdata"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "mlupdate", "serve", str(model), "--port", str(port),
                                 "--data-dir", str(data)], stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        end = time.monotonic() + 300
        while "Serving" not in log.read_text():
            assert proc.poll() is None and time.monotonic() < end, log.read_text()[-2000:]
            time.sleep(0.1)
        base = f"http://127.0.0.1:{port}/api"
        buf = io.BytesIO()
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, "PNG")
        for i, label in enumerate(["Cat", "Dog"] * 5):
            body = (f'--b\r\nContent-Disposition: form-data; name="label"\r\n\r\n{label}\r\n--b\r\n'
                    f'Content-Disposition: form-data; name="image"; filename="p{i}.png"\r\nContent-Type: image/png'
                    "\r\n\r\n").encode() + buf.getvalue() + b"\r\n--b--\r\n"
            _post(f"{base}/examples", body, "multipart/form-data; boundary=b")
        assert _post(f"{base}/train", b"{}", "application/json")["state"] == "running"
        while "Training on" not in log.read_text():
            time.sleep(0.05)
        time.sleep(1.0)
        models = sorted(p.name for p in (data / "models").iterdir())
        sent = time.monotonic()
        proc.send_signal(sig)
        code = proc.wait(60)
        took = time.monotonic() - sent
        time.sleep(0.5)
        assert _session(proc.pid) == []
    finally:
        if proc.poll() is None:
            proc.kill()
    _stopped_cleanly(code, took, log.read_text(), sig)
    assert sorted(p.name for p in (data / "models").iterdir()) == models  # no model, whole or partial


def test_update_task_cancel_stops_the_frozen_pass_and_the_epochs(setup):
    root, model = setup
    data = [{"image": str(p), "classLabel": p.parent.name.title()} for p in sorted((root / "data").rglob("*.png"))]
    for moment in ("frozen pass", "epochs"):
        seen: list[int] = []
        task = mlupdate.UpdateTask(str(model), data, progress_handlers=mlupdate.ProgressHandlers(
            {"epoch_end"}, lambda ctx, seen=seen: seen.append(ctx.metrics["epoch_index"])))
        task.resume()
        if moment == "epochs":
            while not seen:
                time.sleep(0.01)
        else:
            time.sleep(0.3)
        sent = time.monotonic()
        task.cancel()
        assert task.wait(STOP_S), moment
        assert time.monotonic() - sent < STOP_S
        assert task.cancelled and isinstance(task.error, mlupdate.UpdateError) and "cancelled" in str(task.error)
        assert (moment == "epochs") == bool(seen)
        with pytest.raises(mlupdate.UpdateError, match="no updated model"):
            task.context.write(root / "never.mlmodel")
    assert not (root / "never.mlmodel").exists()


@pytest.mark.parametrize("command", ["federate", "personalize-fleet"])
def test_federated_commands_stop_and_leave_no_ray_process(setup, tmp_path, command):
    pytest.importorskip("ray")
    pytest.importorskip("flwr")
    _, model = setup
    rng = np.random.default_rng(3)
    users = tmp_path / "users"
    for u in range(2):
        for label in ("Cat", "Dog"):
            (users / f"u{u}" / label).mkdir(parents=True)
            for i in range(6):
                Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(users / f"u{u}" / label /
                                                                                        f"{i}.png")
    out = tmp_path / "out"
    out.mkdir()
    if command == "federate":
        args = ["federate", str(model), str(users / "u0"), "--users", "2", "--rounds", "100", "--epochs", "50",
                "--out", str(out / "g.mlmodel")]
        ready = r"round 1/"
    else:
        args = ["personalize-fleet", str(model), str(users), "--out", str(out / "personal"), "--workers", "2"]
        ready = None  # it prints a line per finished user; these never finish: signal once Ray runs them
    code, took, output = _interrupt(args, tmp_path / "log", ready, 0.3 if ready else 15.0)
    _stopped_cleanly(code, took, output)
    files = [p for p in out.rglob("*") if p.is_file()]
    assert not [p for p in files if p.name.endswith(".tmp")]
    for p in files:  # the global model of the rounds done: whole, valid, updatable
        if p.suffix == ".mlmodel":
            assert mlupdate.load(p).description.is_updatable
