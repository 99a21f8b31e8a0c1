"""UpdateTask's life cycle, events, errors, cancellation, thread safety and k-NN updates."""

from __future__ import annotations

import io
import threading

import numpy as np
import pytest
from PIL import Image

import mlupdate
from mlupdate.spec.io import write_spec
from tests.unit import _update_models as M


def _data(n=8):
    rng = np.random.default_rng(0)
    return [{"input": rng.standard_normal(4).astype(np.float32), "label": M.LABELS[i % 3]} for i in range(n)]


def test_events_sequence_and_only_registered():
    spec = M.dense_classifier(batch=3, epochs=2)
    seen = []
    mlupdate.UpdateTask(spec, _data(8), progress_handlers=mlupdate.ProgressHandlers(
        {"training_begin", "epoch_end", "mini_batch_end"}, lambda c: seen.append(
            (c.event, c.metrics["epoch_index"], c.metrics["mini_batch_index"])))).run()
    mb = [(e, i, j) for e, i, j in seen if e == "mini_batch_end"]
    assert seen[0] == ("training_begin", 0, 0) and [e for e, *_ in seen].count("training_begin") == 1
    assert mb == [("mini_batch_end", e, j) for e in range(2) for j in range(3)]  # 8 examples / 3 = 3 batches
    assert [s for s in seen if s[0] == "epoch_end"] == [("epoch_end", 0, 2), ("epoch_end", 1, 2)]
    assert seen.index(("epoch_end", 0, 2)) == seen.index(("mini_batch_end", 0, 2)) + 1
    only = []
    mlupdate.UpdateTask(spec, _data(8), progress_handlers=mlupdate.ProgressHandlers(
        {"epoch_end"}, lambda c: only.append(c.event))).run()
    assert only == ["epoch_end", "epoch_end"]


def test_context_model_has_weights_of_that_event():
    spec = M.dense_classifier(batch=8, epochs=2)
    x = {"input": np.ones(4, np.float32)}
    models = []
    ctx = mlupdate.UpdateTask(spec, _data(8), progress_handlers=mlupdate.ProgressHandlers(
        {"training_begin", "epoch_end"}, lambda c: models.append(c.model))).run()
    before = mlupdate.Model(spec).predict(x)["probs"]
    assert models[0].predict(x)["probs"] == pytest.approx(before, abs=1e-6)
    assert models[-1].predict(x)["probs"] == pytest.approx(ctx.model.predict(x)["probs"], abs=1e-6)
    assert models[1].predict(x)["probs"] != pytest.approx(before, abs=1e-4)


def test_completion_once_and_resume_wait(tmp_path):
    calls = []
    task = mlupdate.UpdateTask(M.dense_classifier(), _data(), completion_handler=calls.append)
    assert task.state == "suspended"
    task.resume()
    assert task.wait(60)
    assert task.state == "completed" and task.error is None and len(calls) == 1
    out = calls[0].model.write(tmp_path / "u.mlmodel")
    assert mlupdate.load(out).predict({"input": np.zeros(4)})["label"] in M.LABELS
    with pytest.raises(mlupdate.UpdateError):
        task.resume()


def test_cancel_writes_nothing(tmp_path):
    path = write_spec(M.dense_classifier(batch=1, epochs=50), tmp_path / "m.mlmodel")
    original = path.read_bytes()
    calls = []

    def handler(ctx):
        if ctx.metrics["mini_batch_index"] == 2:
            ctx.task.cancel()
            assert ctx.task.state == "cancelling"
    task = mlupdate.UpdateTask(path, _data(), completion_handler=calls.append,
                               progress_handlers=mlupdate.ProgressHandlers({"mini_batch_end"}, handler))
    task.resume()
    task.wait()
    assert task.state == "failed" and task.cancelled and isinstance(task.error, mlupdate.UpdateError)
    assert len(calls) == 1 and calls[0].model is None
    assert path.read_bytes() == original and sorted(p.name for p in tmp_path.iterdir()) == ["m.mlmodel"]
    with pytest.raises(mlupdate.UpdateError, match="cancelled"):
        calls[0].write(tmp_path / "x.mlmodel")
    suspended = mlupdate.UpdateTask(path, _data())
    suspended.cancel()
    assert suspended.state == "failed" and suspended.cancelled


def test_handler_that_raises_fails_task():
    calls = []

    def bad(ctx):
        raise ZeroDivisionError("boom")
    task = mlupdate.UpdateTask(M.dense_classifier(), _data(), completion_handler=calls.append,
                               progress_handlers=mlupdate.ProgressHandlers({"epoch_end"}, bad))
    with pytest.raises(mlupdate.UpdateError, match="ZeroDivisionError: boom"):
        task.run()
    assert task.state == "failed" and len(calls) == 1


