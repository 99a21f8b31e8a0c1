"""Kill -9 the server at random points of a Train: after each restart the state is one of the two consistent ones.

The server runs in a subprocess (real uvicorn, real HTTP). Each trial adds photos if none are pending, starts a
Train, and kills the process with SIGKILL at a point drawn by a seeded generator: after a random event of the
Train's event stream (from ``preparing`` to ``saving``) plus a random delay. After the restart the state must be
either the one before the Train (same training count, same pending photos) or the one after it (one training
more, none of those photos pending), the personalised model must load, and no leftover file may remain.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx

import mlupdate
from tests.unit.web_support import BLUE, RED, build_small_model, parse_sse, png

TRIALS = 4
EVENTS = 2 + 2 * 50 + 2  # preparing, training_begin, 50 x (mini_batch_end, epoch_end), saving, completed
SEED = 20261201
OWN = {"X-Requested-With": "tests"}
SERVER = """
import sys, uvicorn
from mlupdate.web import create_app
uvicorn.run(create_app(sys.argv[1], sys.argv[2]), host="127.0.0.1", port=int(sys.argv[3]), log_level="warning")
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def server(model: Path, data: Path) -> Iterator[tuple[httpx.Client, subprocess.Popen]]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(model), str(data), str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=OWN, timeout=30)
    try:
        end = time.time() + 60
        while True:
            try:
                client.get("/api/model")
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.time() < end, "the server did not start"
                time.sleep(0.05)
        yield client, proc
    finally:
        client.close()
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def state(c: httpx.Client) -> tuple[int, list[str]]:
    trained = c.get("/api/model").json()["trained"]
    return (trained or {}).get("trainings", 0), [e["id"] for e in c.get("/api/examples").json()["examples"]]


def check_files(data: Path, pending: list[str], personalised: bool) -> None:
    models = list((data / "models").iterdir())
    assert len(models) == (1 if personalised else 0), models
    if models:
        assert mlupdate.load(models[0]).is_updatable  # the model file loads
    assert sorted(p.stem for p in (data / "examples").iterdir()) == sorted(pending)
    assert not [p for p in data.rglob("*.tmp")]


def test_kill_during_train_leaves_one_of_two_consistent_states(tmp_path: Path) -> None:
    model, data = build_small_model(tmp_path / "m.mlmodel", epochs=50), tmp_path / "data"
    rng = random.Random(SEED)
    outcomes = []
    with ExitStack() as stack:
        c, proc = stack.enter_context(server(model, data))
        for trial in range(TRIALS):
            before, pending = state(c)
            if not pending:
                for i in range(4):
                    c.post("/api/examples", data={"label": "Cat" if i % 2 else "Dog"},
                           files={"image": ("p.png", png(RED if i % 2 else BLUE, noise=30, seed=trial * 10 + i))})
                pending = state(c)[1]
            assert c.post("/api/train").status_code == 202
            # every other trial aims at the final write: after "saving", within the time it takes to commit
            stop_at = "saving" if trial % 2 else rng.randrange(EVENTS - 1)
            delay = rng.uniform(0, 1.5) if trial % 2 else rng.uniform(0, 0.02)  # saving takes about a second
            with c.stream("GET", "/api/train/events") as s:
                text = ""
                for chunk in s.iter_text():
                    text += chunk
                    seen = parse_sse(text)
                    if len(seen) > stop_at if isinstance(stop_at, int) else stop_at in [e[1] for e in seen]:
                        break
            time.sleep(delay)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
            c, proc = stack.enter_context(server(model, data))
            after, left = state(c)
            if after == before:
                assert left == pending, "the Train was lost but its photos were not all kept"
            else:
                assert after == before + 1 and not set(left) & set(pending), "the photos learned are pending again"
            check_files(data, left, after > 0)
            r = c.post("/api/predict", files={"image": ("r.png", png(RED))})
            assert r.status_code == 200 and r.json()["personalized"] is (after > 0)
            outcomes.append((stop_at, round(delay, 3), "after" if after > before else "before"))
    print(outcomes)
