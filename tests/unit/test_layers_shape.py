"""flatten, flattenTo2D, reshape (legacy), reshapeStatic/Like, rankPreservingReshape, squeeze, expandDims,
permute, transpose, copy; and the tensor layers: concat/concatND, split/splitND, slice, sliceStatic,
sliceBySize, gather, gatherAlongAxis, stack, tile, reverse.

ND cases use Core ML shapes with no implicit batch axis (inputs such as (5,), (4, 3), (4, 2, 3)); the
references are numpy, written from the proto's comments.
"""

from __future__ import annotations

import numpy as np

from tests.unit.test_layers_base import Case, case_test, rand

X = rand(2, 3, 4, seed=11)
X3 = rand(4, 2, 3, seed=12)  # an ND rank-3 input that does not start with 1


def _legacy_shape_layers(b):
    b.add_flatten("f0", 0, "x", "f0")
    b.add_flatten("f1", 1, "x", "f1")
    b.add_reshape("r0", "x", "r0", (4, 3, 2), 0)
    b.add_reshape("r1", "x", "r1", (1, 3, 2, 4), 1)
    b.add_permute("p", (0, 3, 1, 2), "x", "p")
    b.add_permute("p2", (0, 2, 3, 1), "x", "p2")
    b.add_split("split", "y", ["s0", "s1"])
    b.add_elementwise("cat", ["x", "x"], "cat", "CONCAT")


def _legacy_shape_ref(x, y):
    hwc = x.transpose(1, 2, 0)
    return (x.reshape(-1, 1, 1), hwc.reshape(-1, 1, 1), x.reshape(4, 3, 2),
            hwc.reshape(2, 4, 3).transpose(2, 0, 1), x.transpose(2, 0, 1), x.transpose(1, 2, 0),
            y[:2], y[2:], np.concatenate([x, x], 0))


def _nd_shape_layers(b):
    b.add_flatten_to_2d("f2d", "x", "f2d", axis=2)
    b.add_reshape_static("rs", "x", "rs", (1, 4, 6))
    b.add_reshape_like("rl", ["x", "like"], "rl")
    b.add_rank_preserving_reshape("rp", "x", "rp", (0, 6, -1, 0))
    b.add_squeeze("sq", "col", "sq", axes=[-1])
    b.add_squeeze("sqa", "col", "sqa", squeeze_all=True)
    b.add_expand_dims("ed", "x", "ed", axes=[2, -1])
    b.add_transpose("tr", (0, 3, 1, 2), "x", "tr")
    b.add_copy("cp", "x", "cp")


def _nd_shape_ref(x, like, col):
    return (x.reshape(2, 12), x.reshape(1, 4, 6), x.reshape(1, 6, 4), x.reshape(1, 6, 1, 4), col[..., 0],
            col.reshape(5), x[:, :, None, :, :, None], x.transpose(0, 3, 1, 2), x)


def _nd_tensor_layers(b):
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


def _nd_tensor_ref(x, begin, idx, idx4):
    i = idx.astype(int)
    return (np.concatenate([x, x], -1), x[..., :1], x[..., 1:], x[:, :1], x[:, 1:], x[..., 1:3:2],
            x[:, 1, ::2, ::-1], x[:, :, 1:3], x[:, :, :, i % 4], np.take_along_axis(x, idx4.astype(int), -1),
            np.stack([x, x], 2), np.tile(x, (1, 1, 2, 3)), x[:, ::-1, :, ::-1])


_IDX = np.array([[[3, -1], [0, 2]]], np.float32)
_IDX4 = np.random.default_rng(0).integers(0, 4, (1, 2, 3, 4)).astype(np.float32)

CASES = [
    Case("shape_legacy_layers", _legacy_shape_layers, {"x": X, "y": rand(4, 2, 2)}, _legacy_shape_ref,
         outputs=("f0", "f1", "r0", "r1", "p", "p2", "s0", "s1", "cat")),
    Case("shape_nd_layers", _nd_shape_layers, {"x": rand(1, 2, 3, 4), "like": rand(1, 6, 4), "col": rand(1, 5, 1)},
         _nd_shape_ref, outputs=("f2d", "rs", "rl", "rp", "sq", "sqa", "ed", "tr", "cp"), nd=True, batch=3),
    # every input leads with 1 (kept from the batch-axis days; the ND rank-N cases below do not)
    Case("shape_nd_tensor_layers", _nd_tensor_layers,
         {"x": rand(1, 2, 3, 4), "begin": np.array([1.0], np.float32), "idx": _IDX, "idx4": _IDX4},
         _nd_tensor_ref, outputs=("cat", "sp0", "sp1", "spa", "spb", "sl", "ss", "sbs", "g", "ga", "st", "ti", "rv"),
         nd=True, batch=1),
    Case("shape_batched_slice_static_keeps_the_batch",
         lambda b: b.add_slice_static("ss", "x", "out", [0, 1, 0], [1, 3, 4], [1, 1, 1], [False] * 3, [False] * 3),
         {"x": rand(1, 3, 4)}, lambda x: x[:, 1:3], nd=True, batch=3),
]


