"""convert_keras: Keras 2-style .h5 files (written by Keras 3 on the torch backend) read without TensorFlow."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

from pathlib import Path  # noqa: E402

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import mlupdate  # noqa: E402

keras = pytest.importorskip("keras")
layers = keras.layers


def _randomize_batchnorm(model: keras.Model, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            g, b, m, v = (w.shape for w in layer.get_weights())
            layer.set_weights([rng.uniform(0.5, 1.5, g), rng.normal(0, 0.2, b), rng.normal(0, 0.2, m),
                               rng.uniform(0.5, 2.0, v)])


def _tutorial_model() -> keras.Model:
    """The tutorial's layer kinds, with dense_5 / dense_6 named explicitly (Keras 3 numbers layers differently)."""
    keras.utils.set_random_seed(0)
    return keras.Sequential([
        keras.Input((20, 20, 3)),
        layers.Conv2D(8, 3, activation="relu", name="conv2d_1"),
        layers.BatchNormalization(name="batch_normalization_1"),
        layers.MaxPooling2D(2, name="max_pooling2d_1"),
        layers.Conv2D(8, 3, padding="same", name="conv2d_2"),
        layers.Activation("relu", name="activation_1"),
        layers.AveragePooling2D(2, padding="same", name="average_pooling2d_1"),
        layers.Dropout(0.25, name="dropout_1"),
        layers.Flatten(name="flatten_1"),
        layers.Dense(16, name="dense_5"),
        layers.Activation("relu", name="activation_2"),
        layers.Dropout(0.5, name="dropout_2"),
        layers.Dense(2, activation="softmax", name="dense_6"),
    ])


@pytest.fixture(scope="module")
def tutorial(tmp_path_factory: pytest.TempPathFactory) -> tuple[keras.Model, Path]:
    model = _tutorial_model()
    _randomize_batchnorm(model, 1)
    path = tmp_path_factory.mktemp("keras") / "model.h5"
    model.save(path)
    return model, path


def _images(n: int, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 1, (n, *shape)).astype(np.float32)


def test_h5_layout_is_keras2_like(tutorial: tuple) -> None:
    """Keras 3 writes the legacy layout mlupdate reads: model_config JSON + model_weights/<layer>/weight_names."""
    _, path = tutorial
    with h5py.File(path) as f:
        assert "model_config" in f.attrs and "keras_version" in f.attrs
        names = [n.decode() if isinstance(n, bytes) else n for n in f["model_weights"].attrs["layer_names"]]
        assert "dense_5" in names and "dropout_1" in names
        wn = f["model_weights/dense_5"].attrs["weight_names"]
        assert len(wn) == 2 and f["model_weights/dense_5"][wn[0]].shape == (200, 16)


def test_tutorial_network_matches_the_old_converter_layout(tutorial: tuple) -> None:
    _, path = tutorial
    model = mlupdate.convert_keras(path, class_labels=["Cat", "Dog"], output_name="output")
    spec = model.spec
    assert spec.specificationVersion == 1 and spec.WhichOneof("Type") == "neuralNetworkClassifier"
    got = [(layer.name, layer.WhichOneof("layer"), list(layer.input), list(layer.output))
           for layer in spec.neuralNetworkClassifier.layers]
    assert got == [
        ("conv2d_1", "convolution", ["image"], ["conv2d_1_output"]),
        ("conv2d_1__activation__", "activation", ["conv2d_1_output"], ["conv2d_1__activation___output"]),
        ("batch_normalization_1", "batchnorm", ["conv2d_1__activation___output"], ["batch_normalization_1_output"]),
        ("max_pooling2d_1", "pooling", ["batch_normalization_1_output"], ["max_pooling2d_1_output"]),
        ("conv2d_2", "convolution", ["max_pooling2d_1_output"], ["conv2d_2_output"]),
        ("activation_1", "activation", ["conv2d_2_output"], ["activation_1_output"]),
        ("average_pooling2d_1", "pooling", ["activation_1_output"], ["average_pooling2d_1_output"]),
        ("flatten_1", "flatten", ["average_pooling2d_1_output"], ["flatten_1_output"]),
        ("dense_5", "innerProduct", ["flatten_1_output"], ["dense_5_output"]),
        ("activation_2", "activation", ["dense_5_output"], ["activation_2_output"]),
        ("dense_6", "innerProduct", ["activation_2_output"], ["dense_6_output"]),
        ("dense_6__activation__", "softmax", ["dense_6_output"], ["output"]),
    ]
    layers_ = {layer.name: layer for layer in spec.neuralNetworkClassifier.layers}
    assert layers_["flatten_1"].flatten.mode == 1  # CHANNEL_LAST: Dense weights keep Keras' order
    assert list(spec.description.input[0].type.multiArrayType.shape) == [3, 20, 20]
    assert spec.description.predictedFeatureName == "classLabel"
    assert spec.description.predictedProbabilitiesName == "output"
    assert list(spec.neuralNetworkClassifier.stringClassLabels.vector) == ["Cat", "Dog"]


