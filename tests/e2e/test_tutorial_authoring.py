"""The updatable-model tutorial end to end, checked against coremltools' own builder calls.

The tutorial builds a Keras-style cat/dog network (conv -> relu -> pooling -> flatten -> dense_5 ->
relu -> dense_6 -> softmax), then calls coremltools' ``make_updatable(['dense_5', 'dense_6'])``,
``set_categorical_cross_entropy_loss``, ``set_sgd_optimizer(SgdParams(lr=0.01, batch=5))`` and
``set_epochs(2)``. mlupdate must write the same spec in one call (and from the CLI).
"""

from __future__ import annotations

import contextlib
import io
import warnings

import numpy as np
import pytest
from PIL import Image

import mlupdate
from mlupdate.cli import main
from mlupdate.spec.io import read_spec, write_spec

ct = pytest.importorskip("coremltools")
from coremltools.models import datatypes  # noqa: E402
from coremltools.models.neural_network import NeuralNetworkBuilder, SgdParams  # noqa: E402

SIZE = 16
FLAT = 4 * 7 * 7


def build_tutorial_spec(seed: int = 0):
    """A Keras-tutorial-like cat/dog classifier built with coremltools' NeuralNetworkBuilder."""
    rng = np.random.default_rng(seed)
    b = NeuralNetworkBuilder([("image", datatypes.Array(3, SIZE, SIZE))], [("output", None)], mode="classifier")
    b.add_convolution("conv2d_1", kernel_channels=3, output_channels=4, height=3, width=3, stride_height=1,
                      stride_width=1, border_mode="valid", groups=1, W=rng.normal(0, 0.3, (3, 3, 3, 4)),
                      b=rng.normal(0, 0.1, 4), has_bias=True, input_name="image", output_name="conv1")
    b.add_activation("activation_1", "RELU", "conv1", "relu1")
    b.add_pooling("max_pooling2d_1", height=2, width=2, stride_height=2, stride_width=2, layer_type="MAX",
                  padding_type="VALID", input_name="relu1", output_name="pool1")
    b.add_flatten("flatten_1", mode=0, input_name="pool1", output_name="flat1")
    b.add_inner_product("dense_5", W=rng.normal(0, 0.1, (8, FLAT)), b=rng.normal(0, 0.1, 8), input_channels=FLAT,
                        output_channels=8, has_bias=True, input_name="flat1", output_name="d5")
    b.add_activation("activation_2", "RELU", "d5", "relu2")
    b.add_inner_product("dense_6", W=rng.normal(0, 0.3, (2, 8)), b=rng.normal(0, 0.1, 2), input_channels=8,
                        output_channels=2, has_bias=True, input_name="relu2", output_name="d6")
    b.add_softmax("output", "d6", "output")
    b.set_class_labels(["Cat", "Dog"], predicted_feature_name="classLabel", prediction_blob="output")
    b.set_pre_processing_parameters(image_input_names=["image"], image_scale=1 / 255.0)
    return b.spec


def coremltools_updatable(spec):
    """The tutorial's coremltools calls on a copy of ``spec``."""
    b = NeuralNetworkBuilder(spec=spec)
    with contextlib.redirect_stdout(io.StringIO()):
        b.make_updatable(["dense_5", "dense_6"])
        b.set_categorical_cross_entropy_loss(name="lossLayer", input="output")
        b.set_sgd_optimizer(SgdParams(lr=0.01, batch=5))
        b.set_epochs(2)
    return b.spec


