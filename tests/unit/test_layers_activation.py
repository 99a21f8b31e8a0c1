"""activation (every ActivationParams kind), clip, clampedReLU, gelu, unary and the element-wise math layers.

ND cases use Core ML shapes with no implicit batch axis (e.g. (7,), (2, 5), (3, 2, 4)); PReLU and
parametric softplus take their per-channel parameters on axis -3.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.nn.functional as F

from tests.unit.test_layers_base import Case, case_test, rand

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
CHANNEL_KINDS = ("PRELU", "PARAMETRICSOFTPLUS")  # need rank >= 3 (C on axis -3)
ELEMENTWISE_KINDS = tuple(k for k in ACTIVATIONS if k not in CHANNEL_KINDS)


def _activation(kind, b):
    b.add_activation("act", kind, "x", "out", params=ACTIVATIONS[kind][0])


def _activations(kinds, b):
    for k in kinds:
        b.add_activation(k, k, "x", k, params=ACTIVATIONS[k][0])


def _activations_ref(kinds, x):
    return [ACTIVATIONS[k][1](x).astype(np.float32) for k in kinds]


CASES = [Case(f"act_activation_{kind}", functools.partial(_activation, kind), {"x": X}, ACTIVATIONS[kind][1])
         for kind in ACTIVATIONS]
# ND: the element-wise kinds at ranks 1, 2 and 4; the per-channel kinds at ranks 3 and 4 (C = 3 on axis -3)
CASES += [
    Case(f"act_activation_nd_{'x'.join(map(str, shape))}", functools.partial(_activations, kinds),
         {"x": rand(*shape, seed=10, low=-3, high=3)}, functools.partial(_activations_ref, kinds), outputs=kinds,
         nd=True)
    for shape, kinds in (((7,), ELEMENTWISE_KINDS), ((2, 5), ELEMENTWISE_KINDS),
                         ((2, 3, 2, 2), tuple(ACTIVATIONS)), ((3, 4, 2), CHANNEL_KINDS))
]


# -- clip, clampedReLU, gelu ------------------------------------------------------------------------


def _clip_gelu(b):
    b.add_clip("clip", "x", "c", min_value=-0.5, max_value=1.0)
    b.add_clamped_relu("crelu", "x", "r", alpha=0.1, beta=2.0)
    for i, mode in enumerate(("EXACT", "TANH_APPROXIMATION", "SIGMOID_APPROXIMATION")):
        b.add_gelu(f"gelu{i}", "x", f"g{i}", mode=mode)


def _clip_gelu_ref(x):
    t = torch.from_numpy(x)
    return (np.clip(x, -0.5, 1.0), np.minimum(np.where(x >= 0, x, 0.1 * x), 2.0),
            F.gelu(t).numpy(), F.gelu(t, approximate="tanh").numpy(), (t * torch.sigmoid(1.702 * t)).numpy())


CASES += [
    Case(f"act_clip_clamped_relu_gelu_{'x'.join(map(str, shape))}", _clip_gelu,
         {"x": rand(*shape, seed=2, low=-4, high=4)}, _clip_gelu_ref, outputs=("c", "r", "g0", "g1", "g2"), nd=True)
    for shape in ((2, 5), (7,), (3, 2, 4))
]


# -- unary -------------------------------------------------------------------------------------------

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


def _unary(op, b):
    b.add_unary("u", "x", "out", op, **UNARY[op][0])


def _unaries(b):
    for op, (kw, _) in UNARY.items():
        b.add_unary(op, "x", op, op, **kw)


def _unaries_ref(x):
    return [ref(x).astype(np.float32) for _, ref in UNARY.values()]


CASES += [Case(f"act_unary_{op}", functools.partial(_unary, op), {"x": rand(3, 2, 2, seed=4, low=0.2, high=3.0)},
               UNARY[op][1], batch=1, atol=1e-4) for op in UNARY]
CASES += [
    Case(f"act_unary_nd_{'x'.join(map(str, shape))}", _unaries, {"x": rand(*shape, seed=4, low=0.2, high=3.0)},
         _unaries_ref, outputs=tuple(UNARY), nd=True, atol=1e-4)
    for shape in ((6,), (2, 3), (2, 3, 2, 2))
]


# -- element-wise math -------------------------------------------------------------------------------

MATH = {
    "ceil": np.ceil, "floor": np.floor, "sign": np.sign, "exp2": np.exp2, "sin": np.sin, "cos": np.cos,
    "tan": np.tan, "asin": np.arcsin, "acos": np.arccos, "atan": np.arctan, "sinh": np.sinh, "cosh": np.cosh,
    "tanh": np.tanh, "asinh": np.arcsinh, "atanh": np.arctanh, "erf": np.vectorize(math.erf),
}


def _math(b):
    for name in MATH:
        getattr(b, f"add_{name}")(name, "x", name)
    b.add_acosh("acosh", "y", "acosh")


def _math_ref(x, y):
    return [MATH[n](x).astype(np.float32) for n in MATH] + [np.arccosh(y)]


CASES += [
    Case("act_elementwise_math", _math, {"x": rand(1, 6, seed=5, low=-0.9, high=0.9),
                                         "y": rand(1, 6, seed=6, low=1.1, high=3)},
         _math_ref, outputs=(*MATH, "acosh"), nd=True, batch=1, atol=1e-5),
]
CASES += [
    Case(f"act_elementwise_math_nd_{'x'.join(map(str, shape))}", _math,
         {"x": rand(*shape, seed=5, low=-0.9, high=0.9), "y": rand(*shape, seed=6, low=1.1, high=3)},
         _math_ref, outputs=(*MATH, "acosh"), nd=True, atol=1e-5)
    for shape in ((6,), (3, 2, 2))
]
# round: continuous random inputs never sit on a .5 tie, where rounding conventions differ
CASES += [
    Case(f"act_round_nd_{'x'.join(map(str, shape))}", lambda b: b.add_round("round", "x", "out"),
         {"x": rand(*shape, seed=8, low=-3, high=3)}, np.round, nd=True)
    for shape in ((7,), (2, 3, 2))
]


# -- comparisons, logical, where ---------------------------------------------------------------------

COMPARE = {"equal": np.equal, "not_equal": np.not_equal, "less_than": np.less, "less_equal": np.less_equal,
           "greater_than": np.greater, "greater_equal": np.greater_equal}
COMPARE_OUTPUTS = (*COMPARE, "gt_alpha", "AND", "OR", "XOR", "NOT", "where")


def _compare(b):
    for n in ("equal", "not_equal", "less_than", "greater_than"):
        getattr(b, f"add_{n}")(n, ["a", "b"], n)
    b.add_less_than("less_equal", ["a", "b"], "less_equal", use_less_than_equal=True)
    b.add_greater_than("greater_equal", ["a", "b"], "greater_equal", use_greater_than_equal=True)
    b.add_greater_than("gt_alpha", ["a"], "gt_alpha", alpha=0.0)
    for mode in ("AND", "OR", "XOR"):
        b.add_logical(mode, ["a", "b"], mode, mode)
    b.add_logical("NOT", ["a"], "NOT", "NOT")
    b.add_where_broadcastable("where", ["gt_alpha", "a", "b"], "where")


def _compare_ref(a, b):
    f = np.float32
    return ([op(a, b).astype(f) for op in COMPARE.values()] + [(a > 0).astype(f)]
            + [np.logical_and(a, b).astype(f), np.logical_or(a, b).astype(f), np.logical_xor(a, b).astype(f),
               np.logical_not(a).astype(f), np.where(a > 0, a, b)])


def _where_ranks(b):
    b.add_where_broadcastable("w1", ["c", "x", "y"], "w1")  # (3,) ? (2, 3) : (2, 1, 1) -> (2, 2, 3)
    b.add_where_broadcastable("w2", ["m", "y", "x"], "w2")  # (2, 2, 1) ? (2, 1, 1) : (2, 3) -> (2, 2, 3)


def _where_ranks_ref(c, x, y, m):
    return np.where(c != 0, x, y), np.where(m != 0, y, x)


_INTS = np.array([[-1, 0, 2], [3, 0, -2]], np.float32)
CASES += [
    Case("act_comparisons_logical_where", _compare, {"a": np.array([[-1, 0, 2, 3, 0]], np.float32),
                                                     "b": np.array([[1, 0, 2, -3, 5]], np.float32)},
         _compare_ref, outputs=COMPARE_OUTPUTS, nd=True, batch=1),
    Case("act_comparisons_logical_where_rank1", _compare, {"a": np.array([-1, 0, 2, 3, 0], np.float32),
                                                           "b": np.array([1, 0, 2, -3, 5], np.float32)},
         _compare_ref, outputs=COMPARE_OUTPUTS, nd=True),
    # broadcasting: (2, 5) against (5,) and (5,) against (2, 5)
    Case("act_comparisons_logical_where_2x5_5", _compare,
         {"a": np.array([[-1, 0, 2, 3, 0], [1, 1, 0, -2, 2]], np.float32),
          "b": np.array([1, 0, 2, -3, 5], np.float32)},
         _compare_ref, outputs=COMPARE_OUTPUTS, nd=True),
    Case("act_comparisons_logical_where_5_2x5", _compare,
         {"a": np.array([1, 0, 2, -3, 5], np.float32),
          "b": np.array([[-1, 0, 2, 3, 0], [1, 1, 0, -2, 2]], np.float32)},
         _compare_ref, outputs=COMPARE_OUTPUTS, nd=True),
    Case("act_where_broadcast_ranks", _where_ranks,
         {"c": np.array([1, 0, 1], np.float32), "x": _INTS, "y": rand(2, 1, 1, seed=7),
          "m": np.array([[[1], [0]], [[0], [1]]], np.float32)},
         _where_ranks_ref, outputs=("w1", "w2"), nd=True),
]

test_cases = case_test(CASES)

REFERENCE = "numpy formulas of each activation as NeuralNetwork.proto writes them"
