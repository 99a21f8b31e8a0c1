"""convert_keras on the Keras 2.x HDF5 layout: what the tutorial's model.h5 (Keras 2.2) looks like on disk.

No Keras 2 can be installed here (it needs TensorFlow), so the test writes that layout itself from a real
Keras 3 model: `keras_version` 2.2.4, the config with `batch_input_shape` and plain-string dtypes, and the
weights under `model_weights/<layer>/<layer>/kernel:0` listed by `weight_names`. Ground truth is the Keras 3
model's own `predict` on the same weights.
"""

from __future__ import annotations

import json
import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import mlupdate  # noqa: E402

keras = pytest.importorskip("keras")
layers = keras.layers

_KEEP = ("name", "trainable", "filters", "kernel_size", "strides", "padding", "data_format", "dilation_rate",
         "activation", "use_bias", "units", "pool_size", "rate", "axis", "momentum", "epsilon", "center", "scale")


def _keras2_config(layer: keras.layers.Layer) -> dict:
    cfg = {k: v for k, v in layer.get_config().items() if k in _KEEP}
    cfg["dtype"] = "float32"
    return {"class_name": type(layer).__name__, "config": cfg}


def _write_keras2_h5(model: keras.Model, path, *, list_config: bool) -> None:
    configs = [_keras2_config(layer) for layer in model.layers]
    configs[0]["config"]["batch_input_shape"] = [None, *model.input_shape[1:]]
    body = configs if list_config else {"name": "sequential_1", "layers": configs}
    with h5py.File(path, "w") as f:
        f.attrs["keras_version"] = b"2.2.4"
        f.attrs["backend"] = b"tensorflow"
        f.attrs["model_config"] = json.dumps({"class_name": "Sequential", "config": body}).encode()
        g = f.create_group("model_weights")
        g.attrs["layer_names"] = [layer.name.encode() for layer in model.layers]
        for layer in model.layers:
            lg = g.create_group(layer.name)
            names = [f"{layer.name}/{w.path.split('/')[-1]}:0" for w in layer.weights]
            lg.attrs["weight_names"] = [n.encode() for n in names]
            for n, w in zip(names, layer.get_weights(), strict=True):
                lg.create_dataset(n, data=w)


@pytest.mark.parametrize("list_config", [False, True], ids=["keras-2.2.4-dict", "keras-2.1-list"])
def test_tutorial_layout_of_keras2(tmp_path, list_config):
    keras.utils.set_random_seed(3)
    model = keras.Sequential([
        keras.Input((12, 12, 3)),
        layers.Conv2D(4, 3, activation="relu", name="conv2d_1"),
        layers.MaxPooling2D(2, name="max_pooling2d_1"),
        layers.Flatten(name="flatten_1"),
        layers.Dense(8, activation="relu", name="dense_5"),
        layers.Dropout(0.5, name="dropout_1"),
        layers.Dense(2, activation="softmax", name="dense_6"),
    ])
    path = tmp_path / "model.h5"
    _write_keras2_h5(model, path, list_config=list_config)
    with h5py.File(path) as f:  # the layout really is Keras 2's
        first = f["model_weights/dense_5"].attrs["weight_names"][0]
        assert (first.decode() if isinstance(first, bytes) else first) == "dense_5/kernel:0"
        assert "dense_5/kernel:0" in f["model_weights/dense_5"]
    converted = mlupdate.convert_keras(path, class_labels=["Cat", "Dog"])
    names = [layer.name for layer in converted.spec.neuralNetworkClassifier.layers]
    assert "dense_5" in names and "dense_6" in names
    x = np.random.default_rng(0).uniform(0, 1, (3, 12, 12, 3)).astype(np.float32)
    want = model.predict(x, verbose=0)
    (in_name,) = converted.description.inputs
    got = converted.predict_batch([{in_name: xi.transpose(2, 0, 1)} for xi in x])
    pname = converted.description.predicted_probabilities_name
    probs = np.array([[g[pname][k] for k in ("Cat", "Dog")] for g in got])
    np.testing.assert_allclose(probs, want, atol=1e-5)
    updatable = mlupdate.make_updatable(converted, ["dense_5", "dense_6"],
                                        optimizer=mlupdate.SGD(learning_rate=0.01, mini_batch_size=5), epochs=2)
    assert not [p for p in mlupdate.lint(updatable) if p.severity == "error"]
