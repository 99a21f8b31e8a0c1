"""classConfidenceThresholding against ClassConfidenceThresholding.proto's two formulas, on hand-built specs."""

from __future__ import annotations

import numpy as np
import pytest
from coremltools.proto import Model_pb2

import mlupdate
from tests.unit._sklearn_coreml import write

MODEL_TYPES = ("classConfidenceThresholding",)
REFERENCE = ("the proto's filteredClassConfidences[0, :] = classConfidences, [1, :] = 1, and its validator's checks "
             "of the precision-recall curves")
C = 5


def _spec(curves=C, dtype=Model_pb2.ArrayFeatureType.FLOAT32):
    spec = Model_pb2.Model(specificationVersion=7)
    spec.classConfidenceThresholding.SetInParent()
    for fd, shape in ((spec.description.input.add(name="classConfidences"), [C]),
                      (spec.description.output.add(name="filteredClassConfidences"), [2, C])):
        fd.type.multiArrayType.shape.extend(shape)
        fd.type.multiArrayType.dataType = dtype
    for _ in range(curves):
        curve = spec.classConfidenceThresholding.precisionRecallCurves.add()
        curve.precisionValues.vector.extend([0.5, 0.9])
        curve.precisionConfidenceThresholds.vector.extend([0.1, 0.6])
        curve.recallValues.vector.extend([0.8])
        curve.recallConfidenceThresholds.vector.extend([0.3])
    return spec


@pytest.mark.parametrize("dtype", [Model_pb2.ArrayFeatureType.FLOAT32, Model_pb2.ArrayFeatureType.DOUBLE])
def test_confidences_pass_through_and_every_class_is_present(tmp_path, dtype):
    model = write(_spec(dtype=dtype), tmp_path / "t.mlmodel")
    conf = np.random.default_rng(2).dirichlet(np.ones(C), 6)
    got = [r["filteredClassConfidences"] for r in model.predict_batch([{"classConfidences": c} for c in conf])]
    want_dtype = np.float32 if dtype == Model_pb2.ArrayFeatureType.FLOAT32 else np.float64
    for c, g in zip(conf, got, strict=True):
        assert g.shape == (2, C) and g.dtype == want_dtype
        np.testing.assert_array_equal(g[0], c.astype(want_dtype))
        np.testing.assert_array_equal(g[1], np.ones(C))


def test_curves_are_checked_as_the_validator_does():
    with pytest.raises(mlupdate.SpecError, match="no precisionRecallCurves"):
        mlupdate.Model(_spec(curves=0))
    with pytest.raises(mlupdate.SpecError, match="4 precisionRecallCurves for 5 classes"):
        mlupdate.Model(_spec(curves=4))
    spec = _spec()
    spec.classConfidenceThresholding.precisionRecallCurves[2].recallValues.vector.append(0.1)
    with pytest.raises(mlupdate.SpecError, match="Curve 2 .* 2 recallValues and 1 recallConfidenceThresholds"):
        mlupdate.Model(spec)
    spec = _spec()
    spec.classConfidenceThresholding.precisionRecallCurves[0].precisionValues.vector[0] = float("nan")
    with pytest.raises(mlupdate.SpecError, match="NaN"):
        mlupdate.Model(spec)
    with pytest.raises(mlupdate.FeatureError):
        mlupdate.Model(_spec()).predict({"classConfidences": np.ones(C + 1)})
