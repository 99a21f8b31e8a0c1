"""pipeline_classifier: a frozen NN feature extractor feeding an updatable k-NN (the drawing-classifier pattern)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import mlupdate
from mlupdate.spec.io import read_spec
from tests.helpers import ct_convert
from tests.unit.test_knn import numpy_knn

SIZE, DIMS = 16, 12


class Extractor(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                  nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                                  nn.Linear(32, DIMS))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


@pytest.fixture(scope="module")
def extractor(tmp_path_factory: pytest.TempPathFactory) -> tuple[Extractor, str, str]:
    torch.manual_seed(3)
    net = Extractor().eval()
    path = ct_convert(net, torch.rand(1, 1, SIZE, SIZE), tmp_path_factory.mktemp("px") / "embed.mlmodel",
                      image={"scale": 1 / 255, "color_layout": "G"}, input_name="drawing")
    out_name = read_spec(path).description.output[0].name
    return net, str(path), out_name


def _images(n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [(rng.random((SIZE, SIZE, 1)) * 255).astype(np.uint8) for _ in range(n)]


def _torch_embed(net: nn.Module, images: list[np.ndarray]) -> np.ndarray:
    x = torch.from_numpy(np.stack([im.transpose(2, 0, 1) for im in images]).astype(np.float32) / 255)
    with torch.no_grad():
        return net(x).numpy()


def test_pipeline_spec_follows_the_drawing_classifier_recipe(extractor: tuple, tmp_path) -> None:  # noqa: ANN001
    import coremltools as ct

    _, path, out_name = extractor
    knn = mlupdate.knn_classifier(DIMS, k=3, weighting="inverse_distance", default_label="unknown",
                                  input_name=out_name)
    pipe = mlupdate.pipeline_classifier(path, knn)
    spec = pipe.spec
    assert spec.WhichOneof("Type") == "pipelineClassifier"
    assert spec.specificationVersion >= 4 and spec.isUpdatable
    sub = spec.pipelineClassifier.pipeline.models
    assert [m.WhichOneof("Type") for m in sub] == ["neuralNetwork", "kNearestNeighborsClassifier"]
    assert [m.isUpdatable for m in sub] == [False, True]
    assert [f.name for f in spec.description.input] == ["drawing"]
    assert [f.name for f in spec.description.output] == ["label", "labelProbs"]
    assert [f.name for f in spec.description.trainingInput] == ["drawing", "label"]
    assert spec.description.trainingInput[0].type.WhichOneof("Type") == "imageType"
    assert spec.description.trainingInput[1].type.WhichOneof("Type") == "stringType"
    assert (spec.description.predictedFeatureName, spec.description.predictedProbabilitiesName) == ("label",
                                                                                                   "labelProbs")
    written = pipe.write(tmp_path / "pipe.mlmodel")
    assert ct.utils.load_spec(str(written)) == spec
    ct.models.MLModel(spec)
    # The same structure through coremltools' own pipeline helper: only the last model may be updatable.
    from coremltools.models.pipeline import PipelineClassifier

    ref = PipelineClassifier([("drawing", ct.models.datatypes.Array(1))], ["unknown"])
    ref.add_model(sub[0])
    ref.add_model(sub[1])
    ref.make_updatable()
    assert [m.isUpdatable for m in ref.spec.pipelineClassifier.pipeline.models] == [False, True]
    assert mlupdate.load(written).description.is_updatable


def test_pipeline_predicts_like_numpy_knn_on_torch_embeddings(extractor: tuple) -> None:
    net, path, out_name = extractor
    train, test = _images(30, 0), _images(12, 1)
    labels = [["circle", "square", "star"][i % 3] for i in range(len(train))]
    train_emb = _torch_embed(net, train)
    for weighting, index in (("inverse_distance", "linear"), ("uniform", "kd_tree")):
        knn = mlupdate.knn_classifier(DIMS, k=3, weighting=weighting, index=index, leaf_size=5,
                                      default_label="unknown", input_name=out_name)
        empty = mlupdate.pipeline_classifier(path, knn)
        assert empty.predict({"drawing": test[0]})["label"] == "unknown"
        spec = empty.spec
        inner = spec.pipelineClassifier.pipeline.models[1].kNearestNeighborsClassifier
        for row in train_emb:  # what the k-NN update does: append samples and labels
            inner.nearestNeighborsIndex.floatSamples.add().vector.extend(row.tolist())
        inner.stringClassLabels.vector.extend(labels)
        model = mlupdate.Model(spec)
        want = numpy_knn(train_emb, labels, _torch_embed(net, test), 3, weighting == "inverse_distance")
        got = model.predict_batch([{"drawing": im} for im in test])
        for g, (label, probs) in zip(got, want, strict=True):
            assert g["label"] == label
            for lab in ("circle", "square", "star"):
                assert g["labelProbs"][lab] == pytest.approx(probs.get(lab, 0.0), abs=1e-4)


def test_mismatched_extractor_and_knn_raise_clear_errors(extractor: tuple) -> None:
    _, path, out_name = extractor
    with pytest.raises(mlupdate.AuthoringError, match=rf"\({out_name}\) do not include the k-NN's input 'embedding'"):
        mlupdate.pipeline_classifier(path, mlupdate.knn_classifier(DIMS, input_name="embedding"))
    with pytest.raises(mlupdate.AuthoringError, match=f"dimensions={DIMS}"):
        mlupdate.pipeline_classifier(path, mlupdate.knn_classifier(DIMS + 1, input_name=out_name))
    with pytest.raises(mlupdate.AuthoringError, match="kNearestNeighborsClassifier"):
        mlupdate.pipeline_classifier(path, path)
    with pytest.raises(mlupdate.AuthoringError, match="feature_extractor"):
        mlupdate.pipeline_classifier(42, mlupdate.knn_classifier(DIMS, input_name=out_name))
