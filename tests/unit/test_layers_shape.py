"""flatten, flattenTo2D, reshape (legacy), reshapeStatic/Like, rankPreservingReshape, squeeze, expandDims,
permute, transpose, copy; and the tensor layers: concat/concatND, split/splitND, slice, sliceStatic,
sliceBySize, gather, gatherAlongAxis, stack, tile, reverse."""

from __future__ import annotations

import numpy as np
import pytest

from tests.unit.test_layers_base import EXECUTORS, check_layer, rand

X = rand(2, 3, 4, seed=11)


@pytest.mark.parametrize("executor", EXECUTORS)
def test_legacy_shape_layers(tmp_path, executor):
    def add(b):
        b.add_flatten("f0", 0, "x", "f0")
        b.add_flatten("f1", 1, "x", "f1")
        b.add_reshape("r0", "x", "r0", (4, 3, 2), 0)
        b.add_reshape("r1", "x", "r1", (1, 3, 2, 4), 1)
        b.add_permute("p", (0, 3, 1, 2), "x", "p")
        b.add_permute("p2", (0, 2, 3, 1), "x", "p2")
        b.add_split("split", "y", ["s0", "s1"])
        b.add_elementwise("cat", ["x", "x"], "cat", "CONCAT")

    def ref(x, y):
        hwc = x.transpose(1, 2, 0)
        return (x.reshape(-1, 1, 1), hwc.reshape(-1, 1, 1), x.reshape(4, 3, 2),
                hwc.reshape(2, 4, 3).transpose(2, 0, 1), x.transpose(2, 0, 1), x.transpose(1, 2, 0),
                y[:2], y[2:], np.concatenate([x, x], 0))

    check_layer(tmp_path, executor, add, {"x": X, "y": rand(4, 2, 2)}, ref,
                outputs=("f0", "f1", "r0", "r1", "p", "p2", "s0", "s1", "cat"))


@pytest.mark.parametrize("executor", EXECUTORS)
def test_nd_shape_layers(tmp_path, executor):
    def add(b):
        b.add_flatten_to_2d("f2d", "x", "f2d", axis=2)
        b.add_reshape_static("rs", "x", "rs", (1, 4, 6))
        b.add_reshape_like("rl", ["x", "like"], "rl")
        b.add_rank_preserving_reshape("rp", "x", "rp", (0, 6, -1, 0))
        b.add_squeeze("sq", "col", "sq", axes=[-1])
        b.add_squeeze("sqa", "col", "sqa", squeeze_all=True)
        b.add_expand_dims("ed", "x", "ed", axes=[2, -1])
        b.add_transpose("tr", (0, 3, 1, 2), "x", "tr")
        b.add_copy("cp", "x", "cp")

    def ref(x, like, col):
        return (x.reshape(2, 12), x.reshape(1, 4, 6), x.reshape(1, 6, 4), x.reshape(1, 6, 1, 4), col[..., 0],
                col.reshape(5), x[:, :, None, :, :, None], x.transpose(0, 3, 1, 2), x)

    check_layer(tmp_path, executor, add, {"x": rand(1, 2, 3, 4), "like": rand(1, 6, 4), "col": rand(1, 5, 1)}, ref,
                outputs=("f2d", "rs", "rl", "rp", "sq", "sqa", "ed", "tr", "cp"), nd=True, batch=3)


@pytest.mark.parametrize("executor", EXECUTORS)
def test_nd_tensor_layers(tmp_path, executor):
    def add(b):
        b.add_concat_nd("cat", ["x", "x"], "cat", axis=-1)
        b.add_split_nd("sp", "x", ["sp0", "sp1"], axis=3, split_sizes=[1, 3])
        b.add_split_nd("spn", "x", ["spa", "spb"], axis=-3, num_splits=2)
        b.add_slice("sl", "x", "sl", "width", start_index=1, end_index=-1, stride=2)
        b.add_slice_static("ss", "x", "ss", [0, 1, 0, 3], [1, 2, 3, 0], [1, 1, 2, -1],
                           [True, False, False, False], [True, False, True, True], [False, True, False, False])
        b.add_slice_by_size("sbs", ["x", "begin"], "sbs", axis=2, size=2)
        b.add_gather("g", ["x", "idx"], "g", axis=3)
        b.add_gather_along_axis("ga", ["x", "idx4"], "ga", axis=-1)
        b.add_stack("st", ["x", "x"], "st", axis=2)
        b.add_tile("ti", "x", "ti", reps=[1, 1, 2, 3])
        b.add_reverse("rv", "x", "rv", reverse_dim=[False, True, False, True])

    def ref(x, begin, idx, idx4):
        i = idx.astype(int)
        return (np.concatenate([x, x], -1), x[..., :1], x[..., 1:], x[:, :1], x[:, 1:], x[..., 1:3:2],
                x[:, 1, ::2, ::-1], x[:, :, 1:3], x[:, :, :, i % 4], np.take_along_axis(x, idx4.astype(int), -1),
                np.stack([x, x], 2), np.tile(x, (1, 1, 2, 3)), x[:, ::-1, :, ::-1])

    # every input leads with 1 so the network is batched (ND blobs keep their declared rank)
    idx = np.array([[[3, -1], [0, 2]]], np.float32)
    idx4 = np.random.default_rng(0).integers(0, 4, (1, 2, 3, 4)).astype(np.float32)
    check_layer(tmp_path, executor, add, {"x": rand(1, 2, 3, 4), "begin": np.array([1.0], np.float32),
                                          "idx": idx, "idx4": idx4},
                ref, outputs=("cat", "sp0", "sp1", "spa", "spb", "sl", "ss", "sbs", "g", "ga", "st", "ti", "rv"),
                nd=True, batch=1)


@pytest.mark.parametrize("executor", EXECUTORS)
def test_batched_slice_static_keeps_the_batch(tmp_path, executor):
    check_layer(tmp_path, executor,
                lambda b: b.add_slice_static("ss", "x", "out", [0, 1, 0], [1, 3, 4], [1, 1, 1],
                                             [False] * 3, [False] * 3),
                {"x": rand(1, 3, 4)}, lambda x: x[:, 1:3], nd=True, batch=3)