# -- ND shape layers at several ranks, no leading 1 ----------------------------------------------------


def _flatten_to_2d(b):
    for a in (0, 1, 2, -1):
        b.add_flatten_to_2d(f"f{a}", "x", f"f{a}", axis=a)


def _flatten_to_2d_ref(x):
    d0, d1, d2 = x.shape
    return x.reshape(1, -1), x.reshape(d0, d1 * d2), x.reshape(d0 * d1, d2), x.reshape(d0 * d1, d2)


def _reshape_static(b):
    b.add_reshape_static("lead1", "x", "lead1", (1, 6, 4))
    b.add_reshape_static("r2", "x", "r2", (3, 8))
    b.add_reshape_static("r1", "x", "r1", (24,))
    b.add_reshape_static("r4", "x", "r4", (2, 2, 3, 2))


CASES += [
    Case("shape_flattenTo2D_rank3_axes", _flatten_to_2d, {"x": X3}, _flatten_to_2d_ref,
         outputs=("f0", "f1", "f2", "f-1"), nd=True),
    Case("shape_flattenTo2D_rank1", lambda b: b.add_flatten_to_2d("f", "x", "out", axis=0), {"x": rand(5)},
         lambda x: x.reshape(1, 5), nd=True),
    Case("shape_reshapeStatic_ranks", _reshape_static, {"x": X3},
         lambda x: (x.reshape(1, 6, 4), x.reshape(3, 8), x.reshape(24), x.reshape(2, 2, 3, 2)),
         outputs=("lead1", "r2", "r1", "r4"), nd=True),
    Case("shape_reshapeLike_rank2", lambda b: b.add_reshape_like("rl", ["x", "like"], "out"),
         {"x": X3, "like": rand(3, 8)}, lambda x, like: x.reshape(3, 8), nd=True),
    Case("shape_rankPreservingReshape_rank3", lambda b: b.add_rank_preserving_reshape("rp", "x", "out", (0, -1, 2)),
         {"x": X3}, lambda x: x.reshape(4, 3, 2), nd=True),
    Case("shape_rankPreservingReshape_rank2", lambda b: b.add_rank_preserving_reshape("rp", "x", "out", (-1, 2)),
         {"x": rand(3, 4)}, lambda x: x.reshape(6, 2), nd=True),
]


def _squeeze(b):
    b.add_squeeze("s0", "x", "s0", axes=[0])
    b.add_squeeze("sall", "x", "sall", squeeze_all=True)
    b.add_squeeze("s02", "y", "s02", axes=[0, 2])
    b.add_squeeze("sneg", "y", "sneg", axes=[-2])
    b.add_squeeze("one", "z", "one", axes=[0])
    b.add_squeeze("oneall", "z", "oneall", squeeze_all=True)


def _squeeze_ref(x, y, z):
    # input rank 1 keeps rank 1: (1,) squeezed is (1,)
    return x[0], x[0], y[0, :, 0], y[:, :, 0], z, z


def _expand_dims(b):
    b.add_expand_dims("e0", "x", "e0", axes=[0])
    b.add_expand_dims("e_1", "x", "e_1", axes=[-1])
    b.add_expand_dims("e02", "y", "e02", axes=[0, 2])
    b.add_expand_dims("en", "y", "en", axes=[-2, -1])


