"""Shared helpers for the benchmark scripts: timing, memory, machine description, conversion."""

from __future__ import annotations

import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.helpers import ct_convert  # noqa: E402, F401 - one coremltools conversion helper for tests and benches

PETS = Path(os.environ.get("MLUPDATE_PETS", ROOT.parent / "shared" / "data" / "pets"))


def interleaved_medians(funcs: dict[str, Callable[[], Any]], repeats: int, warmup: int = 3) -> dict[str, float]:
    """Median wall time (seconds) of each function, calling them in turn so drift hits all alike.

    The order rotates every repeat, so each side follows each other side equally often: a side that
    runs right after torch otherwise pays for torch's OpenMP threads still spinning on the cores.
    """
    for _ in range(warmup):
        for f in funcs.values():
            f()
    times: dict[str, list[float]] = {k: [] for k in funcs}
    keys = list(funcs)
    for r in range(repeats):
        for k in keys[r % len(keys):] + keys[:r % len(keys)]:
            t0 = time.perf_counter()
            funcs[k]()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (``VmHWM``, which, unlike ``ru_maxrss``, restarts at exec)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine() -> str:
    """CPU model and core count, as ``lscpu`` reports them."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        name = next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        name = platform.processor() or "unknown CPU"
    return f"{name}, {os.cpu_count()} cores, {platform.system()}"
