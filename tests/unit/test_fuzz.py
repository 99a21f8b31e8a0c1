"""Seeded mutation fuzzing: only mlupdate.Error may escape load, lint, predict, write and update.

The worker (tests/fuzz/worker.py) runs in its own process under an address-space limit, with an
alarm per case. ``pytest tests/unit/test_fuzz.py --fuzz-minutes 20 --fuzz-seed 7`` runs longer.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_only_mlupdate_errors_escape(request, tmp_path):
    seconds = request.config.getoption("--fuzz-minutes") * 60
    seed = request.config.getoption("--fuzz-seed")
    env = {**os.environ, "MLUPDATE_CACHE_DIR": str(tmp_path / "cache"), "PYTHONWARNINGS": "ignore"}
    done = subprocess.run([sys.executable, "-m", "tests.fuzz.worker", "--seconds", str(seconds), "--seed", str(seed)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=seconds + 300)
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert done.returncode == 0 and lines and lines[-1].get("summary"), done.stderr[-3000:]
    summary, failures = lines[-1], lines[:-1]
    assert summary["cases"] >= 20, summary
    assert not failures, json.dumps(failures[:10], indent=1)
