"""Fixtures of the web app's tests (helpers are in web_support.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.unit.web_support import BLUE, RED, build_small_model, make_client, png


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


@pytest.fixture()
def client(small_model: Path, tmp_path: Path, samples: Path) -> TestClient:
    with make_client(small_model, tmp_path / "data", samples) as c:
        yield c