CASES += [
    Case("shape_squeeze_axis0_ranks", _squeeze, {"x": rand(1, 5), "y": rand(1, 3, 1, 2), "z": rand(1)}, _squeeze_ref,
         outputs=("s0", "sall", "s02", "sneg", "one", "oneall"), nd=True),
    Case("shape_expandDims_ranks", _expand_dims, {"x": rand(5), "y": rand(3, 2)},
         lambda x, y: (x[None], x[:, None], y[None, :, None], y[:, :, None, None]),
         outputs=("e0", "e_1", "e02", "en"), nd=True),
    Case("shape_transpose_ranks",
         lambda b: (b.add_transpose("t3", (2, 0, 1), "x", "t3"), b.add_transpose("t2", (1, 0), "y", "t2"),
                    b.add_transpose("t1", (0,), "z", "t1")),
         {"x": X3, "y": rand(3, 5), "z": rand(4)}, lambda x, y, z: (x.transpose(2, 0, 1), y.T, z),
         outputs=("t3", "t2", "t1"), nd=True),
    Case("shape_copy_rank1", lambda b: b.add_copy("cp", "x", "out"), {"x": rand(6)}, lambda x: x, nd=True),
]


# -- ND tensor layers at several ranks, no leading 1 ---------------------------------------------------


def _concat_split(b):
    b.add_concat_nd("c0", ["a", "b"], "c0", axis=0)
    b.add_concat_nd("c1", ["a", "a"], "c1", axis=-1)
    b.add_concat_nd("cv", ["v", "v", "v"], "cv", axis=0)
    b.add_split_nd("sp0", "b", ["b0", "b1"], axis=0, split_sizes=[1, 3])
    b.add_split_nd("spu", "b", ["u0", "u1"], axis=0, num_splits=2)
    b.add_split_nd("sp11", "v", ["v0", "v1", "v2"], axis=0, num_splits=3)  # 11 = 4 + 4 + 3
    b.add_split_nd("spr3", "x", ["x0", "x1"], axis=-2, num_splits=2)


def _concat_split_ref(a, b, v, x):
    return (np.concatenate([a, b], 0), np.concatenate([a, a], -1), np.concatenate([v, v, v], 0),
            b[:1], b[1:], b[:2], b[2:], v[:4], v[4:8], v[8:], x[:, :1], x[:, 1:])


def _slices(b):
    b.add_slice_static("s0", "x", "s0", [1, 0], [4, 3], [1, 1], [False, True], [False, True])
    b.add_slice_static("s0neg", "x", "s0neg", [-1, 0], [0, 3], [-2, 1], [True, False], [True, False])
    b.add_slice_static("s1", "v", "s1", [2], [-1], [2], [False], [False])
    b.add_slice_static("sq", "x", "sq", [2, 0], [3, 3], [1, 1], [False, True], [False, True],
                       squeeze_masks=[True, False])
    b.add_slice("slw", "x", "slw", "width", start_index=0, end_index=-1, stride=1)
    b.add_slice("slh", "x", "slh", "height", start_index=1, end_index=5, stride=2)
    b.add_slice_by_size("sbs", ["x", "begin"], "sbs", axis=0, size=2)
    b.add_slice_by_size("sbs1", ["v", "begin"], "sbs1", axis=-1, size=3)


def _slices_ref(x, v, begin):
    s = int(begin[0])
    return (x[1:4], x[::-2], v[2:-1:2], x[2], x[:, :-1], x[1:5:2], x[s:s + 2], v[s:s + 3])


def _gathers(b):
    b.add_gather("g0", ["x", "idx"], "g0", axis=0)
    b.add_gather("g1", ["x", "idx"], "g1", axis=-1)
    b.add_gather("gv", ["v", "idx"], "gv", axis=0)
    b.add_gather_along_axis("ga0", ["x", "ia"], "ga0", axis=0)


def _gathers_ref(x, v, idx, ia):
    i = idx.astype(int)
    return x[i % 5], x[:, i % 3], v[i % 7], np.take_along_axis(x, ia.astype(int), 0)


def _stack_tile_reverse(b):
    b.add_stack("st0", ["a", "a2"], "st0", axis=0)
    b.add_stack("stn", ["a", "a2"], "stn", axis=-1)
    b.add_stack("stv", ["v", "v"], "stv", axis=0)
    b.add_tile("ti2", "a", "ti2", reps=[2, 1])
    b.add_tile("ti1", "v", "ti1", reps=[3])
    b.add_tile("ti3", "x", "ti3", reps=[1, 2, 2])
    b.add_reverse("rv0", "a", "rv0", reverse_dim=[True, False])
    b.add_reverse("rv1", "v", "rv1", reverse_dim=[True])
    b.add_reverse("rv3", "x", "rv3", reverse_dim=[True, False, True])


