"""A converted fp16 CNN gives the same bits on onnxruntime with and without the export's rounding pass.

The truth is the same export with the pass switched off (``_Rounding.run`` a no-op), so what the pass
changes is the graph onnxruntime fuses, never a value.
"""

from __future__ import annotations

import numpy as np
import onnx
import torch
from torch import nn

import mlupdate
from mlupdate.runtime import onnx_rewrite
from mlupdate.spec.io import import_coremltools
from tests.conformance.test_converted_mlprograms import _convert


def _cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 8, 3, padding=1),
                         nn.ReLU6(), nn.Conv2d(8, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()


def test_fp16_cnn_results_unchanged_by_the_rounding_pass(tmp_path, monkeypatch):
    ct = import_coremltools()
    path = _convert(_cnn(), torch.rand(1, 3, 16, 16), tmp_path / "cnn.mlpackage", "fp16",
                    inputs=[ct.TensorType(name="x", shape=(1, 3, 16, 16))])
    monkeypatch.setenv("MLUPDATE_CACHE_DIR", str(tmp_path / "with"))
    ours = mlupdate.load(path, executor="onnxruntime")
    ops = [n.op_type for n in onnx.load_from_string(ours._program.executor.onnx_bytes).graph.node]
    conv = ops.index("Conv")
    assert ops[conv + 1] == "Relu", ops  # the rounding after the conv now follows its ReLU
    monkeypatch.setenv("MLUPDATE_CACHE_DIR", str(tmp_path / "without"))
    monkeypatch.setattr(onnx_rewrite._Rounding, "run", lambda self: None)
    plain = mlupdate.load(path, executor="onnxruntime")
    plain_ops = [n.op_type for n in onnx.load_from_string(plain._program.executor.onnx_bytes).graph.node]
    assert plain_ops[plain_ops.index("Conv") + 1] == "Cast", plain_ops  # the switch really turned the pass off
    rng = np.random.default_rng(0)
    for scale in (1e-3, 1.0, 50.0, 1e4):  # tiny values, ordinary ones, and ones that overflow fp16 in the convs
        x = (rng.standard_normal((1, 3, 16, 16)) * scale).astype(np.float32)
        got, want = ours.predict({"x": x}), plain.predict({"x": x})
        for name in want:
            np.testing.assert_array_equal(got[name], want[name])
