"""Shared fixtures: the pets photos from ../shared (skipped without them), a private ONNX cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.shared_data import pets_or_skip


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep the ONNX cache of the test run out of the user's home."""
    os.environ["MLUPDATE_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))
    os.environ.setdefault("MLUPDATE_DATA_DIR", str(tmp_path_factory.mktemp("data")))


@pytest.fixture(scope="session")
def pets() -> Path:
    """The Oxford-IIIT Pet head crops (train/test, cat/dog); skips the test without them."""
    return pets_or_skip()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--fuzz-minutes", type=float, default=0.75,
                     help="how long the mutation fuzzer runs (tests/unit/test_fuzz.py); e.g. 20 for a long run")
    parser.addoption("--fuzz-seed", type=int, default=0, help="the mutation fuzzer's seed")