def test_tutorial_predictions_match_keras(tutorial: tuple) -> None:
    kmodel, path = tutorial
    x = _images(6, (20, 20, 3))
    want = np.asarray(kmodel.predict(x, verbose=0))
    model = mlupdate.convert_keras(path, class_labels=["Cat", "Dog"])
    got = model.predict_batch([{"image": xi.transpose(2, 0, 1)} for xi in x])
    probs = np.array([[g["output1"]["Cat"], g["output1"]["Dog"]] for g in got])
    np.testing.assert_allclose(probs, want, atol=1e-4)


def test_image_input_with_scale_and_bias(tutorial: tuple) -> None:
    kmodel, path = tutorial
    model = mlupdate.convert_keras(path, image_input={"scale": 1 / 255, "bias": [-0.5, -0.25, 0.0]},
                                   class_labels=["Cat", "Dog"])
    fd = model.description.inputs["image"]
    assert fd.type == "image" and (fd.image_constraint.width, fd.image_constraint.height) == (20, 20)
    pixels = (np.random.default_rng(3).random((20, 20, 3)) * 255).astype(np.uint8)
    x = pixels.astype(np.float32) / 255 + np.array([-0.5, -0.25, 0.0], np.float32)
    want = np.asarray(kmodel.predict(x[None], verbose=0))[0]
    got = model.predict({"image": pixels})["output1"]
    np.testing.assert_allclose([got["Cat"], got["Dog"]], want, atol=1e-4)


def test_more_layer_kinds_match_keras(tmp_path: Path) -> None:
    keras.utils.set_random_seed(1)
    kmodel = keras.Sequential([
        keras.Input((12, 12, 2)),
        layers.ZeroPadding2D(((1, 2), (0, 1))),
        layers.Conv2D(6, 3, strides=2, padding="same", activation="elu", use_bias=False),
        layers.DepthwiseConv2D(3, padding="same", activation="tanh"),
        layers.Conv2D(6, 3, dilation_rate=2, padding="same", activation="sigmoid"),
        layers.LeakyReLU(negative_slope=0.2),
        layers.MaxPooling2D(2, strides=1, padding="same"),
        layers.BatchNormalization(center=False),
        layers.GlobalAveragePooling2D(),
        layers.Dense(5, activation="selu"),
        layers.Activation("softplus"),
        layers.Dense(4, activation="softsign"),
        layers.Dense(3, activation="hard_sigmoid"),
    ])
    _randomize_batchnorm_no_center(kmodel)
    path = tmp_path / "more.h5"
    kmodel.save(path)
    x = _images(4, (12, 12, 2), seed=5)
    want = np.asarray(kmodel.predict(x, verbose=0))
    model = mlupdate.convert_keras(path, input_name="input")
    assert list(model.spec.description.output[0].type.multiArrayType.shape) == [3]
    got = np.stack([next(iter(g.values())).reshape(-1) for g in
                    model.predict_batch([{"input": xi.transpose(2, 0, 1)} for xi in x])])
    np.testing.assert_allclose(got, want, atol=1e-4)


def _randomize_batchnorm_no_center(model: keras.Model) -> None:
    rng = np.random.default_rng(2)
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            g, m, v = (w.shape for w in layer.get_weights())
            layer.set_weights([rng.uniform(0.5, 1.5, g), rng.normal(0, 0.2, m), rng.uniform(0.5, 2.0, v)])


def test_functional_chain_and_vector_input(tmp_path: Path) -> None:
    keras.utils.set_random_seed(2)
    inp = keras.Input((10,))
    h = layers.Dense(7, activation="relu", name="dense_5")(inp)
    out = layers.Dense(3, activation="softmax", name="dense_6")(h)
    kmodel = keras.Model(inp, out)
    path = tmp_path / "mlp.h5"
    kmodel.save(path)
    x = _images(3, (10,), seed=7)
    model = mlupdate.convert_keras(path, input_name="features", class_labels=[0, 1, 2])
    got = model.predict_batch([{"features": xi} for xi in x])
    want = np.asarray(kmodel.predict(x, verbose=0))
    np.testing.assert_allclose([[g["output1"][k] for k in range(3)] for g in got], want, atol=1e-5)
    assert [g["classLabel"] for g in got] == list(want.argmax(1))


