"""The compiled-model cache is keyed by content: every process finds the same artifact."""

from __future__ import annotations

import json
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


LEAN = """
import json, sys
import mlupdate
model = mlupdate.load(sys.argv[1])
out = model.predict({"image": sys.argv[2]})
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "sympy", "onnx")
               or (m.split(".")[0] == "coremltools" and not m.startswith("coremltools.proto")))
print(json.dumps({"heavy": heavy, "executor": model.executor, "label": out["label"], "probs": out["probs"]}))
"""


def _image_classifier(tmp_path):
    from coremltools.models import datatypes
    from coremltools.models.neural_network import NeuralNetworkBuilder

    b = NeuralNetworkBuilder([("image", datatypes.Array(3, 16, 16))], [("probs", None)], mode="classifier")
    b.add_pooling("pool", 4, 4, 4, 4, "AVERAGE", "VALID", "image", "pooled")
    b.add_flatten("flat", 0, "pooled", "flat")
    w = np.random.default_rng(3).normal(size=(2, 48)).astype(np.float32)
    b.add_inner_product("fc", w, np.zeros(2, np.float32), 48, 2, True, "flat", "scores")
    b.add_softmax("softmax", "scores", "probs")
    b.set_class_labels(["cat", "dog"], predicted_feature_name="label", prediction_blob="probs")
    b.set_pre_processing_parameters(image_input_names=["image"], image_scale=1 / 255.0)
    return save(b, tmp_path)


def test_a_compiled_model_predicts_in_a_fresh_process_without_torch_or_coremltools(tmp_path, pets):
    import mlupdate

    path = _image_classifier(tmp_path)
    photo = sorted((pets / "test" / "cat").iterdir())[0]
    here = mlupdate.load(path, compute_units="cpu_only")  # compiles into the test run's cache
    expected = here.predict({"image": str(photo)})
    done = subprocess.run([sys.executable, "-c", LEAN, str(path), str(photo)], env=dict(os.environ),
                          capture_output=True, text=True, timeout=300, check=True)
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["heavy"] == [], got["heavy"]
    assert got["executor"] == "onnxruntime"
    assert got["label"] == expected["label"]
    np.testing.assert_allclose([got["probs"][k] for k in ("cat", "dog")],
                               [expected["probs"][k] for k in ("cat", "dog")], rtol=1e-6)


def test_without_a_compiled_model_the_fresh_process_compiles_with_torch(tmp_path, pets):
    path = _image_classifier(tmp_path)
    photo = sorted((pets / "test" / "dog").iterdir())[0]
    env = {**os.environ, "MLUPDATE_CACHE_DIR": str(tmp_path / "empty-cache")}
    done = subprocess.run([sys.executable, "-c", LEAN, str(path), str(photo)], env=env,
                          capture_output=True, text=True, timeout=300, check=True)
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert "torch" in got["heavy"]  # the first load compiles: the check above can fail
    assert list((tmp_path / "empty-cache").rglob("*.onnx"))


def test_a_damaged_cache_artifact_is_compiled_again(tmp_path, monkeypatch):
    import mlupdate

    monkeypatch.setenv("MLUPDATE_CACHE_DIR", str(tmp_path / "cache"))
    path = _image_classifier(tmp_path)
    first = mlupdate.load(path, compute_units="cpu_only")
    (artifact,) = list((tmp_path / "cache").rglob("*.onnx"))
    good = artifact.read_bytes()
    artifact.write_bytes(good[: len(good) // 2])  # a truncated file: onnxruntime cannot load it
    again = mlupdate.load(path, compute_units="cpu_only")
    assert again.executor == "onnxruntime"
    assert artifact.read_bytes() != good[: len(good) // 2]  # replaced by a fresh export
    x = np.full((16, 16, 3), 128, np.uint8)
    assert again.predict({"image": x}) == first.predict({"image": x})


def test_the_torch_version_in_artifact_names_is_the_installed_one_read_without_importing_torch():
    from importlib.metadata import version

    from mlupdate.runtime.onnx_session import torch_version

    assert torch_version() == version("torch")
