"""activation (every ActivationParams kind), clip, clampedReLU, gelu, unary and the element-wise math layers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests.unit.test_layers_base import EXECUTORS, check_layer, rand

X = rand(3, 2, 4, seed=1, low=-3, high=3)
ALPHA_C = np.array([0.1, 0.2, 0.3], np.float32)
BETA_C = np.array([1.5, 0.5, 2.0], np.float32)


def _t(fn):
    return lambda x: fn(torch.from_numpy(x)).numpy()


ACTIVATIONS = {
    "RELU": (None, _t(F.relu)),
    "SIGMOID": (None, _t(torch.sigmoid)),
    "TANH": (None, _t(torch.tanh)),
    "SCALED_TANH": ([1.7, 0.6], lambda x: 1.7 * np.tanh(0.6 * x)),
    "SIGMOID_HARD": ([0.2, 0.5], lambda x: np.clip(0.2 * x + 0.5, 0, 1)),
    "LINEAR": ([2.0, -1.0], lambda x: 2 * x - 1),
    "LEAKYRELU": ([0.3], lambda x: np.where(x >= 0, x, 0.3 * x)),
    "PRELU": (ALPHA_C, lambda x: np.where(x >= 0, x, ALPHA_C[:, None, None] * x)),
    "ELU": (0.7, lambda x: np.where(x >= 0, x, 0.7 * (np.exp(x) - 1))),
    "THRESHOLDEDRELU": (0.5, lambda x: np.where(x >= 0.5, x, 0)),
    "SOFTSIGN": (None, lambda x: x / (1 + np.abs(x))),
    "SOFTPLUS": (None, _t(F.softplus)),
    "PARAMETRICSOFTPLUS": ([ALPHA_C, BETA_C],
                           lambda x: ALPHA_C[:, None, None] * np.log1p(np.exp(BETA_C[:, None, None] * x))),
}


@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize("kind", list(ACTIVATIONS))
def test_activation(tmp_path, executor, kind):
    params, ref = ACTIVATIONS[kind]
    check_layer(tmp_path, executor, lambda b: b.add_activation("act", kind, "x", "out", params=params),
                {"x": X}, ref)


@pytest.mark.parametrize("executor", EXECUTORS)
def test_clip_clamped_relu_and_gelu(tmp_path, executor):
    def add(b):
        b.add_clip("clip", "x", "c", min_value=-0.5, max_value=1.0)
        b.add_clamped_relu("crelu", "x", "r", alpha=0.1, beta=2.0)
        for i, mode in enumerate(("EXACT", "TANH_APPROXIMATION", "SIGMOID_APPROXIMATION")):
            b.add_gelu(f"gelu{i}", "x", f"g{i}", mode=mode)

    def ref(x):
        t = torch.from_numpy(x)
        return (np.clip(x, -0.5, 1.0), np.minimum(np.where(x >= 0, x, 0.1 * x), 2.0),
                F.gelu(t).numpy(), F.gelu(t, approximate="tanh").numpy(), (t * torch.sigmoid(1.702 * t)).numpy())

    check_layer(tmp_path, executor, add, {"x": rand(2, 5, seed=2, low=-4, high=4)}, ref,
                outputs=("c", "r", "g0", "g1", "g2"), nd=True)


UNARY = {
    "sqrt": (dict(), lambda x: np.sqrt(x)),
    "rsqrt": (dict(epsilon=1e-3), lambda x: 1 / np.sqrt(x + 1e-3)),
    "inverse": (dict(epsilon=1e-5), lambda x: 1 / (x + 1e-5)),
    "power": (dict(alpha=2.5), lambda x: x ** 2.5),
    "exp": (dict(scale=0.5, shift=-1.0), lambda x: np.exp(0.5 * x - 1)),
    "log": (dict(shift=1.0), lambda x: np.log(x + 1)),
    "abs": (dict(shift=-1.5), lambda x: np.abs(x - 1.5)),
    "threshold": (dict(alpha=1.2, scale=2.0), lambda x: np.maximum(2 * x, 1.2)),
}


@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize("op", list(UNARY))
def test_unary(tmp_path, executor, op):
    kw, ref = UNARY[op]
    x = rand(3, 2, 2, seed=4, low=0.2, high=3.0)
    check_layer(tmp_path, executor, lambda b: b.add_unary("u", "x", "out", op, **kw), {"x": x}, ref, batch=1,
                atol=1e-4)


MATH = {
    "ceil": np.ceil, "floor": np.floor, "sign": np.sign, "exp2": np.exp2, "sin": np.sin, "cos": np.cos,
    "tan": np.tan, "asin": np.arcsin, "acos": np.arccos, "atan": np.arctan, "sinh": np.sinh, "cosh": np.cosh,
    "tanh": np.tanh, "asinh": np.arcsinh, "atanh": np.arctanh, "erf": np.vectorize(math.erf),
}


@pytest.mark.parametrize("executor", EXECUTORS)
def test_elementwise_math(tmp_path, executor):
    def add(b):
        for name in MATH:
            getattr(b, f"add_{name}")(name, "x", name)
        b.add_acosh("acosh", "y", "acosh")

    def ref(x, y):
        return [MATH[n](x).astype(np.float32) for n in MATH] + [np.arccosh(y)]

    check_layer(tmp_path, executor, add, {"x": rand(1, 6, seed=5, low=-0.9, high=0.9),
                                          "y": rand(1, 6, seed=6, low=1.1, high=3)},
                ref, outputs=(*MATH, "acosh"), nd=True, batch=1, atol=1e-5)


@pytest.mark.parametrize("executor", EXECUTORS)
def test_comparisons_logical_and_where(tmp_path, executor):
    ops = {"equal": np.equal, "not_equal": np.not_equal, "less_than": np.less, "less_equal": np.less_equal,
           "greater_than": np.greater, "greater_equal": np.greater_equal}

    def add(b):
        for n in ("equal", "not_equal", "less_than", "greater_than"):
            getattr(b, f"add_{n}")(n, ["a", "b"], n)
        b.add_less_than("less_equal", ["a", "b"], "less_equal", use_less_than_equal=True)
        b.add_greater_than("greater_equal", ["a", "b"], "greater_equal", use_greater_than_equal=True)
        b.add_greater_than("gt_alpha", ["a"], "gt_alpha", alpha=0.0)
        for mode in ("AND", "OR", "XOR"):
            b.add_logical(mode, ["a", "b"], mode, mode)
        b.add_logical("NOT", ["a"], "NOT", "NOT")
        b.add_where_broadcastable("where", ["gt_alpha", "a", "b"], "where")

    def ref(a, b):
        f = np.float32
        return ([op(a, b).astype(f) for op in ops.values()] + [(a > 0).astype(f)]
                + [np.logical_and(a, b).astype(f), np.logical_or(a, b).astype(f), np.logical_xor(a, b).astype(f),
                   np.logical_not(a).astype(f), np.where(a > 0, a, b)])

    a = np.array([[-1, 0, 2, 3, 0]], np.float32)
    bb = np.array([[1, 0, 2, -3, 5]], np.float32)
    check_layer(tmp_path, executor, add, {"a": a, "b": bb}, ref,
                outputs=(*ops, "gt_alpha", "AND", "OR", "XOR", "NOT", "where"), nd=True, batch=1)
