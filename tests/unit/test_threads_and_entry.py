"""``threads=`` reaches the executors; ``python -m mlupdate`` is the mlupdate command."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

import mlupdate
from tests.unit.test_layers_base import builder, save


def _path(tmp_path):
    b = builder([("x", (3,))], ("y",), nd=True)
    b.add_activation("a", "RELU", "x", "y")
    return save(b, tmp_path)


def test_onnxruntime_session_uses_the_threads_asked_for(tmp_path):
    model = mlupdate.load(_path(tmp_path), executor="onnxruntime", threads=1)
    options = model._program.executor.session.get_session_options()
    assert options.intra_op_num_threads == 1


def test_torch_executor_runs_with_the_threads_asked_for_and_restores_them(tmp_path, monkeypatch):
    seen = []
    real = torch.set_num_threads
    monkeypatch.setattr(torch, "set_num_threads", lambda n: (seen.append(n), real(n)))
    before = torch.get_num_threads()
    model = mlupdate.load(_path(tmp_path), executor="torch", threads=1)
    model.predict({"x": np.ones(3, np.float32)})
    assert 1 in seen and torch.get_num_threads() == before


@pytest.mark.parametrize("bad", [0, -2, 1.5, True])
def test_bad_thread_counts_are_parameter_errors(tmp_path, bad):
    with pytest.raises(mlupdate.ParameterError):
        mlupdate.load(_path(tmp_path), threads=bad)


def test_python_dash_m_mlupdate_is_the_command():
    done = subprocess.run([sys.executable, "-m", "mlupdate", "--version"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.startswith("mlupdate ")
