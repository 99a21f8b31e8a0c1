"""nonMaximumSuppression against a per-box numpy PickTop written from NonMaximumSuppression.proto.

The specs are built with Model_pb2 (coremltools has no Python builder for the type); the detection
pipeline's network stage is built with coremltools' NeuralNetworkBuilder.
"""

from __future__ import annotations

import numpy as np
import pytest
from coremltools.models import datatypes
from coremltools.models.neural_network import NeuralNetworkBuilder
from coremltools.proto import Model_pb2

import mlupdate
from tests.unit._sklearn_coreml import write

MODEL_TYPES = ("nonMaximumSuppression",)
REFERENCE = ("a per-box numpy PickTop (sort by top confidence, keep, suppress IoU above the threshold, per class "
             "or not) written from NonMaximumSuppression.proto; a NeuralNetworkBuilder network + NMS pipeline")
RNG = np.random.default_rng(7)
N, C = 40, 3
DOUBLE = Model_pb2.ArrayFeatureType.DOUBLE


def _array(fd, shape=(), rows=None):
    fd.type.multiArrayType.dataType = DOUBLE
    fd.type.multiArrayType.shape.extend(shape)
    if rows is not None:
        for lo, hi in (rows, (1, -1)):
            fd.type.multiArrayType.shapeRange.sizeRanges.add(lowerBound=lo, upperBound=hi)


def _spec(iou=0.5, conf=0.1, per_class=False, overrides=False, shape=(), rows=None):
    spec = Model_pb2.Model(specificationVersion=3)
    nms = spec.nonMaximumSuppression
    nms.pickTop.perClass = per_class
    nms.iouThreshold, nms.confidenceThreshold = iou, conf
    d = spec.description
    for field, name in (("confidenceInputFeatureName", "raw_confidence"),
                        ("coordinatesInputFeatureName", "raw_coordinates")):
        _array(d.input.add(name=name))
        setattr(nms, field, name)
    if overrides:
        for field, name in (("iouThresholdInputFeatureName", "iouThreshold"),
                            ("confidenceThresholdInputFeatureName", "confidenceThreshold")):
            t = d.input.add(name=name).type
            t.doubleType.SetInParent()
            t.isOptional = True
            setattr(nms, field, name)
    for field, name, width in (("confidenceOutputFeatureName", "confidence", C),
                               ("coordinatesOutputFeatureName", "coordinates", 4)):
        _array(d.output.add(name=name), (*shape[:1], width) if shape else (), rows)
        setattr(nms, field, name)
    return spec


def reference_nms(conf, boxes, iou_threshold, conf_threshold, per_class):
    """PickTop, one box at a time, as the proto's steps 1-5 describe it."""
    def iou(a, b):
        ax0, ay0, ax1, ay1 = a[0] - a[2] / 2, a[1] - a[3] / 2, a[0] + a[2] / 2, a[1] + a[3] / 2
        bx0, by0, bx1, by1 = b[0] - b[2] / 2, b[1] - b[3] / 2, b[0] + b[2] / 2, b[1] + b[3] / 2
        inter = max(0.0, min(ax1, bx1) - max(ax0, bx0)) * max(0.0, min(ay1, by1) - max(ay0, by0))
        union = a[2] * a[3] + b[2] * b[3] - inter
        return inter / union if union > 0 else 0.0

    remaining = sorted((i for i in range(len(conf)) if conf[i].max() >= conf_threshold), key=lambda i: -conf[i].max())
    keep = []
    while remaining:
        top = remaining.pop(0)
        keep.append(top)
        remaining = [i for i in remaining if not (iou(boxes[top], boxes[i]) > iou_threshold
                                                  and (not per_class or conf[i].argmax() == conf[top].argmax()))]
    return keep


def _boxes(n=N):
    centers = RNG.uniform(0.2, 0.8, (n, 2))
    sizes = RNG.uniform(0.05, 0.3, (n, 2))
    return np.hstack([centers, sizes]), RNG.dirichlet(np.ones(C), n) * RNG.uniform(0.2, 1.0, (n, 1))


@pytest.mark.parametrize("per_class", [False, True])
@pytest.mark.parametrize(("iou", "conf"), [(0.5, 0.1), (0.2, 0.0), (1.0, 0.3), (0.0, 0.25)])
def test_pick_top_matches_the_reference(tmp_path, per_class, iou, conf):
    model = write(_spec(iou, conf, per_class), tmp_path / "nms.mlmodel")
    examples = [_boxes() for _ in range(4)]
    got = model.predict_batch([{"raw_coordinates": b, "raw_confidence": c} for b, c in examples])
    for (boxes, confidence), res in zip(examples, got, strict=True):
        keep = reference_nms(confidence, boxes, iou, conf, per_class)
        np.testing.assert_array_equal(res["coordinates"], boxes[keep])
        np.testing.assert_array_equal(res["confidence"], confidence[keep])
        assert res["confidence"].dtype == np.float64


