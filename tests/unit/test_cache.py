"""The compiled-model cache: bounded with least-recently-used eviction, safe under concurrent compiles, and the
``mlupdate compile`` / ``mlupdate cache`` commands."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np

from mlupdate.cli import main
from mlupdate.runtime import cache
from tests.unit.test_layers_base import builder, save


def _model(tmp_path, n):
    b = builder([("x", (n,))], ("y",), nd=True)
    b.add_inner_product("fc", np.ones((n, n), np.float32), None, n, n, False, "x", "y")
    return save(b, tmp_path)


def test_least_recently_used_artifacts_go_first(tmp_path, monkeypatch):
    monkeypatch.setenv("MLUPDATE_CACHE_DIR", str(tmp_path / "c"))
    for i, size in enumerate((300_000, 300_000, 300_000)):
        cache.write(f"a{i}.onnx", b"x" * size)
        os.utime(cache.cache_dir() / f"a{i}.onnx", (time.time() - 100 + i, time.time() - 100 + i))
    assert cache.read("a0.onnx") is not None  # a0 is now the most recently used
    monkeypatch.setenv("MLUPDATE_CACHE_MAX_MB", "0.5")
    cache.write("a3.onnx", b"x" * 100_000)
    names = sorted(p.name for p in cache.cache_dir().iterdir())
    assert names == ["a0.onnx", "a3.onnx"], names  # a1 and a2, the least recently used, were evicted


def test_concurrent_compiles_leave_one_artifact(tmp_path):
    path = _model(tmp_path, 64)
    env = {**os.environ, "MLUPDATE_CACHE_DIR": str(tmp_path / "c")}
    code = f"import mlupdate; mlupdate.load({str(path)!r}, compute_units='cpu_only')"
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env) for _ in range(3)]
    assert all(p.wait(timeout=300) == 0 for p in procs)
    files = list((tmp_path / "c" / "onnx").iterdir())
    assert len(files) == 1 and files[0].suffix == ".onnx", files  # no partial temp file either


def test_compile_and_cache_commands(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MLUPDATE_CACHE_DIR", str(tmp_path / "c"))
    assert main(["compile", str(_model(tmp_path, 8))]) == 0
    assert "holds 1 model(s)" in capsys.readouterr().out
    assert main(["cache"]) == 0 and "1 compiled model(s)" in capsys.readouterr().out
    assert main(["cache", "--clear"]) == 0
    out = capsys.readouterr().out
    assert "Removed 1" in out and "0 compiled model(s)" in out
