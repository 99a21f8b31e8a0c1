"""Element-wise binary layers, scale/bias, normalization, softmax and reductions.

ND cases use Core ML shapes with no implicit batch axis (e.g. (3,), (2, 3), (4, 1, 3)): broadcasting
aligns trailing axes, reductions over every axis give (1,) (no rank-0 results), legacy layers in an
ND network treat the axes before -3 as batch axes.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

from tests.unit.test_layers_base import Case, case_test, rand

X = rand(3, 2, 4, seed=21)
X4 = rand(2, 3, 2, 4, seed=40)  # an ND rank-4 input: Core ML batch 2 before [C, H, W]


def per_lead(ref, keep: int = 3):
    """A reference for one [C, H, W] block applied to every block of the axes before -keep."""

    def apply(*arrays):
        lead = arrays[0].shape[:-keep]
        outs = [ref(*(a[i] for a in arrays)) for i in np.ndindex(*lead)]
        outs = [[o] if isinstance(o, np.ndarray) else list(o) for o in outs]
        return [np.stack([o[k] for o in outs]).reshape(lead + outs[0][k].shape) for k in range(len(outs[0]))]

    return apply


# -- legacy element-wise ----------------------------------------------------------------------------


def _legacy_elementwise(b):
    b.add_elementwise("add", ["x", "y"], "add", "ADD")
    b.add_elementwise("add1", ["x"], "add1", "ADD", alpha=2.5)
    b.add_elementwise("mul", ["x", "c"], "mul", "MULTIPLY")
    b.add_elementwise("mul1", ["x"], "mul1", "MULTIPLY", alpha=-3.0)
    b.add_elementwise("ave", ["x", "y", "x"], "ave", "AVE")
    b.add_elementwise("max", ["x", "y"], "max", "MAX")
    b.add_elementwise("min", ["x", "y"], "min", "MIN")
    b.add_elementwise("dot", ["v", "w"], "dot", "DOT")
    b.add_elementwise("cos", ["v", "w"], "cos", "COS")


def _legacy_elementwise_ref(x, y, c, v, w):
    vv, ww = v.ravel(), w.ravel()
    return (x + y, x + 2.5, x * c, -3 * x, (2 * x + y) / 3, np.maximum(x, y), np.minimum(x, y),
            np.array([[[vv @ ww]]]), np.array([[[vv @ ww / np.linalg.norm(vv) / np.linalg.norm(ww)]]]))


def _legacy_elementwise_nd(b):  # the same kinds in an ND network, rank 4 and rank 2
    b.add_elementwise("add", ["x", "y"], "add", "ADD")
    b.add_elementwise("mul", ["x", "c"], "mul", "MULTIPLY")
    b.add_elementwise("ave", ["x", "y"], "ave", "AVE")
    b.add_elementwise("max", ["x", "y"], "max", "MAX")
    b.add_elementwise("min", ["x", "y"], "min", "MIN")
    b.add_elementwise("add2", ["p", "q"], "add2", "ADD")
    b.add_elementwise("mul2", ["p"], "mul2", "MULTIPLY", alpha=0.5)
    b.add_elementwise("dot", ["v", "w"], "dot", "DOT")
    b.add_elementwise("cos", ["v", "w"], "cos", "COS")


def _legacy_elementwise_nd_ref(x, y, c, p, q, v, w):
    vw = (v * w).sum(axis=(1, 2, 3), keepdims=True)
    norms = np.sqrt((v ** 2).sum(axis=(1, 2, 3), keepdims=True) * (w ** 2).sum(axis=(1, 2, 3), keepdims=True))
    return (x + y, x * c, (x + y) / 2, np.maximum(x, y), np.minimum(x, y), p + q, 0.5 * p, vw, vw / norms)


CASES = [
    Case("math_legacy_elementwise", _legacy_elementwise,
         {"x": X, "y": rand(3, 2, 4, seed=22), "c": rand(3, 1, 1, seed=23), "v": rand(5, seed=24),
          "w": rand(5, seed=25)},
         _legacy_elementwise_ref, outputs=("add", "add1", "mul", "mul1", "ave", "max", "min", "dot", "cos")),
    Case("math_legacy_elementwise_in_nd", _legacy_elementwise_nd,
         {"x": X4, "y": rand(2, 3, 2, 4, seed=41), "c": rand(2, 3, 1, 1, seed=42), "p": rand(3, 5, seed=43),
          "q": rand(3, 5, seed=44), "v": rand(2, 5, 1, 1, seed=45), "w": rand(2, 5, 1, 1, seed=46)},
         _legacy_elementwise_nd_ref, outputs=("add", "mul", "ave", "max", "min", "add2", "mul2", "dot", "cos"),
         nd=True),
]


# -- broadcastable binary ops -----------------------------------------------------------------------

BROADCASTABLE = ("add", "subtract", "multiply", "divide", "max", "min", "pow", "mod", "floor_div")
BROADCAST_FNS = (np.add, np.subtract, np.multiply, np.divide, np.maximum, np.minimum, np.power, np.mod,
                 lambda a, b: np.floor(a / b))


def _broadcastable(b):
    for n in BROADCASTABLE:
        getattr(b, f"add_{n}_broadcastable")(n, ["a", "b"], n)


def _broadcastable_ref(a, b):
    return tuple(f(a, b).astype(np.float32) for f in BROADCAST_FNS)


# (a shape, b shape): trailing axes line up; the result has the larger rank
BROADCAST_SHAPES = {
    "1x3x4_1x1x4": ((1, 3, 4), (1, 1, 4)),
    "2x3_3": ((2, 3), (3,)),
    "3_2x3": ((3,), (2, 3)),
    "4x1x3_2x1": ((4, 1, 3), (2, 1)),
    "5_1": ((5,), (1,)),
    "2x1x3x1_4x1x5": ((2, 1, 3, 1), (4, 1, 5)),
}

CASES += [
    Case(f"math_broadcastable_{sid}", _broadcastable,
         {"a": rand(*sa, seed=26, low=0.5, high=3), "b": rand(*sb, seed=27, low=0.5, high=2)},
         _broadcastable_ref, outputs=BROADCASTABLE, nd=True, atol=1e-4)
    for sid, (sa, sb) in BROADCAST_SHAPES.items()
]


# -- scale and bias (legacy: rank >= 3, the axes before -3 are batch) ---------------------------------


def _scale_bias(shape, b):
    w, bias = rand(*shape, seed=28), rand(*shape, seed=29)
    b.add_scale("scale", w, bias, True, "x", "s", shape_scale=shape, shape_bias=shape)
    b.add_bias("bias", bias, "x", "b", shape_bias=shape)


def _scale_bias_ref(shape, x):
    w, bias = rand(*shape, seed=28), rand(*shape, seed=29)
    bc = bias.reshape(-1, 1, 1) if len(shape) == 1 else bias
    wc = w.reshape(-1, 1, 1) if len(shape) == 1 else w
    return x * wc + bc, x + bc


SCALE_SHAPES = ([1], [3], [1, 2, 4], [3, 2, 4])

CASES += [
    Case(f"math_scale_bias_{'x'.join(map(str, s))}", functools.partial(_scale_bias, s), {"x": X},
         functools.partial(_scale_bias_ref, s), outputs=("s", "b"))
    for s in SCALE_SHAPES
]
CASES += [
    Case(f"math_scale_bias_nd_rank4_{'x'.join(map(str, s))}", functools.partial(_scale_bias, s), {"x": X4},
         functools.partial(_scale_bias_ref, s), outputs=("s", "b"), nd=True)
    for s in ([3], [3, 2, 4])
]


# -- normalization ----------------------------------------------------------------------------------

_C = 3
GAMMA, BETA = rand(_C, seed=30, low=0.5, high=1.5), rand(_C, seed=31)
MEAN, VAR = rand(_C, seed=32), rand(_C, seed=33, low=0.5, high=2)


def _normalization(b):
    b.add_batchnorm("bn", _C, GAMMA, BETA, MEAN, VAR, "x", "bn", epsilon=1e-3)
    b.add_batchnorm("in", _C, GAMMA, BETA, None, None, "x", "in", compute_mean_var=True,
                    instance_normalization=True, epsilon=1e-5)
    b.add_mvn("mvn", "x", "mvn", across_channels=True, normalize_variance=True, epsilon=1e-5)
    b.add_mvn("mvn_c", "x", "mvn_c", across_channels=False, normalize_variance=False)
    b.add_l2_normalize("l2", "x", "l2", epsilon=1e-6)
    b.add_lrn("lrn", "x", "lrn", alpha=0.3, beta=0.75, local_size=3, k=2.0)
    b.add_softmax("sm", "x", "sm")


def _normalization_ref(x):
    t = torch.from_numpy(x)[None]
    g, bt = torch.from_numpy(GAMMA), torch.from_numpy(BETA)
    flat = x - x.mean()
    return (F.batch_norm(t, torch.from_numpy(MEAN), torch.from_numpy(VAR), g, bt, eps=1e-3)[0].numpy(),
            F.instance_norm(t, weight=g, bias=bt, eps=1e-5)[0].numpy(),
            flat / np.sqrt((flat ** 2).mean() + 1e-5),
            x - x.mean(axis=(1, 2), keepdims=True),
            x / np.sqrt((x ** 2).sum() + 1e-6),
            F.local_response_norm(t, 3, 0.3, 0.75, 2.0)[0].numpy(),
            torch.softmax(t, 1)[0].numpy())


_NORM_OUTPUTS = ("bn", "in", "mvn", "mvn_c", "l2", "lrn", "sm")
_LN_GAMMA, _LN_BETA = rand(2, 4, seed=34), rand(2, 4, seed=35)
_LN1_GAMMA, _LN1_BETA = rand(4, seed=47), rand(4, seed=48)


def _nd_normalization(b):
    b.add_layer_normalization("ln", "x", "ln", [2, 4], _LN_GAMMA, _LN_BETA, eps=1e-5)
    b.add_softmax_nd("smnd", "x", "smnd", axis=-2)


def _nd_normalization_ref(x):
    t = torch.from_numpy(x)
    return (F.layer_norm(t, (2, 4), torch.from_numpy(_LN_GAMMA), torch.from_numpy(_LN_BETA), 1e-5).numpy(),
            torch.softmax(t, -2).numpy())


def _softmax_nd(b):
    for name, src, axis in (("m0", "m", 0), ("m1", "m", -1), ("mm", "m", 1), ("v0", "v", 0), ("v1", "v", -1),
                            ("x0", "x", 0), ("x1", "x", -1)):
        b.add_softmax_nd(name, src, name, axis=axis)
    b.add_layer_normalization("ln", "m", "ln", [4], _LN1_GAMMA, _LN1_BETA, eps=1e-5)


def _softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _softmax_nd_ref(m, v, x):
    mu, var = m.mean(-1, keepdims=True), m.var(-1, keepdims=True)
    return (_softmax(m, 0), _softmax(m, -1), _softmax(m, 1), _softmax(v, 0), _softmax(v, -1), _softmax(x, 0),
            _softmax(x, -1), (m - mu) / np.sqrt(var + 1e-5) * _LN1_GAMMA + _LN1_BETA)


CASES += [
    Case("math_normalization_layers", _normalization, {"x": X}, _normalization_ref, outputs=_NORM_OUTPUTS, atol=1e-4),
    Case("math_normalization_layers_nd_rank4", _normalization, {"x": X4}, per_lead(_normalization_ref),
         outputs=_NORM_OUTPUTS, nd=True, atol=1e-4),
    Case("math_nd_normalization_and_softmax", _nd_normalization, {"x": rand(1, 3, 2, 4, seed=36)},
         _nd_normalization_ref, outputs=("ln", "smnd"), nd=True, batch=3, atol=1e-5),
    Case("math_softmaxND_layerNorm_ranks", _softmax_nd,
         {"m": rand(3, 4, seed=49), "v": rand(5, seed=50), "x": rand(4, 2, 3, seed=51)}, _softmax_nd_ref,
         outputs=("m0", "m1", "mm", "v0", "v1", "x0", "x1", "ln"), nd=True, atol=1e-5),
]


# -- legacy reduce -----------------------------------------------------------------------------------

LEGACY_REDUCE = {
    "sum": lambda x, a: x.sum(axis=a, keepdims=True), "avg": lambda x, a: x.mean(axis=a, keepdims=True),
    "prod": lambda x, a: x.prod(axis=a, keepdims=True),
    "logsum": lambda x, a: np.log(x + 1e-6).sum(axis=a, keepdims=True),
    "sumsquare": lambda x, a: (x ** 2).sum(axis=a, keepdims=True),
    "L1": lambda x, a: np.abs(x).sum(axis=a, keepdims=True),
    "L2": lambda x, a: np.sqrt((x ** 2).sum(axis=a, keepdims=True)),
    "max": lambda x, a: x.max(axis=a, keepdims=True), "min": lambda x, a: x.min(axis=a, keepdims=True),
}
AXES = {"CHW": (0, 1, 2), "HW": (1, 2), "C": (0,), "H": (1,), "W": (2,)}
NEG_AXES = {"CHW": (-3, -2, -1), "HW": (-2, -1), "C": (-3,), "H": (-2,), "W": (-1,)}


def _legacy_reduce_modes(axis):
    return list(LEGACY_REDUCE) + (["argmax"] if len(AXES[axis]) == 1 else [])


def _legacy_reduce(axis, b):
    for m in _legacy_reduce_modes(axis):
        b.add_reduce(m, "x", m, axis, m, epsilon=1e-6)


def _legacy_reduce_ref(axis, x):
    a = NEG_AXES[axis]  # the same axes as AXES on a rank-3 input
    out = [LEGACY_REDUCE[m](x, a).astype(np.float32) for m in LEGACY_REDUCE]
    if "argmax" in _legacy_reduce_modes(axis):
        out.append(np.expand_dims(x.argmax(axis=a[0]), a[0]).astype(np.float32))
    return out


CASES += [
    Case(f"math_legacy_reduce_{axis}", functools.partial(_legacy_reduce, axis),
         {"x": rand(3, 2, 4, seed=37, low=0.5, high=1.5)}, functools.partial(_legacy_reduce_ref, axis),
         outputs=_legacy_reduce_modes(axis), atol=1e-5)
    for axis in AXES
]
# the legacy reduce in an ND network acts on the trailing axes of any rank that has them
CASES += [
    Case(f"math_legacy_reduce_nd_{'x'.join(map(str, shape))}_{axis}", functools.partial(_legacy_reduce, axis),
         {"x": rand(*shape, seed=52, low=0.5, high=1.5)}, functools.partial(_legacy_reduce_ref, axis),
         outputs=_legacy_reduce_modes(axis), nd=True, atol=1e-5)
    for shape, axis in (((3, 4), "W"), ((3, 4), "HW"), ((3, 4), "H"), ((2, 3, 2, 2), "CHW"), ((2, 3, 2, 2), "C"))
]


# -- ND reduce, argMax/argMin, topK -----------------------------------------------------------------

ND_REDUCE = {
    "sum": np.sum, "mean": np.mean, "max": np.max, "min": np.min, "prod": np.prod,
    "l1": lambda x, axis, keepdims: np.abs(x).sum(axis=axis, keepdims=keepdims),
    "l2": lambda x, axis, keepdims: np.sqrt((x ** 2).sum(axis=axis, keepdims=keepdims)),
    "sumsquare": lambda x, axis, keepdims: (x ** 2).sum(axis=axis, keepdims=keepdims),
    "logsum": lambda x, axis, keepdims: np.log(x.sum(axis=axis, keepdims=keepdims)),
    "logsumexp": lambda x, axis, keepdims: np.log(np.exp(x).sum(axis=axis, keepdims=keepdims)),
}
ND_REDUCE_PARAMS = {"axes_m1_keep": ([-1], True, False), "axes_1_3": ([1, 3], False, False),
                    "all_keep": (None, True, True)}


def _nd_reduce(axes, keep, reduce_all, b):
    for n in ND_REDUCE:
        getattr(b, f"add_reduce_{n}")(n, "x", n, axes=axes, keepdims=keep, reduce_all=reduce_all)
    b.add_argmax("argmax", "x", "argmax", axis=2, keepdims=True)
    b.add_argmin("argmin", "x", "argmin", axis=-1, keepdims=False)
    b.add_topk("topk", ["x"], ["tv", "ti"], k=2, axis=-1, use_bottom_k=False)


def _nd_reduce_ref(axes, keep, reduce_all, x):
    ax = (1, 2, 3) if reduce_all else tuple(a % 4 for a in axes)
    out = [np.asarray(f(x, axis=ax, keepdims=keep), np.float32) for f in ND_REDUCE.values()]
    order = np.argsort(-x, axis=-1)[..., :2]
    return out + [x.argmax(axis=2)[:, :, None].astype(np.float32), x.argmin(axis=-1).astype(np.float32),
                  np.take_along_axis(x, order, -1), order.astype(np.float32)]


CASES += [
    Case(f"math_nd_reduce_{pid}", functools.partial(_nd_reduce, *p),
         {"x": rand(1, 2, 3, 4, seed=38, low=0.5, high=1.5)}, functools.partial(_nd_reduce_ref, *p),
         outputs=(*ND_REDUCE, "argmax", "argmin", "tv", "ti"), nd=True, batch=3, atol=1e-5)
    for pid, p in ND_REDUCE_PARAMS.items()
]


def _reduce_all_axes(keep, explicit, b):
    for n in ND_REDUCE:
        if explicit:
            getattr(b, f"add_reduce_{n}")(n, "x", n, axes=[0, -1], keepdims=keep, reduce_all=False)
        else:
            getattr(b, f"add_reduce_{n}")(n, "x", n, keepdims=keep, reduce_all=True)


def _reduce_all_axes_ref(keep, x):
    # Core ML has no rank-0 blobs: a full reduction without keepDims is shape (1,)
    out = [np.asarray(f(x, axis=(0, 1), keepdims=True), np.float32) for f in ND_REDUCE.values()]
    return out if keep else [o.reshape(1) for o in out]


CASES += [
    Case(f"math_nd_reduce_rank2_all_{'keep' if keep else 'nokeep'}{'_axes' if explicit else ''}",
         functools.partial(_reduce_all_axes, keep, explicit), {"x": rand(2, 5, seed=53, low=0.5, high=1.5)},
         functools.partial(_reduce_all_axes_ref, keep), outputs=tuple(ND_REDUCE), nd=True, atol=1e-5)
    for keep in (False, True) for explicit in (False, True)
]


def _reduce_ranks(b):
    b.add_reduce_sum("v_sum", "v", "v_sum", axes=[0], keepdims=False)
    b.add_reduce_max("v_max", "v", "v_max", axes=[-1], keepdims=True)
    b.add_reduce_mean("x_mean0", "x", "x_mean0", axes=[0], keepdims=False)
    b.add_reduce_prod("x_prod", "x", "x_prod", axes=[0, 2], keepdims=True)
    b.add_reduce_l2("x_l2", "x", "x_l2", axes=[-2], keepdims=False)
    b.add_reduce_logsumexp("x_lse", "x", "x_lse", reduce_all=True, keepdims=False)


def _reduce_ranks_ref(v, x):
    return (np.array([v.sum()], np.float32), v.max(keepdims=True), x.mean(0), x.prod(axis=(0, 2), keepdims=True),
            np.sqrt((x ** 2).sum(axis=-2)), np.log(np.exp(x).sum(keepdims=True)).reshape(1))


def _arg_topk(b):
    b.add_argmax("am_v", "v", "am_v", axis=0, keepdims=False)  # removeDim on rank 1 still gives (1,)
    b.add_argmax("am_vk", "v", "am_vk", axis=-1, keepdims=True)
    b.add_argmin("an_v", "v", "an_v", axis=0, keepdims=False)
    b.add_argmax("am_m0", "m", "am_m0", axis=0, keepdims=False)
    b.add_argmin("an_m0", "m", "an_m0", axis=0, keepdims=True)
    b.add_argmax("am_x", "x", "am_x", axis=1, keepdims=False)
    b.add_topk("tk_v", ["v"], ["tv_v", "ti_v"], k=3, axis=0, use_bottom_k=False)
    b.add_topk("tk_m", ["m"], ["tv_m", "ti_m"], k=2, axis=0, use_bottom_k=True)


def _arg_topk_ref(v, m, x):
    f = np.float32
    top_v = np.argsort(-v)[:3]
    bot_m = np.argsort(m, axis=0)[:2]
    return (np.array([v.argmax()], f), np.array([v.argmax()], f), np.array([v.argmin()], f), m.argmax(0).astype(f),
            m.argmin(0)[None].astype(f), x.argmax(1).astype(f), v[top_v], top_v.astype(f),
            np.take_along_axis(m, bot_m, 0), bot_m.astype(f))


CASES += [
    Case("math_nd_reduce_rank1_rank3", _reduce_ranks, {"v": rand(6, seed=54, low=0.5, high=1.5),
                                                       "x": rand(4, 2, 3, seed=55, low=0.5, high=1.5)},
         _reduce_ranks_ref, outputs=("v_sum", "v_max", "x_mean0", "x_prod", "x_l2", "x_lse"), nd=True, atol=1e-5),
    Case("math_argmax_argmin_topk_ranks", _arg_topk,
         {"v": rand(6, seed=56), "m": rand(4, 3, seed=57), "x": rand(2, 5, 3, seed=58)}, _arg_topk_ref,
         outputs=("am_v", "am_vk", "an_v", "am_m0", "an_m0", "am_x", "tv_v", "ti_v", "tv_m", "ti_m"), nd=True),
]

test_cases = case_test(CASES)

REFERENCE = "numpy element-wise functions, broadcasting and reductions"
