"""End-to-end k-NN and pipeline updates: UpdateTask -> predict -> write -> load, against a numpy k-NN.

(a) An empty updatable k-NN (``mlupdate.knn_classifier``) learns from feature vectors; (b) a
``pipelineClassifier`` (a small conv feature extractor converted by coremltools + an updatable k-NN) learns
from images. Ground truth: a numpy k-NN over the same vectors, or over the extractor's PyTorch embeddings.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import mlupdate
from mlupdate.spec.io import read_spec
from tests.helpers import ct_convert
from tests.unit.test_knn import numpy_knn

LABELS = ["a", "b", "c"]


def _check(got: list[dict], want: list, label: str = "label") -> None:
    """Predictions equal the numpy k-NN: the label and every class probability."""
    assert len(got) == len(want)
    for g, (wlabel, wprobs) in zip(got, want, strict=True):
        assert g[label] == wlabel
        probs = g[label + "Probs"]
        for lab in set(probs) | set(wprobs):
            assert probs.get(lab, 0.0) == pytest.approx(wprobs.get(lab, 0.0), abs=1e-5)


def _coreml_accepts(path: Path) -> None:
    """coremltools reads the file and constructs an MLModel from it (its own spec checks)."""
    import coremltools as ct

    spec = ct.utils.load_spec(str(path))
    assert spec == read_spec(path)
    ct.models.MLModel(spec)


# -- (a) a k-NN alone -------------------------------------------------------------------------------


def _vectors(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 4)).astype(np.float32)


@pytest.mark.parametrize("index", ["kd_tree", "linear"])
def test_empty_knn_learns_the_examples_and_round_trips(index: str, tmp_path: Path) -> None:
    knn = mlupdate.knn_classifier(dimensions=4, k=3, weighting="inverse_distance", index=index, leaf_size=4)
    names = list(knn.description.training_inputs)
    assert names == ["features", "label"]
    train, queries = _vectors(40, 0), _vectors(25, 1)
    labels = [LABELS[i] for i in np.random.default_rng(2).integers(0, 3, len(train))]
    data = [{"features": v, "label": lab} for v, lab in zip(train, labels, strict=True)]
    assert knn.predict({"features": queries[0]})["label"] == "defaultLabel"  # empty: the default label

    ctx = mlupdate.UpdateTask(knn, data).run()
    want = numpy_knn(train, labels, queries, 3, True)
    feats = [{"features": q} for q in queries]
    _check(ctx.model.predict_batch(feats), want)
    # An example the model has stored is its own nearest neighbour (distance 0 dominates the votes).
    assert [ctx.model.predict({"features": v})["label"] for v in train[:10]] == labels[:10]

    out = ctx.model.write(tmp_path / "knn.mlmodel")
    loaded = mlupdate.load(out)
    _check(loaded.predict_batch(feats), want)
    _coreml_accepts(out)
    inner = loaded.spec.kNearestNeighborsClassifier
    assert inner.nearestNeighborsIndex.WhichOneof("IndexType") == ("singleKdTreeIndex" if index == "kd_tree"
                                                                   else "linearIndex")
    assert inner.WhichOneof("WeightingScheme") == "inverseDistanceWeighting"
    assert loaded.is_updatable
    # The original model is unchanged: still empty.
    assert knn.predict({"features": queries[0]})["label"] == "defaultLabel"
    assert len(knn.spec.kNearestNeighborsClassifier.nearestNeighborsIndex.floatSamples) == 0

    # Updating the loaded file again appends: the model now knows both sets.
    more, more_labels = _vectors(15, 3), ["c"] * 15
    ctx2 = mlupdate.UpdateTask(out, [{"features": v, "label": lab} for v, lab in zip(more, more_labels,
                                                                                     strict=True)]).run()
    _check(ctx2.model.predict_batch(feats), numpy_knn(np.concatenate([train, more]), labels + more_labels,
                                                      queries, 3, True))


def test_number_of_neighbors_override_becomes_the_models_k(tmp_path: Path) -> None:
    knn = mlupdate.knn_classifier(dimensions=4, k=3, weighting="uniform", index="linear", k_range=(1, 10))
    train, queries = _vectors(30, 4), _vectors(20, 5)
    labels = [LABELS[i % 3] for i in range(len(train))]
    data = {"features": list(train), "label": labels}  # a dict of equally long lists is accepted too
    ctx = mlupdate.UpdateTask(knn, data, parameters={"number_of_neighbors": 7}).run()
    assert ctx.parameters["number_of_neighbors"] == 7
    want7 = numpy_knn(train, labels, queries, 7, False)
    assert want7 != numpy_knn(train, labels, queries, 3, False)  # k matters on this data
    _check(ctx.model.predict_batch([{"features": q} for q in queries]), want7)
    out = ctx.model.write(tmp_path / "k7.mlmodel")
    assert read_spec(out).kNearestNeighborsClassifier.numberOfNeighbors.defaultValue == 7
    _check(mlupdate.load(out).predict_batch([{"features": q} for q in queries]), want7)
    _coreml_accepts(out)
    # Without the override the model's own k (3) is kept.
    ctx3 = mlupdate.UpdateTask(knn, data).run()
    assert ctx3.spec.kNearestNeighborsClassifier.numberOfNeighbors.defaultValue == 3
    _check(ctx3.model.predict_batch([{"features": q} for q in queries]), numpy_knn(train, labels, queries, 3, False))
    for bad in (0, 11):
        with pytest.raises(mlupdate.ParameterError, match="number_of_neighbors"):
            mlupdate.UpdateTask(knn, data, parameters={"number_of_neighbors": bad})


# -- (b) a feature extractor feeding a k-NN ----------------------------------------------------------

SIZE, DIMS = 12, 6


class Extractor(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                  nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                                  nn.Linear(16, DIMS))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


@pytest.fixture(scope="module")
def pipeline_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Extractor, Path]:
    """An RGB image extractor (coremltools-converted) + an empty inverse-distance kd-tree k-NN, as a file."""
    torch.manual_seed(7)
    net = Extractor().eval()
    folder = tmp_path_factory.mktemp("pipe")
    fx = ct_convert(net, torch.rand(1, 3, SIZE, SIZE), folder / "extractor.mlmodel", image={"scale": 1 / 255},
                    input_name="image")
    out_name = read_spec(fx).description.output[0].name
    knn = mlupdate.knn_classifier(DIMS, k=3, weighting="inverse_distance", index="kd_tree", leaf_size=3,
                                  default_label="none", input_name=out_name)
    return net, mlupdate.pipeline_classifier(fx, knn).write(folder / "pipeline.mlmodel")


def _images(n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8) for _ in range(n)]


def _embed(net: nn.Module, images: list[np.ndarray]) -> np.ndarray:
    """The extractor in PyTorch: RGB HxWx3 uint8 -> [N,3,H,W] scaled by 1/255 (the image input's scale)."""
    x = torch.from_numpy(np.stack([im.transpose(2, 0, 1) for im in images]).astype(np.float32) / 255)
    with torch.no_grad():
        return net(x).numpy()


def test_pipeline_update_learns_images_like_numpy_knn_on_torch_embeddings(pipeline_file: tuple,
                                                                           tmp_path: Path) -> None:
    net, path = pipeline_file
    source = path.read_bytes()
    model = mlupdate.load(path)
    image_name, label_name = list(model.description.training_inputs)
    assert model.description.inputs[image_name].type == "image"
    train, test = _images(24, 10), _images(10, 11)
    labels = [LABELS[i % 3] for i in range(len(train))]
    data = [{image_name: im, label_name: lab} for im, lab in zip(train, labels, strict=True)]
    assert model.predict({image_name: test[0]})[label_name] == "none"

    ctx = mlupdate.UpdateTask(model, data).run()
    train_emb = _embed(net, train)
    want = numpy_knn(train_emb, labels, _embed(net, test), 3, True)
    feats = [{image_name: im} for im in test]
    _check(ctx.model.predict_batch(feats), want, label_name)

    spec = ctx.spec
    fx, knn = spec.pipelineClassifier.pipeline.models
    src = read_spec(path)
    assert fx == src.pipelineClassifier.pipeline.models[0]  # the extractor is frozen: byte for byte
    stored = np.array([list(s.vector) for s in knn.kNearestNeighborsClassifier.nearestNeighborsIndex.floatSamples])
    np.testing.assert_allclose(stored, train_emb, rtol=1e-4, atol=1e-5)  # the embeddings, in order
    assert list(knn.kNearestNeighborsClassifier.stringClassLabels.vector) == labels

    out = ctx.model.write(tmp_path / "updated.mlmodel")
    _coreml_accepts(out)
    loaded = mlupdate.load(out)
    assert loaded.spec.WhichOneof("Type") == "pipelineClassifier" and loaded.is_updatable
    _check(loaded.predict_batch(feats), want, label_name)
    assert path.read_bytes() == source  # the source file is never modified
    assert model.predict({image_name: test[0]})[label_name] == "none"  # nor the source model


def test_pipeline_update_from_path_with_handlers_writes_only_the_output(pipeline_file: tuple, tmp_path: Path) -> None:
    net, path = pipeline_file
    source = path.read_bytes()
    image_name, label_name = list(mlupdate.load(path).description.training_inputs)
    train = _images(9, 20)
    labels = ["b", "c", "a"] * 3
    events: list[tuple[str, object]] = []
    handlers = mlupdate.ProgressHandlers(events={"training_begin", "mini_batch_end", "epoch_end"},
                                         handler=lambda c: events.append((c.event, c.metrics["loss"])))
    done: list[object] = []
    ctx = mlupdate.UpdateTask(str(path), [{image_name: im, label_name: lab} for im, lab in zip(train, labels,
                                                                                             strict=True)],
                              parameters={"number_of_neighbors": 1}, progress_handlers=handlers,
                              completion_handler=lambda c: done.append((c.event, c.model is not None))).run()
    assert [e for e, _ in events] == ["training_begin", "mini_batch_end", "epoch_end"]
    assert all(loss is None for _, loss in events)  # a k-NN update has no loss
    assert done == [(None, True)]  # once, on success, with the model
    # k=1: each training image is its own nearest neighbour.
    assert [r[label_name] for r in ctx.model.predict_batch([{image_name: im} for im in train])] == labels
    test = _images(6, 21)
    _check(ctx.model.predict_batch([{image_name: im} for im in test]),
           numpy_knn(_embed(net, train), labels, _embed(net, test), 1, True), label_name)
    out = ctx.write(tmp_path / "k1.mlmodel")
    assert read_spec(out).pipelineClassifier.pipeline.models[1].kNearestNeighborsClassifier.numberOfNeighbors \
        .defaultValue == 1
    _coreml_accepts(out)
    assert path.read_bytes() == source
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k1.mlmodel"]  # an atomic write leaves no temp file
