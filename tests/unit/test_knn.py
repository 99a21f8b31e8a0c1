"""Updatable k-NN classifiers: specs equal to coremltools' builder, predictions equal to a numpy k-NN."""

from __future__ import annotations

import numpy as np
import pytest

import mlupdate
from mlupdate.spec.io import Model_pb2

CT_DEFAULT_KEYS = {"k": "number_of_neighbors", "weighting": "weighting_scheme", "index": "index_type",
                   "leaf_size": "leaf_size"}


def _ct_spec(dims: int, default: str | int, input_name: str, output_name: str, **kw: object) -> Model_pb2.Model:
    from coremltools.models.nearest_neighbors import KNearestNeighborsClassifierBuilder

    b = KNearestNeighborsClassifierBuilder(input_name=input_name, output_name=output_name, number_of_dimensions=dims,
                                           default_class_label=default,
                                           **{CT_DEFAULT_KEYS[k]: v for k, v in kw.items() if k != "k_set"})
    if "k_set" in kw:
        b.set_number_of_neighbors_with_bounds(kw["k"], allowed_set=set(kw["k_set"]))
    return b.spec


def _with_samples(model: mlupdate.Model, points: np.ndarray, labels: list) -> mlupdate.Model:
    """Append samples to the spec, as the k-NN update does."""
    spec = model.spec
    knn = spec.kNearestNeighborsClassifier
    for p in points:
        knn.nearestNeighborsIndex.floatSamples.add().vector.extend(float(v) for v in p)
    (knn.stringClassLabels if isinstance(labels[0], str) else knn.int64ClassLabels).vector.extend(labels)
    return mlupdate.Model(spec)


def numpy_knn(samples: np.ndarray, labels: list, queries: np.ndarray, k: int, inverse: bool) -> list:
    """Reference k-NN: squared Euclidean, k nearest, (inverse-)distance votes."""
    out = []
    for q in queries:
        d = ((samples.astype(np.float64) - q.astype(np.float64)) ** 2).sum(1)
        near = np.argsort(d)[:k]
        votes: dict = {}
        for i in near:
            votes[labels[i]] = votes.get(labels[i], 0.0) + (1.0 / d[i] if inverse else 1.0)
        total = sum(votes.values())
        out.append((max(votes, key=votes.get), {lab: v / total for lab, v in votes.items()}))
    return out


@pytest.mark.parametrize("kwargs", [
    {"default": "defaultLabel", "k": 3, "weighting": "inverse_distance", "index": "linear"},
    {"default": "unknown", "k": 5, "weighting": "uniform", "index": "kd_tree", "leaf_size": 12},
    {"default": -1, "k": 2, "weighting": "uniform", "index": "linear"},
])
def test_spec_matches_coremltools_builder(kwargs: dict) -> None:
    default = kwargs.pop("default")
    ours = mlupdate.knn_classifier(128, default_label=default, input_name="embedding", output_name="label", **kwargs)
    theirs = _ct_spec(128, default, "embedding", "label", **kwargs)
    spec = ours.spec
    assert spec.SerializeToString(deterministic=True) == theirs.SerializeToString(deterministic=True), (spec, theirs)
    assert spec.specificationVersion == 4 and spec.isUpdatable
    assert [f.name for f in spec.description.trainingInput] == ["embedding", "label"]
    assert spec.description.predictedProbabilitiesName == "labelProbs"


def test_k_set_matches_builder_and_loads_in_coremltools(tmp_path) -> None:  # noqa: ANN001
    import coremltools as ct

    ours = mlupdate.knn_classifier(4, k=3, k_set=[1, 3, 5])
    theirs = _ct_spec(4, "defaultLabel", "features", "label", k=3, k_set=[1, 3, 5])
    assert sorted(ours.spec.kNearestNeighborsClassifier.numberOfNeighbors.set.values) == [1, 3, 5]
    ours_k = ours.spec.kNearestNeighborsClassifier.numberOfNeighbors
    assert ours_k == theirs.kNearestNeighborsClassifier.numberOfNeighbors
    path = ours.write(tmp_path / "knn.mlmodel")
    loaded = ct.utils.load_spec(str(path))
    assert loaded == ours.spec
    ct.models.MLModel(loaded)  # coremltools accepts the spec (predict needs macOS)


