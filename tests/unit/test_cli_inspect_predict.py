"""``mlupdate inspect`` and ``mlupdate predict``: output, errors, exit codes, ``--help``."""

from __future__ import annotations

import json
import subprocess
import sys

import coremltools as ct
import numpy as np
import pytest
from coremltools.models import datatypes
from coremltools.models.neural_network import NeuralNetworkBuilder

from mlupdate.cli import build_parser, main
from mlupdate.features.images import ImageConstraint
from tests.unit.test_predict_api import classifier_spec, softmax

H, W = 8, 6


@pytest.fixture(scope="module")
def updatable_path(tmp_path_factory):
    spec, _, _ = classifier_spec(["cat", "dog"], seed=11, updatable=True)
    path = tmp_path_factory.mktemp("cli") / "updatable.mlmodel"
    ct.utils.save_spec(spec, str(path))
    return path


@pytest.fixture(scope="module")
def image_classifier(tmp_path_factory):
    """image (RGB 6x8, scale 1/255) -> global average pool -> innerProduct -> softmax over cat/dog."""
    rng = np.random.default_rng(12)
    w, b = rng.normal(size=(2, 3)) * 4, rng.normal(size=2)
    bld = NeuralNetworkBuilder([("image", datatypes.Array(3, H, W))], [("probs", None)], mode="classifier")
    bld.add_pooling("gap", 1, 1, 1, 1, "AVERAGE", "VALID", "image", "pooled", is_global=True)
    bld.add_inner_product("fc", w, b, 3, 2, True, "pooled", "logits")
    bld.add_softmax("softmax", "logits", "probs")
    bld.set_class_labels(["cat", "dog"], predicted_feature_name="label", prediction_blob="probs")
    bld.set_pre_processing_parameters(image_input_names=["image"], image_scale=1 / 255)
    path = tmp_path_factory.mktemp("cli") / "pets.mlmodel"
    ct.utils.save_spec(bld.spec, str(path))
    return path, w, b


def expected_probs(image_path, w, b) -> np.ndarray:
    """What Core ML computes: the image brought to 6x8 (Vision's centre crop), /255, mean, softmax."""
    img = ImageConstraint(W, H).prepare(image_path, "center_crop")
    pooled = np.asarray(img, np.float64).reshape(-1, 3).mean(axis=0) / 255
    return softmax(w @ pooled + b)


def photos(pets, n=2):
    return [sorted((pets / "test" / kind).glob("*.jpg"))[0] for kind in ("cat", "dog")][:n]


