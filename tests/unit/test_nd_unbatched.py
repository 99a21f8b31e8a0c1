"""ND networks whose inputs lack a leading batch axis run one example at a time, with declared ranks."""

from __future__ import annotations

import numpy as np
import pytest
from coremltools.models import datatypes
from coremltools.models.neural_network import NeuralNetworkBuilder
from coremltools.models.utils import save_spec

import mlupdate


@pytest.mark.parametrize("executor", ["torch", "onnxruntime"])
def test_positive_axes_see_declared_ranks(tmp_path, executor):
    b = NeuralNetworkBuilder([("a", datatypes.Array(1, 3)), ("b", datatypes.Array(3))], [("y", None)],
                             disable_rank5_shape_mapping=True)
    b.add_add_broadcastable("add", ["a", "b"], "s")
    b.add_reduce_sum("r", "s", "y", axes=[1], keepdims=False)  # axis 1 of the rank-2 sum
    path = tmp_path / "m.mlmodel"
    save_spec(b.spec, str(path))
    model = mlupdate.load(path, executor=executor)
    rng = np.random.default_rng(0)
    examples = [{"a": rng.random((1, 3), dtype=np.float32), "b": rng.random(3, dtype=np.float32)} for _ in range(3)]
    got = model.predict_batch(examples)
    for ex, out in zip(examples, got, strict=True):
        np.testing.assert_allclose(out["y"].reshape(-1), (ex["a"] + ex["b"]).sum(axis=1), rtol=1e-6)
