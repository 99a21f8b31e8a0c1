"""Every kernel of the activation, elementwise, reduction, linear, conv, pool and normalization families exports
with ``torch.onnx.export(dynamo=False)`` (how the runtime compiles a graph) and computes on onnxruntime what it
computes on torch, in fp32 and fp16. Random ops are marked not exportable (see test_random.py). Also the
invariants of the layer registry's harness: repeatable results, and batch independence where axis 0 is a batch.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import onnxruntime as ort
import pytest
import torch

from mlupdate.ops import OpContext, kernel_for

RNG = np.random.default_rng(0)


def f(*shape):
    return RNG.uniform(0.2, 0.9, shape).astype(np.float32)


def i32(*shape):
    return RNG.integers(1, 5, shape).astype(np.int32)


def b(*shape):
    return RNG.uniform(-1, 1, shape) > 0


def ints(*values):
    return np.array(values, np.int32)


UNARY = ["abs", "acos", "asin", "atan", "atanh", "ceil", "cos", "cosh", "erf", "exp", "exp2", "floor", "round",
         "sign", "sin", "sinh", "sqrt", "square", "tan", "tanh", "inverse", "log", "rsqrt", "relu", "relu6",
         "sigmoid", "silu", "softplus", "softsign"]
BINARY = ["add", "sub", "mul", "real_div", "floor_div", "mod", "pow", "maximum", "minimum", "equal", "not_equal",
          "greater", "greater_equal", "less", "less_equal"]
REDUCE = ["reduce_sum", "reduce_mean", "reduce_prod", "reduce_max", "reduce_min", "reduce_l1_norm", "reduce_l2_norm",
          "reduce_sum_square", "reduce_log_sum", "reduce_log_sum_exp"]
ALPHA, AB = {"alpha": np.float32(0.5)}, {"alpha": np.float32(0.5), "beta": np.float32(0.7)}
POOL = {"kernel_sizes": ints(3, 2), "strides": ints(2, 2), "pad_type": "custom", "pad": ints(1, 1, 0, 0),
        "ceil_mode": np.bool_(True)}
CASES: list[tuple[str, dict, dict]] = [
    *[(op, {"x": f(2, 3)}, {}) for op in UNARY],
    ("logical_not", {"x": b(2, 3)}, {}), ("threshold", {"x": f(2, 3)}, ALPHA),
    ("clip", {"x": f(2, 3)}, {"alpha": np.float32(0.3), "beta": np.float32(0.6)}),
    ("cast", {"x": f(2, 3) * 10}, {"dtype": "int32"}), ("cast", {"x": f(2, 3)}, {"dtype": "fp16"}),
    *[(op, {"x": f(2, 3), "y": f(3)}, {}) for op in BINARY],
    *[(op, {"x": i32(2, 3), "y": i32(3)}, {}) for op in BINARY],
    *[(op, {"x": b(2, 3), "y": b(3)}, {}) for op in ("logical_and", "logical_or", "logical_xor")],
    ("select", {"cond": b(2, 3), "a": f(2, 3), "b": f(3)}, {}),
    *[(op, {"x": f(2, 3, 4)}, p) for op, p in [
        ("elu", ALPHA), ("leaky_relu", ALPHA), ("thresholded_relu", ALPHA), ("linear_activation", AB),
        ("scaled_tanh", AB), ("sigmoid_hard", AB), ("clamped_relu", AB), ("gelu", {}),
        ("gelu", {"mode": "TANH_APPROXIMATION"}), ("softmax", {"axis": np.int32(1)}),
        ("softplus_parametric", {"alpha": f(3), "beta": f(3)})]],
    ("prelu", {"x": f(2, 3, 4, 2)}, {"alpha": f(3)}),
    *[(op, {"x": f(2, 3, 4)}, {"axes": ints(0, 2), "keep_dims": np.bool_(True)}) for op in REDUCE],
    *[(op, {"x": i32(2, 3, 4)}, {"axes": ints(1)}) for op in REDUCE],
    ("reduce_argmax", {"x": f(2, 3, 4)}, {"axis": np.int32(1)}), ("reduce_argmin", {"x": f(2, 3, 4)}, {}),
    ("linear", {"x": f(2, 3, 4)}, {"weight": f(5, 4), "bias": f(5)}),
    ("matmul", {"x": f(2, 3, 4), "y": f(4, 5)}, {"transpose_x": np.bool_(False)}),
    ("matmul", {"x": f(4), "y": f(2, 4, 5)}, {}),
    ("einsum", {"values": [f(1, 3, 4, 5), f(2, 5, 4, 6)]}, {"equation": "nchw,nwhu->nchu"}),
    ("conv", {"x": f(1, 3, 8, 8)}, {"weight": f(4, 3, 3, 3), "bias": f(4), "pad_type": "same", "strides": ints(2, 2)}),
    ("conv", {"x": f(1, 4, 9)}, {"weight": f(4, 2, 3), "pad_type": "custom", "pad": ints(1, 2), "groups": np.int32(2)}),
    ("conv", {"x": f(1, 2, 4, 5, 6)}, {"weight": f(3, 2, 2, 2, 2), "pad_type": "same_lower"}),
    ("conv_transpose", {"x": f(1, 3, 5, 5)}, {"weight": f(3, 2, 3, 3), "bias": f(2), "pad_type": "same",
                                              "strides": ints(2, 2)}),
    ("conv_transpose", {"x": f(1, 3, 5)}, {"weight": f(3, 2, 3), "output_shape": ints(1, 2, 12), "strides": ints(2)}),
    ("conv_quantized", {"x": f(1, 2, 5, 5)}, {"weight": i32(3, 2, 2, 2).astype(np.uint8), "quantization_type": "linear",
                                              "quant_scale": f(3), "quant_bias": np.float32(0.1)}),
    *[(op, {"x": f(1, 3, 7, 8)}, POOL) for op in ("max_pool", "avg_pool", "l2_pool")],
    ("max_pool", {"x": f(1, 3, 4, 5, 6)}, {"kernel_sizes": ints(2, 2, 2), "pad_type": "same"}),
    ("avg_pool", {"x": f(1, 3, 4, 5, 6)}, {"kernel_sizes": ints(2, 2, 2), "pad_type": "same",
                                           "exclude_padding_from_average": np.bool_(True)}),
    ("batch_norm", {"x": f(2, 3, 4, 5)}, {"mean": f(3), "variance": f(3), "gamma": f(3), "beta": f(3)}),
    ("instance_norm", {"x": f(2, 3, 4, 5)}, {"gamma": f(3)}),
    ("layer_norm", {"x": f(2, 3, 4, 5)}, {"axes": ints(1, 3), "gamma": f(3, 5)}),
    ("l2_norm", {"x": f(2, 3, 4, 5)}, {}), ("local_response_norm", {"x": f(2, 6, 4, 5)}, {"size": np.int32(3)}),
    ("matmul", {"x": i32(2, 3, 4), "y": i32(4, 5)}, {}), ("linear", {"x": i32(2, 4)}, {"weight": i32(5, 4)}),
]


FAMILY_MODULES = ("activation", "elementwise_binary", "elementwise_unary", "reduction", "linear", "conv", "pool",
                  "normalization", "random")


def test_every_op_coremltools_defines_in_these_families_is_registered():
    from coremltools.converters.mil.mil.ops import defs  # noqa: F401 - registers the ops
    from coremltools.converters.mil.mil.ops.registry import SSAOpRegistry

    from mlupdate.ops import OPS, supported_ops

    defined = {name for name, versions in SSAOpRegistry.core_ops.items()
               if any(cls.__module__.rsplit(".", 1)[-1] in FAMILY_MODULES for cls in versions.values())}
    assert len(defined) == 17 + 18 + 27 + 12 + 3 + 3 + 3 + 5 + 4
    assert defined | {"select"} <= set(supported_ops())
    # the opsets that changed a meaning or a parameter have their own kernel
    later = {name: sorted(v for v in OPS[name] if v > 15) for name in defined if len(OPS[name]) > 1}
    assert later == {**dict.fromkeys(("cast", "clip", "reduce_argmax", "reduce_argmin"), [17]),
                     **dict.fromkeys(("conv", "conv_quantized", "max_pool", "avg_pool", "l2_pool"), [16])}


def _tensor(value):
    return value if isinstance(value, str) else torch.from_numpy(np.ascontiguousarray(value))


class _Op(torch.nn.Module):
    """One kernel as a module: the dynamic inputs are its arguments, the constants are baked in."""

    def __init__(self, op, dyn, consts):
        super().__init__()
        self.kernel = kernel_for(op, 18, op)  # the latest kernels (same_lower needs iOS16)
        self.ctx = OpContext(op, name=op, opset=18, consts=consts, dynamic=frozenset(dyn))
        self.layout = [(name, len(v) if isinstance(v, list) else None) for name, v in dyn.items()]
        self.consts = consts

    def forward(self, *xs):
        inputs, j = {}, 0
        for name, count in self.layout:
            inputs[name] = list(xs[j:j + count]) if count else xs[j]
            j += count or 1
        inputs.update({k: _tensor(v) for k, v in self.consts.items()})
        return self.kernel(self.ctx, inputs)


def _half(value):
    if isinstance(value, list):
        return [_half(v) for v in value]
    return value.astype(np.float16) if value.dtype == np.float32 else value


@pytest.mark.parametrize("dtype", ["fp32", "fp16"])
@pytest.mark.parametrize("op, dyn, consts", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_kernel_exports_and_matches_on_onnxruntime(op, dyn, consts, dtype):
    if dtype == "fp16":
        dyn = {k: _half(v) for k, v in dyn.items()}
    flat = [a for v in dyn.values() for a in (v if isinstance(v, list) else [v])]
    module, args = _Op(op, dyn, consts), tuple(torch.from_numpy(a) for a in flat)
    want = module(*args).numpy()
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, buf, dynamo=False, opset_version=17)
    session = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    got = session.run(None, {i.name: a for i, a in zip(session.get_inputs(), flat, strict=True)})[0]
    assert got.dtype == want.dtype and got.shape == want.shape
    tol = 1e-5 if dtype == "fp32" else 4e-3  # fp16: a few units in the last place (sums rounded differently)
    np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64), rtol=tol, atol=tol)


def _batch_wise(op, dyn, consts):
    """Whether the case computes each slice of axis 0 of its only input on its own."""
    if set(dyn) != {"x"} or dyn["x"].ndim < 2:
        return False
    axes = consts.get("axes")
    return axes is None and not op.startswith("reduce_") or axes is not None and 0 not in axes or op in (
        "reduce_argmax", "reduce_argmin")


@pytest.mark.parametrize("op, dyn, consts", [c for c in CASES if _batch_wise(*c)],
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES) if _batch_wise(*c)])
def test_batch_independence_and_repeatability(op, dyn, consts):
    module, x = _Op(op, dyn, consts), torch.from_numpy(dyn["x"])
    alone, again = module(x), module(x)
    np.testing.assert_array_equal(alone.numpy(), again.numpy())
    other = torch.from_numpy(np.random.default_rng(1).permutation(dyn["x"].ravel()).reshape(dyn["x"].shape))
    batch = module(torch.cat([other, x, other]))
    n = x.shape[0]
    assert batch.shape[0] == 3 * n
    np.testing.assert_allclose(batch[n:2 * n].numpy(), alone.numpy(), rtol=1e-6, atol=1e-6)
