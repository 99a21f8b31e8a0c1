"""One decision per setting: compute_units, executor and threads validated once at the boundary, and the
GPU decision taken in one place (Execution.cuda) that every executor choice follows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import mlupdate
import mlupdate.runtime.execution as execution
from mlupdate.runtime.execution import Execution

SRC = Path(__file__).resolve().parents[2] / "src" / "mlupdate"


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"compute_units": "gpu"}, "compute_units='gpu' is not one of cpu_only, cpu_and_gpu, all"),
    ({"executor": "tensorrt"}, "executor='tensorrt' is not one of auto, onnxruntime, torch"),
    ({"threads": 0}, "threads=0 must be a positive integer"),
    ({"threads": True}, "threads=True must be a positive integer"),
])
def test_settings_are_refused_at_the_boundary(kwargs, match):
    with pytest.raises(mlupdate.ParameterError, match=match):
        Execution(**kwargs)


def _scaler_spec():
    """A classic (numpy) model built with coremltools' own converter: its settings are checked too."""
    from coremltools.converters import sklearn as ct_sklearn
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(np.arange(12, dtype=float).reshape(4, 3))
    return ct_sklearn.convert(scaler, [f"x{i}" for i in range(3)], "y").get_spec()


def test_a_model_without_a_network_validates_its_settings_as_well():
    spec = _scaler_spec()
    with pytest.raises(mlupdate.ParameterError, match="compute_units='gpu'"):
        mlupdate.load(spec, compute_units="gpu")
    with pytest.raises(ValueError, match="threads=-1"):
        mlupdate.Model(spec, threads=-1)


def test_an_update_task_refuses_an_unknown_crop_and_scale_when_it_is_created():
    spec = _scaler_spec()
    with pytest.raises(mlupdate.ImageError, match="crop_and_scale must be one of center_crop, scale_fit, scale_fill"):
        mlupdate.UpdateTask(spec, [{"x0": 1.0}], configuration={"crop_and_scale": "stretch"})


@pytest.mark.parametrize(("units", "executor", "gpu", "cuda"), [
    ("all", "auto", True, True), ("cpu_and_gpu", "torch", True, True), ("cpu_only", "auto", True, False),
    ("all", "onnxruntime", True, False), ("all", "auto", False, False), ("all", "torch", False, False),
])
def test_the_gpu_decision(monkeypatch, units, executor, gpu, cuda):
    monkeypatch.setattr(execution, "cuda_available", lambda: gpu)
    assert Execution(units, executor).cuda is cuda


def test_cpu_only_decides_without_probing(monkeypatch):
    def probe():
        raise AssertionError("cpu_only and onnxruntime need no CUDA probe")

    monkeypatch.setattr(execution, "cuda_available", probe)
    assert not Execution("cpu_only").cuda and not Execution("all", "onnxruntime").cuda


def test_one_cuda_probe_in_the_library():
    probes = [p for p in SRC.rglob("*.py") if "cuda.is_available()" in p.read_text()]
    assert [p.relative_to(SRC).as_posix() for p in probes] == ["runtime/execution.py"]


def test_the_executor_follows_the_decision(monkeypatch, tmp_path):
    """A network whose settings say CPU runs on onnxruntime on the CPU; forced torch stays on the CPU too."""
    from coremltools.models import datatypes
    from coremltools.models.neural_network import NeuralNetworkBuilder

    b = NeuralNetworkBuilder([("x", datatypes.Array(2))], [("y", datatypes.Array(2))])
    b.add_inner_product("fc", np.eye(2, dtype=np.float32), None, 2, 2, False, "x", "y")
    monkeypatch.setattr(execution, "cuda_available", lambda: False)
    assert (mlupdate.Model(b.spec, compute_units="all").executor, mlupdate.Model(b.spec).device) == \
        ("onnxruntime", "cpu")
    assert mlupdate.Model(b.spec, executor="torch").device == "cpu"
