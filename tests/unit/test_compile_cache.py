"""The compiled-model cache is keyed by content: every process finds the same artifact."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np

from tests.unit.test_layers_base import builder, save


def test_separate_processes_share_one_cache_artifact(tmp_path):
    b = builder([("x", (4,))], ("y",), nd=True)
    b.add_inner_product("fc", np.ones((2, 4), np.float32), None, 4, 2, False, "x", "y")
    for i in range(12):  # map fields: protobuf's default serialization orders them per process
        b.spec.description.metadata.userDefined[f"key{i}"] = f"value{i}"
    path = save(b, tmp_path)
    cache = tmp_path / "cache"
    env = {**os.environ, "MLUPDATE_CACHE_DIR": str(cache), "PYTHONHASHSEED": "random"}
    code = f"import mlupdate; mlupdate.load({str(path)!r}, compute_units='cpu_only')"
    for _ in range(3):
        subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=300, capture_output=True)
    files = [p for p in cache.rglob("*") if p.is_file()]
    assert len(files) == 1, files