def test_inspect_shows_description_layers_and_update_config(updatable_path, capsys):
    assert main(["inspect", str(updatable_path)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert "Model: neuralNetworkClassifier (specification version 4)" in lines
    assert "Updatable: yes" in lines
    assert "  x: MultiArray(float64, [4])" in lines
    assert "Class labels: cat, dog" in lines
    fc = lines.index("    0 fc (innerProduct): x -> logits  [updatable]")
    assert lines[fc + 1] == "    1 softmax (softmax): logits -> probs"  # layers in spec order, not updatable
    assert "  loss: categoricalCrossEntropy 'loss' (input: probs, target: probs_true)" in lines
    assert "  optimizer: sgd" in lines
    assert any(line.strip().startswith("learning_rate: 0.01") for line in lines)
    assert any(line.strip().startswith("epochs: 5") for line in lines)

    assert main(["inspect", str(updatable_path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert [(la["name"], la["type"], la["updatable"]) for la in info["layers"]] == [
        ("fc", "innerProduct", True), ("softmax", "softmax", False)]
    assert info["update"]["optimizer"]["type"] == "sgd"


def test_inspect_plain_model_has_no_update_section(image_classifier, capsys):
    assert main(["inspect", str(image_classifier[0])]) == 0
    out = capsys.readouterr().out
    assert "Updatable: no" in out and "Update configuration" not in out
    assert "image: Image(RGB 6x8)" in out


def test_predict_text_and_json(image_classifier, pets, capsys):
    path, w, b = image_classifier
    imgs = photos(pets)
    assert main(["predict", str(path), *map(str, imgs)]) == 0
    out = capsys.readouterr().out
    for img in imgs:
        ref = expected_probs(img, w, b)
        assert f"{img}: {['cat', 'dog'][int(np.argmax(ref))]}" in out
        assert f"{ref.max():7.2%}" in out

    assert main(["predict", str(path), str(imgs[0]), "--json", "--top", "1"]) == 0
    row = json.loads(capsys.readouterr().out)
    ref = expected_probs(imgs[0], w, b)
    assert row["image"] == str(imgs[0]) and row["label"] == ["cat", "dog"][int(np.argmax(ref))]
    assert list(row["probabilities"].values()) == pytest.approx([ref.max()], abs=1e-5)


def test_friendly_errors_and_exit_codes(image_classifier, tmp_path, capsys):
    path = image_classifier[0]
    assert main(["inspect", str(tmp_path / "nope.mlmodel")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mlupdate inspect: error: No model file") and "Traceback" not in err

    text = tmp_path / "notes.txt"
    text.write_text("hello")
    assert main(["predict", str(path), str(text)]) == 2
    assert "not an image" in capsys.readouterr().err

    assert main(["predict", str(text), str(text)]) == 2  # not a model
    assert "mlupdate predict: error:" in capsys.readouterr().err

    assert main(["predict", str(path)]) == 2  # no example at all
    assert "Give IMAGE files or --input NAME=VALUE" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["frobnicate"])
    assert exc.value.code == 2


def test_help_everywhere(capsys):
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    assert {"inspect", "predict"} <= set(commands)
    for argv in [["--help"], *[[c, "--help"] for c in commands]]:
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 0
        assert "usage: mlupdate" in capsys.readouterr().out


def test_console_script(image_classifier, pets):
    path, w, b = image_classifier
    img = photos(pets, 1)[0]
    done = subprocess.run([sys.executable, "-m", "mlupdate.cli", "predict", str(path), str(img), "--json"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    ref = expected_probs(img, w, b)
    assert json.loads(done.stdout)["label"] == ["cat", "dog"][int(np.argmax(ref))]
    bad = subprocess.run([sys.executable, "-m", "mlupdate.cli", "inspect", "/nonexistent.mlmodel"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "No model file" in bad.stderr


def test_inspect_shows_each_pipeline_stage_and_whether_it_runs(tmp_path, capsys):
    from mlupdate.spec.io import Model_pb2, write_spec

    spec = Model_pb2.Model(specificationVersion=4)
    spec.description.input.add(name="image").type.imageType.CopyFrom(
        Model_pb2.ImageFeatureType(width=299, height=299, colorSpace=Model_pb2.ImageFeatureType.RGB))
    spec.description.output.add(name="label").type.stringType.SetInParent()
    stages = spec.pipelineClassifier.pipeline.models
    vision = stages.add(specificationVersion=4)
    vision.visionFeaturePrint.scene.version = 1
    vision.description.input.add().CopyFrom(spec.description.input[0])
    vision.description.output.add(name="features").type.multiArrayType.shape.append(2048)
    glm = stages.add(specificationVersion=4)
    glm.glmClassifier.stringClassLabels.vector.extend(["cat", "dog"])
    glm.description.input.add().CopyFrom(vision.description.output[0])
    glm.description.output.add().CopyFrom(spec.description.output[0])
    path = write_spec(spec, tmp_path / "createml.mlmodel")
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    stage0, stage1 = out.index("--- pipeline stage 0 ---"), out.index("--- pipeline stage 1 ---")
    assert "Model: visionFeaturePrint" in out[stage0:stage1] and "features: MultiArray" in out[stage0:stage1]
    assert "Runs in mlupdate: no: " in out[stage0:stage1] and "Vision" in out[stage0:stage1]
    assert "Model: glmClassifier" in out[stage1:] and "Runs in mlupdate: yes" in out[stage1:]
    assert "Class labels: cat, dog" in out[stage1:]
    assert main(["inspect", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["models"][1]["runs"] is True and "Vision" in info["models"][0]["runs"]