@pytest.mark.parametrize("bad, match", [
    ({"dimensions": 0}, "dimensions"),
    ({"k": 0}, "k must"),
    ({"weighting": "distance"}, "weighting"),
    ({"index": "ball_tree"}, "index"),
    ({"index": "kd_tree", "leaf_size": 0}, "leaf_size"),
    ({"default_label": 1.5}, "default_label"),
    ({"k": 7, "k_set": [1, 3]}, "not in k_set"),
    ({"k": 2000}, "outside k_range"),
    ({"input_name": "label"}, "distinct"),
])
def test_invalid_arguments_raise_authoring_error(bad: dict, match: str) -> None:
    args = {"dimensions": 4, **bad}
    with pytest.raises(mlupdate.AuthoringError, match=match):
        mlupdate.knn_classifier(**args)


def test_empty_model_predicts_default_label() -> None:
    model = mlupdate.knn_classifier(3, default_label="nothing yet")
    out = model.predict({"features": np.zeros(3, np.float32)})
    assert out == {"label": "nothing yet", "labelProbs": {"nothing yet": 1.0}}


@pytest.mark.parametrize("weighting", ["uniform", "inverse_distance"])
@pytest.mark.parametrize("k", [1, 3, 7])
def test_predictions_match_numpy_knn_for_both_indexes(weighting: str, k: int) -> None:
    rng = np.random.default_rng(k)
    samples = rng.normal(size=(60, 5)).astype(np.float32)
    labels = [str(v) for v in rng.choice(["cat", "dog", "fox"], size=60)]
    queries = rng.normal(size=(25, 5)).astype(np.float32)
    want = numpy_knn(samples, labels, queries, k, weighting == "inverse_distance")
    results = {}
    for index in ("linear", "kd_tree"):
        model = _with_samples(mlupdate.knn_classifier(5, k=k, weighting=weighting, index=index, leaf_size=4),
                              samples, labels)
        results[index] = model.predict_batch([{"features": q} for q in queries])
        for got, (label, probs) in zip(results[index], want, strict=True):
            assert got["label"] == label
            assert set(got["labelProbs"]) == {"cat", "dog", "fox"}
            for lab, p in got["labelProbs"].items():
                assert p == pytest.approx(probs.get(lab, 0.0), abs=1e-9)
    assert results["linear"] == results["kd_tree"]


def test_k_larger_than_sample_count_uses_all_samples_and_int_labels() -> None:
    model = _with_samples(mlupdate.knn_classifier(2, k=5, default_label=0), np.array([[0, 0], [1, 1]]), [7, 9])
    out = model.predict({"features": np.array([0.1, 0.1], np.float32)})
    assert out["label"] == 7 and out["labelProbs"] == {7: 0.5, 9: 0.5}


def test_exact_match_wins_under_inverse_distance() -> None:
    pts = np.array([[0, 0], [0.5, 0], [0.6, 0]], np.float32)
    for index in ("linear", "kd_tree"):
        model = _with_samples(mlupdate.knn_classifier(2, k=3, weighting="inverse_distance", index=index), pts,
                              ["a", "b", "b"])
        out = model.predict({"features": np.array([0, 0], np.float32)})
        assert out == {"label": "a", "labelProbs": {"a": 1.0, "b": 0.0}}


def test_ties_go_to_the_nearest_neighbours_label_and_earlier_samples() -> None:
    # Equidistant samples: the earlier sample is nearer in the ordering, in both indexes.
    pts = np.array([[1, 0], [-1, 0], [0, 1], [0, -1]], np.float32)
    for index in ("linear", "kd_tree"):
        model = _with_samples(mlupdate.knn_classifier(2, k=2, index=index, leaf_size=1), pts, ["b", "a", "c", "d"])
        out = model.predict({"features": np.zeros(2, np.float32)})
        assert out["label"] == "b"  # samples 0 and 1 are picked (votes b=1, a=1); the first one's label wins
        assert out["labelProbs"] == {"b": 0.5, "a": 0.5, "c": 0.0, "d": 0.0}


def test_wrong_feature_and_inconsistent_spec_raise() -> None:
    model = _with_samples(mlupdate.knn_classifier(3), np.zeros((2, 3)), ["x", "y"])
    with pytest.raises(mlupdate.FeatureError, match="features"):
        model.predict({"embedding": np.zeros(3)})
    with pytest.raises(mlupdate.FeatureError, match="shape"):
        model.predict({"features": np.zeros(4)})
    spec = model.spec
    spec.kNearestNeighborsClassifier.stringClassLabels.vector.append("z")
    with pytest.raises(mlupdate.SpecError, match="3 labels"):
        mlupdate.Model(spec)
    spec = model.spec
    spec.kNearestNeighborsClassifier.nearestNeighborsIndex.floatSamples[0].vector.append(1.0)
    with pytest.raises(mlupdate.SpecError, match="sample 0"):
        mlupdate.Model(spec)
