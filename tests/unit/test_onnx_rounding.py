"""The export pass moves fp16 rounding pairs past ops that commute with rounding and changes no value.

The truth is onnxruntime itself on the graph before the pass, with its optimisations off: the rewritten
graph must give the same bits (fp16 rounding is monotone, keeps 0 and NaN, and is idempotent).
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from mlupdate.runtime.onnx_rewrite import simplify


def _round(name: str, out: str) -> list:
    return [helper.make_node("Cast", [name], [out + "_h"], to=TensorProto.FLOAT16),
            helper.make_node("Cast", [out + "_h"], [out], to=TensorProto.FLOAT)]


def _graph(clip_max: float) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((4, 2, 3, 3)) * 300).astype(np.float16).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), *_round("c", "cr"),
             helper.make_node("Relu", ["cr"], ["r"]),
             helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Sub", ["p", "k"], ["s"]), *_round("s", "sr"),
             helper.make_node("Clip", ["sr", "lo", "hi"], ["q"]), *_round("q", "qr"), *_round("qr", "y")]
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.float32(1.0), "k"),
             numpy_helper.from_array(np.float32(0.0), "lo"), numpy_helper.from_array(np.float32(clip_max), "hi")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 4, 4])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


def _inputs() -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    xs = [rng.standard_normal((1, 2, 8, 8)).astype(np.float32) * s for s in (1e-6, 1.0, 1e3)]
    xs[2][0, 0, 0, :3] = [np.nan, -0.0, 1e30]  # NaN, signed zero and fp16 overflow travel the same way
    return xs


def test_rounding_moves_past_relu_maxpool_and_exact_clip_bit_for_bit():
    before = _graph(6.0)
    after = simplify(_graph(6.0))
    onnx.checker.check_model(after)
    ops = [n.op_type for n in after.graph.node]
    assert ops[:3] == ["Conv", "Relu", "MaxPool"], ops  # the pair no longer sits between Conv and Relu
    assert ops.count("Cast") == 4, ops  # two of the four pairs: one after MaxPool, one after Clip (merged twice)
    for x in _inputs():
        np.testing.assert_array_equal(_run(after, x), _run(before, x))


def test_clip_with_a_bound_fp16_cannot_hold_keeps_its_rounding_before():
    after = simplify(_graph(0.1))  # 0.1 is not an fp16 value: clip and rounding do not commute
    ops = [n.op_type for n in after.graph.node]
    i = ops.index("Clip")
    assert ops[i - 2:i] == ["Cast", "Cast"], ops
    for x in _inputs():
        np.testing.assert_array_equal(_run(after, x), _run(_graph(0.1), x))