@pytest.fixture(scope="module")
def tutorial(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tutorial")
    path = folder / "CatDog.mlmodel"
    write_spec(build_tutorial_spec(), path)
    return path


def _compare(ours, theirs) -> None:
    assert ours.specificationVersion == theirs.specificationVersion == 4
    assert ours.isUpdatable and theirs.isUpdatable
    a, b = ours.neuralNetworkClassifier, theirs.neuralNetworkClassifier
    assert a.updateParams == b.updateParams, f"{a.updateParams}\n!=\n{b.updateParams}"
    assert list(ours.description.trainingInput) == list(theirs.description.trainingInput)
    assert [x.name for x in ours.description.trainingInput] == ["image", "classLabel"]
    assert len(a.layers) == len(b.layers)
    for la, lb in zip(a.layers, b.layers, strict=True):
        assert la.name == lb.name and la.isUpdatable == lb.isUpdatable, la.name
        kind = la.WhichOneof("layer")
        if kind in ("innerProduct", "convolution"):
            pa, pb = getattr(la, kind), getattr(lb, kind)
            assert pa.weights.isUpdatable == pb.weights.isUpdatable, la.name
            assert pa.bias.isUpdatable == pb.bias.isUpdatable, la.name
        assert la == lb, la.name
    assert ours == theirs  # nothing else differs either


def test_make_updatable_matches_coremltools_builder(tutorial, tmp_path):
    original = tutorial.read_bytes()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the tutorial network needs no repair
        model = mlupdate.make_updatable(tutorial, ["dense_5", "dense_6"], "categorical_cross_entropy",
                                        mlupdate.SGD(0.01, 5), epochs=2)
    assert model.notes == []
    assert tutorial.read_bytes() == original  # the user's file is untouched
    out = model.write(tmp_path / "CatDogUpdatable.mlmodel")

    written = ct.utils.load_spec(str(out))
    _compare(written, coremltools_updatable(read_spec(tutorial)))
    ct.models.MLModel(written)  # coremltools accepts it
    assert mlupdate.lint(out) == []
    params = model.parameter_descriptions
    assert params["learning_rate"].default == pytest.approx(0.01) and params["learning_rate"].max == 1.0
    assert params["mini_batch_size"].allowed == (5,) and params["epochs"].allowed == (2,)
    assert params["shuffle"].default is True


def test_updatable_model_predicts_like_the_original(tutorial, tmp_path, pets):
    before = mlupdate.load(tutorial)
    after = mlupdate.make_updatable(tutorial, ["dense_5", "dense_6"], "cce", mlupdate.SGD(0.01, 5), epochs=2)
    photos = sorted((pets / "test" / "cat").glob("*.jpg"))[:2] + sorted((pets / "test" / "dog").glob("*.jpg"))[:2]
    for photo in photos:
        img = Image.open(photo).convert("RGB")
        p0, p1 = before.predict({"image": img}), after.predict({"image": img})
        assert p0["classLabel"] == p1["classLabel"]
        assert p0["output"] == pytest.approx(p1["output"], abs=1e-6)


def test_cli_reproduces_the_tutorial_script(tutorial, tmp_path, capsys):
    out = tmp_path / "cli.mlmodel"
    rc = main(["make-updatable", str(tutorial), str(out), "--layers", "dense_5", "dense_6", "--loss", "cce",
               "--sgd", "lr=0.01,batch=5", "--epochs", "2"])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "Repairs applied" not in text
    assert "lr: 0.01, min: 0.0, max: 1.0" in text and "batch: 5, allowed_set: [5]" in text
    assert "Loss Input: output" in text and "Loss Target: output_true" in text
    _compare(ct.utils.load_spec(str(out)), coremltools_updatable(read_spec(tutorial)))
    assert main(["lint", str(out)]) == 0
    assert "no problems" in capsys.readouterr().out


def test_cli_adam_and_shuffle_options_match_coremltools(tutorial, tmp_path, capsys):
    from coremltools.models.neural_network import AdamParams

    out = tmp_path / "adam.mlmodel"
    rc = main(["make-updatable", str(tutorial), str(out), "--layers", "dense_6", "--adam",
               "lr=0.001,batch=8,beta1=0.8,beta2=0.99,eps=1e-7,batches=8:16", "--epochs", "3", "--epochs-allowed",
               "3", "6", "--seed", "42"])
    assert rc == 0, capsys.readouterr()
    b = NeuralNetworkBuilder(spec=read_spec(tutorial))
    params = AdamParams(lr=0.001, batch=8, beta1=0.8, beta2=0.99, eps=1e-7)
    params.set_batch(8, [8, 16])
    with contextlib.redirect_stdout(io.StringIO()):
        b.make_updatable(["dense_6"])
        b.set_categorical_cross_entropy_loss(name="lossLayer", input="output")
        b.set_adam_optimizer(params)
        b.set_epochs(3, [3, 6])
        b.set_shuffle(seed=42)
    assert ct.utils.load_spec(str(out)) == b.spec
