"""The export's peephole pass removes the unit-axis copies around element-wise ops and changes no value."""

from __future__ import annotations

import numpy as np
import onnx

import mlupdate
from tests.unit.test_layers_base import builder, rand, save


def test_conv_stacks_export_without_unit_axis_copies(tmp_path):
    b = builder([("x", (1, 3, 8, 8))], ("y",), nd=True)
    w = rand(4, 3, 3, 3, seed=1)
    b.add_convolution("c1", 3, 4, 3, 3, 1, 1, "same", 1, w, rand(4, seed=2), True, input_name="x", output_name="h")
    b.add_clip("clip", "h", "hc", min_value=0.0, max_value=6.0)
    b.add_convolution("c2", 4, 4, 3, 3, 1, 1, "same", 1, rand(4, 4, 3, 3, seed=3), None, False,
                      input_name="hc", output_name="h2")
    b.add_add_broadcastable("res", ["h2", "hc"], "y")
    path = save(b, tmp_path)
    ours = mlupdate.load(path, executor="onnxruntime")
    ops = [n.op_type for n in onnx.load_from_string(ours._program.executor.onnx_bytes).graph.node]
    assert ops.count("Gather") == 1, ops  # only the input is sliced: no copies between the layers
    truth = mlupdate.load(path, executor="torch")
    xs = [{"x": rand(1, 3, 8, 8, seed=s)} for s in range(3)]
    for got, want in zip(ours.predict_batch(xs), truth.predict_batch(xs), strict=True):
        np.testing.assert_allclose(got["y"], want["y"], rtol=1e-5, atol=1e-5)
