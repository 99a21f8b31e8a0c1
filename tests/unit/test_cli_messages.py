"""Messages that lead somewhere (issue 19, point 5): serve, compile and predict say what is true and what to do."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mlupdate.cli import main
from mlupdate.spec.io import write_spec
from tests.shared_data import ROOT, model_or_skip
from tests.unit import _update_models as M

logging.getLogger("coremltools").setLevel(logging.ERROR)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from coremltools.models import datatypes
    from coremltools.models.nearest_neighbors import KNearestNeighborsClassifierBuilder
    from coremltools.models.neural_network import NeuralNetworkBuilder


def image_network(path: Path, classifier: bool) -> Path:
    """A plain (not updatable) network on a 6x6 grayscale image: a classifier over a/b/c, or an embedding."""
    rng = np.random.default_rng(3)
    b = NeuralNetworkBuilder([("image", datatypes.Array(1, 6, 6))], [("out", datatypes.Array(3))],
                             mode="classifier" if classifier else None)
    b.add_flatten("flat", 0, "image", "f")
    b.add_inner_product("fc", rng.standard_normal((3, 36)).astype(np.float32), None, 36, 3, False, "f",
                        "logits" if classifier else "out")
    if classifier:
        b.add_softmax("sm", "logits", "out")
        b.set_class_labels(M.LABELS, predicted_feature_name="label", prediction_blob="out")
    image = b.spec.description.input[0].type.imageType
    image.width, image.height, image.colorSpace = 6, 6, 10  # GRAYSCALE
    return write_spec(b.spec, path)


def knn(path: Path, samples: bool) -> Path:
    """coremltools' k-NN builder: output 'animal', default 'none'; with samples (0, 0) cat and (5, 5) dog."""
    b = KNearestNeighborsClassifierBuilder(input_name="features", output_name="animal", number_of_dimensions=2,
                                           default_class_label="none", number_of_neighbors=1)
    if samples:
        b.add_samples(np.array([[0.0, 0.0], [5.0, 5.0]]), ["cat", "dog"])
    return write_spec(b.spec, path)


def serve(model: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "MLUPDATE_DATA_DIR": str(tmp_path / "appdata")}
    return subprocess.run([sys.executable, "-m", "mlupdate", "serve", str(model), "--port", str(port)], env=env,
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)


@pytest.mark.parametrize("kind", ["classifier", "embedding"])
def test_serve_on_a_model_that_is_not_updatable_does_not_send_to_update_and_creates_no_data(tmp_path, kind):
    model = image_network(tmp_path / f"{kind}.mlmodel", classifier=kind == "classifier")
    proc = serve(model, tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert f"{model} " in proc.stderr and "not updatable" in proc.stderr
    assert "Update this model with mlupdate update" not in proc.stderr  # update would refuse it too
    fix = "mlupdate make-updatable" if kind == "classifier" else "pipeline_classifier"
    assert fix in proc.stderr
    assert not (tmp_path / "appdata").exists()


def test_compile_says_compiled_then_already_compiled(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MLUPDATE_CACHE_DIR", str(tmp_path / "cache"))
    model = write_spec(M.dense_classifier(), tmp_path / "dense.mlmodel")
    capsys.readouterr()  # the builder's own notes
    assert main(["compile", str(model)]) == 0
    first = capsys.readouterr().out
    assert first.startswith(f"Compiled {model}") and "already" not in first
    assert main(["compile", str(model)]) == 0
    second = capsys.readouterr().out
    assert second.startswith(f"{model} was already compiled") and not second.startswith("Compiled")


def test_compile_of_a_classic_model_says_there_is_nothing_to_compile(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MLUPDATE_CACHE_DIR", str(tmp_path / "cache"))
    model = knn(tmp_path / "knn.mlmodel", samples=True)
    assert main(["compile", str(model)]) == 0
    out = capsys.readouterr().out
    assert "nothing to compile" in out and not out.startswith("Compiled")


def test_predict_on_a_knn_prints_its_output_name(tmp_path, capsys):
    model = knn(tmp_path / "knn.mlmodel", samples=True)
    assert main(["predict", str(model), "--input", "features=[4, 4]"]) == 0  # (5, 5) is nearest: dog
    captured = capsys.readouterr()
    assert "  animal: dog" in captured.out.splitlines() and "label:" not in captured.out
    assert "holds no samples" not in captured.err


def test_predict_on_an_empty_knn_says_it_holds_no_samples(tmp_path, capsys):
    model = knn(tmp_path / "knn.mlmodel", samples=False)
    assert main(["predict", str(model), "--input", "features=[4, 4]"]) == 0
    captured = capsys.readouterr()
    assert "  animal: none" in captured.out.splitlines()  # the default label: there is nothing to be near
    assert "holds no samples" in captured.err and "mlupdate update" in captured.err


@pytest.mark.parametrize("source", ["builder", "MNIST_Model.mlmodel"])
def test_predict_of_a_photo_on_a_model_without_an_image_input_says_it_takes_no_image(tmp_path, capsys, source):
    # MNIST_Model's array input is named 'image': the message must not talk about an image input it lacks
    model = (write_spec(M.dense_classifier(), tmp_path / "dense.mlmodel") if source == "builder"
             else model_or_skip(source))
    Image.new("RGB", (8, 8), (200, 30, 30)).save(tmp_path / "photo.jpg")
    assert main(["predict", str(model), str(tmp_path / "photo.jpg")]) == 2
    err = capsys.readouterr().err
    assert "The model has no image input" in err and "Traceback" not in err
    assert "MultiArray" in err and "--input NAME=VALUE" in err  # what it takes, and how to give it
    assert "Name the image input" not in err
