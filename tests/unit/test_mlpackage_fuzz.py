"""Seeded mutations of real packages (their protobuf, blob file and manifest): only mlupdate.Error may escape
load and predict, whatever the damage."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest

import mlupdate
from mlupdate.errors import Error
from tests.ops.mlprogram import save_program

WEIGHTS = Path("Data/com.apple.CoreML/weights/weight.bin")
SPEC = Path("Data/com.apple.CoreML/model.mlmodel")
CASES = 60


def _build(x, k):
    from coremltools.converters.mil.mil import Builder as mb

    w = np.linspace(-1, 1, 48, dtype=np.float32).reshape(6, 8)
    y = mb.relu(x=mb.add(x=mb.mul(x=x, y=w), y=np.float32(0.5)))
    return mb.reduce_sum(x=y, axes=[1], name="out"), mb.add(x=k, y=np.int32(3), name="k_out")


@pytest.fixture(scope="module")
def seed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_program(_build, {"x": ((6, 8), np.float32), "k": ((2,), np.int32)},
                        tmp_path_factory.mktemp("seed") / "Seed.mlpackage")


def _flip(data: bytes, rng: random.Random, region: int | None = None) -> bytes:
    raw = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        i = rng.randrange(min(len(raw), region) if region else len(raw))
        raw[i] = rng.randrange(256)
    return bytes(raw)


def _mutate(pkg: Path, rng: random.Random) -> str:
    what = rng.choice(["weights-bytes", "weights-header", "weights-cut", "spec-bytes", "spec-cut", "manifest"])
    target = pkg / (WEIGHTS if what.startswith("weights") else SPEC)
    data = target.read_bytes() if what != "manifest" else b""
    if what == "weights-bytes" or what == "spec-bytes":
        target.write_bytes(_flip(data, rng))
    elif what == "weights-header":
        target.write_bytes(_flip(data, rng, region=128))  # the file header and the first metadata record
    elif what.endswith("-cut"):
        target.write_bytes(data[:rng.randrange(len(data))])
    else:
        manifest = json.loads((pkg / "Manifest.json").read_text())
        entry = manifest["itemInfoEntries"][manifest["rootModelIdentifier"]]
        choice = rng.randrange(4)
        if choice == 0:
            entry["path"] = rng.choice(["", "/etc/passwd", "com.apple.CoreML/weights", 7, None])
        elif choice == 1:
            manifest["rootModelIdentifier"] = rng.choice(["nope", 3, None])
        elif choice == 2:
            manifest["itemInfoEntries"] = rng.choice([[], "x", {}])
        else:
            (pkg / "Manifest.json").write_bytes(_flip((pkg / "Manifest.json").read_bytes(), rng))
            return what
        (pkg / "Manifest.json").write_text(json.dumps(manifest))
    return what


def test_damaged_packages_raise_only_mlupdate_errors(seed: Path, tmp_path: Path) -> None:
    rng = random.Random(17)
    failures, loaded = [], 0
    features = {"x": np.ones((6, 8), np.float32), "k": np.array([1, 2], np.int32)}
    for case in range(CASES):
        pkg = tmp_path / f"case{case}.mlpackage"
        shutil.copytree(seed, pkg)
        what = _mutate(pkg, rng)
        try:
            mlupdate.load(pkg, executor="torch").predict(features)
            loaded += 1
        except Error:
            pass
        except Exception as exc:  # noqa: BLE001 - what the test is looking for
            failures.append(f"case {case} ({what}): {type(exc).__name__}: {exc}")
        shutil.rmtree(pkg)
    assert not failures, "\n".join(failures)
    assert loaded < CASES  # the mutations do damage