def test_branching_model_unsupported_layer_and_bad_files_raise(tmp_path: Path) -> None:
    inp = keras.Input((4,))
    a, b = layers.Dense(2)(inp), layers.Dense(2)(inp)
    keras.Model(inp, layers.Add()([a, b])).save(tmp_path / "branch.h5")
    with pytest.raises(mlupdate.ConversionError, match="inputs|feeds"):
        mlupdate.convert_keras(tmp_path / "branch.h5")
    keras.Sequential([keras.Input((4, 4, 3)), layers.UpSampling2D()]).save(tmp_path / "up.h5")
    with pytest.raises(mlupdate.ConversionError, match="UpSampling2D is not supported. Supported: .*Conv2D"):
        mlupdate.convert_keras(tmp_path / "up.h5")
    keras.Sequential([keras.Input((4, 3)), layers.LSTM(2)]).save(tmp_path / "lstm.h5")
    with pytest.raises(mlupdate.ConversionError, match=r"Input shape \[4, 3\] is not supported"):
        mlupdate.convert_keras(tmp_path / "lstm.h5")
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    with pytest.raises(mlupdate.ConversionError, match="not an HDF5 file"):
        mlupdate.convert_keras(tmp_path / "junk.h5")
    with pytest.raises(mlupdate.ConversionError, match="No Keras file"):
        mlupdate.convert_keras(tmp_path / "missing.h5")
    kmodel = keras.Sequential([keras.Input((4,)), layers.Dense(2)])
    kmodel.save_weights(tmp_path / "w.weights.h5")
    with pytest.raises(mlupdate.ConversionError, match="weights only"):
        mlupdate.convert_keras(tmp_path / "w.weights.h5")


def test_tutorial_becomes_updatable_in_one_call(tutorial: tuple, tmp_path: Path) -> None:
    import coremltools as ct

    _, path = tutorial
    model = mlupdate.convert_keras(path, class_labels=["Cat", "Dog"], output_name="output")
    updatable = mlupdate.make_updatable(model, ["dense_5", "dense_6"], loss="categorical_cross_entropy",
                                        optimizer=mlupdate.SGD(learning_rate=0.01, mini_batch_size=5), epochs=2)
    spec = updatable.spec
    assert spec.specificationVersion == 4 and spec.isUpdatable
    by_name = {layer.name: layer for layer in spec.neuralNetworkClassifier.layers}
    assert [n for n, layer in by_name.items() if layer.isUpdatable] == ["dense_5", "dense_6"]
    assert not [p for p in mlupdate.lint(updatable) if p.severity == "error"]
    written = updatable.write(tmp_path / "updatable.mlmodel")
    ct.models.MLModel(ct.utils.load_spec(str(written)))


def test_cli_convert_reproduces_the_tutorial(tutorial: tuple, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import coremltools as ct

    from mlupdate.cli import main

    _, path = tutorial
    out = tmp_path / "CatDog.mlmodel"
    rc = main(["convert", str(path), str(out), "--image-input", "image", "--scale", str(1 / 255), "--class-labels",
               "Cat", "Dog", "--updatable", "dense_5", "dense_6", "--loss", "cce", "--sgd", "lr=0.01,batch=5",
               "--epochs", "2"])
    assert rc == 0 and "Wrote" in capsys.readouterr().out
    spec = ct.utils.load_spec(str(out))
    ct.models.MLModel(spec)
    up = spec.neuralNetworkClassifier.updateParams
    assert spec.isUpdatable and spec.description.input[0].type.WhichOneof("Type") == "imageType"
    assert up.optimizer.sgdOptimizer.learningRate.defaultValue == pytest.approx(0.01)
    assert up.optimizer.sgdOptimizer.miniBatchSize.defaultValue == 5 and up.epochs.defaultValue == 2
    assert not [p for p in mlupdate.lint(str(out)) if p.severity == "error"]
    assert main(["convert", str(path), str(path)]) == 2
    assert main(["convert", str(tmp_path / "model.pt"), str(out)]) == 2
    assert main(["convert", str(path), str(out), "--scale", "2"]) == 2