def test_thresholds_can_be_overridden_per_prediction(tmp_path):
    model = write(_spec(0.5, 0.1, overrides=True), tmp_path / "nms.mlmodel")
    boxes, conf = _boxes()
    res = model.predict({"raw_coordinates": boxes, "raw_confidence": conf, "iouThreshold": 0.15,
                         "confidenceThreshold": 0.2})
    np.testing.assert_array_equal(res["coordinates"], boxes[reference_nms(conf, boxes, 0.15, 0.2, False)])
    res = model.predict({"raw_coordinates": boxes, "raw_confidence": conf})
    np.testing.assert_array_equal(res["coordinates"], boxes[reference_nms(conf, boxes, 0.5, 0.1, False)])
    with pytest.raises(mlupdate.FeatureError, match="'iouThreshold' must be between 0 and 1.0"):
        model.predict({"raw_coordinates": boxes, "raw_confidence": conf, "iouThreshold": 1.5})


@pytest.mark.parametrize(("shape", "rows", "want"), [((30,), None, 30), ((), (2, 3), 3), ((), (45, 50), 45)])
def test_declared_rows_cut_and_pad_with_zeros(tmp_path, shape, rows, want):
    model = write(_spec(0.3, 0.0, shape=shape, rows=rows), tmp_path / "nms.mlmodel")
    boxes, conf = _boxes()
    keep = reference_nms(conf, boxes, 0.3, 0.0, False)
    res = model.predict({"raw_coordinates": boxes, "raw_confidence": conf})
    expect = np.zeros((want, 4))
    expect[:min(want, len(keep))] = boxes[keep][:want]
    np.testing.assert_array_equal(res["coordinates"], expect)
    assert res["confidence"].shape == (want, C)


def test_bad_specs_and_inputs_raise_clear_errors():
    spec = _spec()
    spec.description.input.add(name="extra").type.doubleType.SetInParent()
    with pytest.raises(mlupdate.SpecError, match="'extra', which none"):
        mlupdate.Model(spec)
    spec = _spec(iou=1.5)
    with pytest.raises(mlupdate.SpecError, match=r"iouThreshold \(1.5\) must be in \[0, 1\]"):
        mlupdate.Model(spec)
    spec = _spec()
    spec.description.output[0].type.multiArrayType.dataType = Model_pb2.ArrayFeatureType.FLOAT32
    with pytest.raises(mlupdate.SpecError, match="must all be DOUBLE"):
        mlupdate.Model(spec)
    model = mlupdate.Model(_spec())
    boxes, conf = _boxes()
    with pytest.raises(mlupdate.FeatureError, match="one row per box"):
        model.predict({"raw_coordinates": boxes, "raw_confidence": conf[:-1]})
    with pytest.raises(mlupdate.FeatureError, match=r"\[N, 4\]"):
        model.predict({"raw_coordinates": boxes[:, :3], "raw_confidence": conf})


def test_detector_pipeline_runs_end_to_end(tmp_path):
    """A network (sigmoid of the class logits, boxes passed through) and NMS, in one pipeline."""
    net = NeuralNetworkBuilder([("logits", datatypes.Array(N, C)), ("boxes", datatypes.Array(N, 4))],
                               [("raw_confidence", datatypes.Array(N, C)), ("raw_coordinates", datatypes.Array(N, 4))],
                               disable_rank5_shape_mapping=True)
    net.add_activation("sig", "SIGMOID", "logits", "raw_confidence")
    net.add_activation("copy", "LINEAR", "boxes", "raw_coordinates", params=[1.0, 0.0])
    for fd in net.spec.description.output:
        fd.type.multiArrayType.dataType = DOUBLE
    pipe = Model_pb2.Model(specificationVersion=4)
    pipe.pipeline.models.add().CopyFrom(net.spec)
    pipe.pipeline.models.add().CopyFrom(_spec(0.4, 0.5, per_class=True))
    pipe.description.input.extend(net.spec.description.input)
    pipe.description.output.extend(pipe.pipeline.models[1].description.output)
    model = write(pipe, tmp_path / "detector.mlmodel")
    boxes = _boxes()[0]
    logits = RNG.normal(size=(N, C)).astype(np.float32)
    res = model.predict({"logits": logits, "boxes": boxes.astype(np.float32)})
    conf = 1 / (1 + np.exp(-logits.astype(np.float64)))
    keep = reference_nms(conf, boxes.astype(np.float32), 0.4, 0.5, True)
    assert len(keep) > 3
    np.testing.assert_allclose(res["coordinates"], boxes.astype(np.float32)[keep], rtol=1e-6)
    np.testing.assert_allclose(res["confidence"], conf[keep], rtol=1e-5)
