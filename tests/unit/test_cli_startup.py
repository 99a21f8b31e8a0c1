"""The command starts light: --help and --version import neither torch nor coremltools; slow loads show a spinner."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from mlupdate.cli.progress import spinner

HEAVY = """
import json, sys
from mlupdate.cli import main
try:
    main([{arg!r}])
except SystemExit:
    pass
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "sympy", "onnx", "onnxruntime")
                        or (m.split(".")[0] == "coremltools" and not m.startswith("coremltools.proto")))))
"""


@pytest.mark.parametrize("arg", ["--help", "--version"])
def test_help_and_version_import_nothing_heavy(arg):
    done = subprocess.run([sys.executable, "-c", HEAVY.format(arg=arg)], capture_output=True, text=True,
                          timeout=120, check=True)
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
    assert "mlupdate" in done.stdout


def test_spinner_prints_one_line_to_a_log_when_the_step_is_slow(capsys):
    with spinner("Compiling m.mlmodel", delay=0.05):
        time.sleep(0.4)
    assert capsys.readouterr().err == "Compiling m.mlmodel ...\n"


def test_spinner_stays_silent_when_the_step_is_fast(capsys):
    with spinner("Compiling m.mlmodel", delay=5):
        pass
    assert capsys.readouterr().err == ""