def test_errors_up_front():
    spec = M.dense_classifier()
    with pytest.raises(mlupdate.TrainingDataError, match="empty"):
        mlupdate.UpdateTask(spec, [])
    with pytest.raises(mlupdate.TrainingDataError, match="has no 'label'.*input, label"):
        mlupdate.UpdateTask(spec, [{"input": np.zeros(4)}])
    with pytest.raises(mlupdate.TrainingDataError, match="'Dog'.*'a', 'b', 'c'"):
        mlupdate.UpdateTask(spec, [{"input": np.zeros(4), "label": "Dog"}])
    with pytest.raises(mlupdate.FeatureError, match="Training example 1.*shape"):
        mlupdate.UpdateTask(spec, [{"input": np.zeros(4), "label": "a"}, {"input": np.zeros(5), "label": "a"}])
    with pytest.raises(mlupdate.ParameterError, match="learning_rate"):
        mlupdate.UpdateTask(spec, _data(), parameters={"learnin_rate": 0.1})
    with pytest.raises(mlupdate.ParameterError, match="range"):
        mlupdate.UpdateTask(spec, _data(), parameters={"learning_rate": 5.0})
    with pytest.raises(mlupdate.ParameterError, match="allowed"):
        mlupdate.UpdateTask(spec, _data(), parameters={"epochs": 7})
    plain = M.dense_classifier()
    plain.isUpdatable = False
    with pytest.raises(mlupdate.NotUpdatableError, match="not updatable"):
        mlupdate.UpdateTask(plain, _data())
    task = mlupdate.UpdateTask(spec, _data())
    with pytest.raises(mlupdate.ParameterError, match="only learning_rate"):
        task.resume(parameters={"epochs": 2})


def test_nan_loss_fails_with_advice():
    data = [{"input": np.full(4, 3e38, np.float32), "label": "a"}] * 4
    task = mlupdate.UpdateTask(M.dense_classifier(), data)
    with pytest.raises(mlupdate.UpdateError, match="Lower the learning rate"):
        task.run()
    assert task.state == "failed"


def test_bad_image_fails_task_naming_example():
    spec = M.conv_classifier(image=True)
    good = Image.fromarray(np.arange(36, dtype=np.uint8).reshape(6, 6), "L")
    buf = io.BytesIO()
    good.save(buf, "PNG")
    ok = mlupdate.UpdateTask(spec, [{"input": good, "label": "a"}, {"input": buf.getvalue(), "label": "b"}]).run()
    assert ok.model.description.inputs["input"].type == "image"
    task = mlupdate.UpdateTask(spec, [{"input": good, "label": "a"}, {"input": b"not an image", "label": "b"}])
    with pytest.raises(mlupdate.ImageError, match="Training example 1"):
        task.validate()
    with pytest.raises(mlupdate.ImageError, match="Training example 1"):
        task.run()


def test_original_model_unaffected_while_updating():
    spec = M.dense_classifier(batch=1, epochs=50, lr=0.5)
    model = mlupdate.Model(spec)
    x = [{"input": np.full(4, v, np.float32)} for v in (-1.0, 0.0, 2.0)]
    before = [r["probs"] for r in model.predict_batch(x)]
    task = mlupdate.UpdateTask(model, _data(16))
    task.resume()
    during = []
    while not task.wait(0):
        during.append([r["probs"] for r in model.predict_batch(x)])
    assert task.state == "completed" and during
    assert all(d == before for d in during)
    assert [r["probs"] for r in model.predict_batch(x)] == before
    assert [r["probs"] for r in task.context.model.predict_batch(x)] != before
    assert threading.active_count() >= 1


def test_knn_update_appends_samples():
    from coremltools.models.nearest_neighbors import KNearestNeighborsClassifierBuilder

    b = KNearestNeighborsClassifierBuilder("features", "label", 3, "none", weighting_scheme="inverse_distance",
                                           index_type="kd_tree", leaf_size=10)
    b.add_samples(np.eye(3, dtype=np.float32), ["x", "y", "z"])
    spec = b.spec
    data = [{"features": [1.0, 1.0, 0.0], "label": "x"}, {"features": np.array([0.0, 2.0, 2.0]), "label": "new"}]
    ctx = mlupdate.UpdateTask(spec, data, parameters={"number_of_neighbors": 2}).run()
    knn = ctx.spec.kNearestNeighborsClassifier
    assert [list(s.vector) for s in knn.nearestNeighborsIndex.floatSamples][3:] == [[1, 1, 0], [0, 2, 2]]
    assert list(knn.stringClassLabels.vector) == ["x", "y", "z", "x", "new"]
    assert knn.WhichOneof("WeightingScheme") == "inverseDistanceWeighting"
    assert knn.nearestNeighborsIndex.singleKdTreeIndex.leafSize == 10
    assert knn.numberOfNeighbors.defaultValue == 2
    assert len(spec.kNearestNeighborsClassifier.nearestNeighborsIndex.floatSamples) == 3  # caller's spec untouched
    with pytest.raises(mlupdate.FeatureError, match=r"Training example 0.*expects \[3\]"):
        mlupdate.UpdateTask(spec, [{"features": [1.0, 2.0], "label": "x"}])