def _stack_tile_reverse_ref(a, a2, v, x):
    return (np.stack([a, a2], 0), np.stack([a, a2], -1), np.stack([v, v], 0), np.tile(a, (2, 1)), np.tile(v, 3),
            np.tile(x, (1, 2, 2)), a[::-1], v[::-1], x[::-1, :, ::-1])


def _legacy_kinds_nd(b):  # legacy layers in an ND network: the axes before -3 are batch axes
    b.add_flatten("fl", 0, "x", "fl")
    b.add_split("split", "x", ["s0", "s1"])
    b.add_elementwise("cat", ["x", "x"], "cat", "CONCAT")


CASES += [
    Case("shape_concatND_splitND_axis0", _concat_split,
         {"a": rand(2, 3, seed=13), "b": rand(4, 3, seed=14), "v": rand(11, seed=15), "x": X3}, _concat_split_ref,
         outputs=("c0", "c1", "cv", "b0", "b1", "u0", "u1", "v0", "v1", "v2", "x0", "x1"), nd=True),
    Case("shape_slices_axis0", _slices, {"x": rand(6, 3, seed=16), "v": rand(7, seed=17),
                                         "begin": np.array([1.0], np.float32)},
         _slices_ref, outputs=("s0", "s0neg", "s1", "sq", "slw", "slh", "sbs", "sbs1"), nd=True),
    Case("shape_gather_rank2_indices", _gathers,
         {"x": rand(5, 3, seed=18), "v": rand(7, seed=19), "idx": np.array([[0, 2], [-1, 1]], np.float32),
          "ia": np.array([[4, 0, 1], [2, 2, 3]], np.float32)},
         _gathers_ref, outputs=("g0", "g1", "gv", "ga0"), nd=True),
    Case("shape_stack_tile_reverse_ranks", _stack_tile_reverse,
         {"a": rand(2, 3, seed=20), "a2": rand(2, 3, seed=21), "v": rand(4, seed=22), "x": X3},
         _stack_tile_reverse_ref, outputs=("st0", "stn", "stv", "ti2", "ti1", "ti3", "rv0", "rv1", "rv3"), nd=True),
    Case("shape_legacy_kinds_in_nd_rank4", _legacy_kinds_nd, {"x": rand(3, 4, 2, 2, seed=23)},
         lambda x: (x.reshape(3, 16, 1, 1), x[:, :2], x[:, 2:], np.concatenate([x, x], 1)),
         outputs=("fl", "s0", "s1", "cat"), nd=True),
]



# -- legacy reshape and permute (rank-5 kinds): a second legacy shape, and permute in an ND network --


def _legacy_reshape_permute(b):
    b.add_reshape("r0", "x", "r0", (2, 6, 2), 0)
    b.add_reshape("r1", "x", "r1", (6, 2, 2), 1)
    b.add_permute("p0", (0, 2, 1, 3), "x", "p0")
    b.add_permute("p1", (0, 3, 2, 1), "x", "p1")
    b.add_permute("p2", (0, 1, 2, 3), "x", "p2")


def _legacy_reshape_permute_ref(x):
    # CHANNEL_LAST: flatten in [H, W, C] order, reshape to [H_out, W_out, C_out], permute to [C_out, H_out, W_out]
    hwc = x.transpose(1, 2, 0)
    return x.reshape(2, 6, 2), hwc.reshape(2, 2, 6).transpose(2, 0, 1), x.transpose(1, 0, 2), x.transpose(2, 1, 0), x


def _nd_permute(b):  # axis indexes [Seq, C, H, W]; the Batch axis (1) stays in place
    b.add_permute("p0", (0, 3, 1, 2), "x", "p0")
    b.add_permute("p1", (3, 1, 2, 0), "x", "p1")
    b.add_permute("p2", (0, 3, 2, 1), "x", "p2")


CASES += [
    Case("shape_legacy_reshape_permute_3x4x2", _legacy_reshape_permute, {"x": rand(3, 4, 2, seed=24)},
         _legacy_reshape_permute_ref, outputs=("r0", "r1", "p0", "p1", "p2")),
    Case("shape_permute_nd_rank5", _nd_permute, {"x": rand(2, 3, 4, 2, 3, seed=25)},
         lambda x: (x.transpose(0, 1, 4, 2, 3), x.transpose(4, 1, 2, 3, 0), x.transpose(0, 1, 4, 3, 2)),
         outputs=("p0", "p1", "p2"), nd=True),
]

test_cases = case_test(CASES)

REFERENCE = "numpy reshape / transpose / slicing / concatenation"
