"""Element-wise binary layers, scale/bias, normalization, softmax and reductions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests.unit.test_layers_base import EXECUTORS, check_layer, rand

X = rand(3, 2, 4, seed=21)


@pytest.mark.parametrize("executor", EXECUTORS)
def test_legacy_elementwise(tmp_path, executor):
    def add(b):
        b.add_elementwise("add", ["x", "y"], "add", "ADD")
        b.add_elementwise("add1", ["x"], "add1", "ADD", alpha=2.5)
        b.add_elementwise("mul", ["x", "c"], "mul", "MULTIPLY")
        b.add_elementwise("mul1", ["x"], "mul1", "MULTIPLY", alpha=-3.0)
        b.add_elementwise("ave", ["x", "y", "x"], "ave", "AVE")
        b.add_elementwise("max", ["x", "y"], "max", "MAX")
        b.add_elementwise("min", ["x", "y"], "min", "MIN")
        b.add_elementwise("dot", ["v", "w"], "dot", "DOT")
        b.add_elementwise("cos", ["v", "w"], "cos", "COS")

    def ref(x, y, c, v, w):
        vv, ww = v.ravel(), w.ravel()
        return (x + y, x + 2.5, x * c, -3 * x, (2 * x + y) / 3, np.maximum(x, y), np.minimum(x, y),
                np.array([[[vv @ ww]]]), np.array([[[vv @ ww / np.linalg.norm(vv) / np.linalg.norm(ww)]]]))

    check_layer(tmp_path, executor, add, {"x": X, "y": rand(3, 2, 4, seed=22), "c": rand(3, 1, 1, seed=23),
                                          "v": rand(5, seed=24), "w": rand(5, seed=25)}, ref,
                outputs=("add", "add1", "mul", "mul1", "ave", "max", "min", "dot", "cos"))


@pytest.mark.parametrize("executor", EXECUTORS)
def test_broadcastable_elementwise(tmp_path, executor):
    names = ("add", "subtract", "multiply", "divide", "max", "min", "pow", "mod", "floor_div")
    fns = (np.add, np.subtract, np.multiply, np.divide, np.maximum, np.minimum, np.power, np.mod,
           lambda a, b: np.floor(a / b))

    def add(b):
        for n in names:
            getattr(b, f"add_{n}_broadcastable")(n, ["a", "b"], n)

    check_layer(tmp_path, executor, add, {"a": rand(1, 3, 4, seed=26, low=0.5, high=3), "b": rand(1, 1, 4, seed=27,
                                                                                                   low=0.5, high=2)},
                lambda a, b: tuple(f(a, b).astype(np.float32) for f in fns), outputs=names, nd=True, atol=1e-4)


@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize("shape", [[1], [3], [1, 2, 4], [3, 2, 4]])
def test_scale_and_bias_shapes(tmp_path, executor, shape):
    w = rand(*shape, seed=28)
    bias = rand(*shape, seed=29)

    def add(b):
        b.add_scale("scale", w, bias, True, "x", "s", shape_scale=shape, shape_bias=shape)
        b.add_bias("bias", bias, "x", "b", shape_bias=shape)

    bc = bias.reshape(-1, 1, 1) if len(shape) == 1 else bias
    wc = w.reshape(-1, 1, 1) if len(shape) == 1 else w
    check_layer(tmp_path, executor, add, {"x": X}, lambda x: (x * wc + bc, x + bc), outputs=("s", "b"))


@pytest.mark.parametrize("executor", EXECUTORS)
def test_normalization_layers(tmp_path, executor):
    c = 3
    gamma, beta = rand(c, seed=30, low=0.5, high=1.5), rand(c, seed=31)
    mean, var = rand(c, seed=32), rand(c, seed=33, low=0.5, high=2)

    def add(b):
        b.add_batchnorm("bn", c, gamma, beta, mean, var, "x", "bn", epsilon=1e-3)
        b.add_batchnorm("in", c, gamma, beta, None, None, "x", "in", compute_mean_var=True,
                        instance_normalization=True, epsilon=1e-5)
        b.add_mvn("mvn", "x", "mvn", across_channels=True, normalize_variance=True, epsilon=1e-5)
        b.add_mvn("mvn_c", "x", "mvn_c", across_channels=False, normalize_variance=False)
        b.add_l2_normalize("l2", "x", "l2", epsilon=1e-6)
        b.add_lrn("lrn", "x", "lrn", alpha=0.3, beta=0.75, local_size=3, k=2.0)
        b.add_softmax("sm", "x", "sm")

    def ref(x):
        t = torch.from_numpy(x)[None]
        g, bt = torch.from_numpy(gamma), torch.from_numpy(beta)
        flat = x - x.mean()
        return (F.batch_norm(t, torch.from_numpy(mean), torch.from_numpy(var), g, bt, eps=1e-3)[0].numpy(),
                F.instance_norm(t, weight=g, bias=bt, eps=1e-5)[0].numpy(),
                flat / np.sqrt((flat ** 2).mean() + 1e-5),
                x - x.mean(axis=(1, 2), keepdims=True),
                x / np.sqrt((x ** 2).sum() + 1e-6),
                F.local_response_norm(t, 3, 0.3, 0.75, 2.0)[0].numpy(),
                torch.softmax(t, 1)[0].numpy())

    check_layer(tmp_path, executor, add, {"x": X}, ref, outputs=("bn", "in", "mvn", "mvn_c", "l2", "lrn", "sm"),
                atol=1e-4)


@pytest.mark.parametrize("executor", EXECUTORS)
def test_nd_normalization_and_softmax(tmp_path, executor):
    gamma, beta = rand(2, 4, seed=34), rand(2, 4, seed=35)

    def add(b):
        b.add_layer_normalization("ln", "x", "ln", [2, 4], gamma, beta, eps=1e-5)
        b.add_softmax_nd("smnd", "x", "smnd", axis=-2)

    def ref(x):
        t = torch.from_numpy(x)
        return (F.layer_norm(t, (2, 4), torch.from_numpy(gamma), torch.from_numpy(beta), 1e-5).numpy(),
                torch.softmax(t, -2).numpy())

    check_layer(tmp_path, executor, add, {"x": rand(1, 3, 2, 4, seed=36)}, ref, outputs=("ln", "smnd"), nd=True,
                batch=3, atol=1e-5)


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


@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize("axis", list(AXES))
def test_legacy_reduce(tmp_path, executor, axis):
    modes = list(LEGACY_REDUCE) + (["argmax"] if len(AXES[axis]) == 1 else [])

    def add(b):
        for m in modes:
            b.add_reduce(m, "x", m, axis, m, epsilon=1e-6)

    def ref(x):
        a = AXES[axis]
        out = [LEGACY_REDUCE[m](x, a).astype(np.float32) for m in LEGACY_REDUCE]
        if "argmax" in modes:
            out.append(np.expand_dims(x.argmax(axis=a[0]), a[0]).astype(np.float32))
        return out

    check_layer(tmp_path, executor, add, {"x": rand(3, 2, 4, seed=37, low=0.5, high=1.5)}, ref, outputs=modes,
                atol=1e-5)


ND_REDUCE = {
    "sum": np.sum, "mean": np.mean, "max": np.max, "min": np.min, "prod": np.prod,
    "l1": lambda x, axis, keepdims: np.abs(x).sum(axis=axis, keepdims=keepdims),
    "l2": lambda x, axis, keepdims: np.sqrt((x ** 2).sum(axis=axis, keepdims=keepdims)),
    "sumsquare": lambda x, axis, keepdims: (x ** 2).sum(axis=axis, keepdims=keepdims),
    "logsum": lambda x, axis, keepdims: np.log(x.sum(axis=axis, keepdims=keepdims)),
    "logsumexp": lambda x, axis, keepdims: np.log(np.exp(x).sum(axis=axis, keepdims=keepdims)),
}


@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize("axes,keep,reduce_all", [([-1], True, False), ([1, 3], False, False), (None, True, True)])
def test_nd_reduce(tmp_path, executor, axes, keep, reduce_all):
    def add(b):
        for n in ND_REDUCE:
            getattr(b, f"add_reduce_{n}")(n, "x", n, axes=axes, keepdims=keep, reduce_all=reduce_all)
        b.add_argmax("argmax", "x", "argmax", axis=2, keepdims=True)
        b.add_argmin("argmin", "x", "argmin", axis=-1, keepdims=False)
        b.add_topk("topk", ["x"], ["tv", "ti"], k=2, axis=-1, use_bottom_k=False)

    def ref(x):
        ax = (1, 2, 3) if reduce_all else tuple(a % 4 for a in axes)
        out = [np.asarray(f(x, axis=ax, keepdims=keep), np.float32) for f in ND_REDUCE.values()]
        order = np.argsort(-x, axis=-1)[..., :2]
        return out + [x.argmax(axis=2)[:, :, None].astype(np.float32), x.argmin(axis=-1).astype(np.float32),
                      np.take_along_axis(x, order, -1), order.astype(np.float32)]

    check_layer(tmp_path, executor, add, {"x": rand(1, 2, 3, 4, seed=38, low=0.5, high=1.5)}, ref,
                outputs=(*ND_REDUCE, "argmax", "argmin", "tv", "ti"), nd=True, batch=3, atol=1e-5)
