"""fillLike/Static/Dynamic, broadcastToLike/Static/Dynamic, rangeStatic/Dynamic, reshapeDynamic, getShape and
sliceDynamic against numpy references written from the proto's comments.

Shape, bound and mask inputs are float arrays. The harness shuffles each input's values for the extra
examples, so the dynamic cases pick values that stay valid (and give other shapes) when shuffled.
"""

from __future__ import annotations

import numpy as np

import mlupdate
from tests.unit.test_layers_base import Case, case_test, rand, save

F = np.float32


def f32(values) -> np.ndarray:
    return np.asarray(values, dtype=F)


def ints(a: np.ndarray) -> list[int]:
    return [int(v) for v in np.asarray(a).reshape(-1)]


def arange_ref(start: float, end: float, step: float) -> np.ndarray:
    return np.arange(start, end, step, dtype=np.float64).astype(F)


def numpy_slice(x, begin, end, strides, bmask, emask, squeeze):
    """SliceStatic/SliceDynamic semantics from the proto: x[b:e:s] per axis, a squeezed axis is x[b]."""
    key = []
    for a in range(x.ndim):
        if squeeze[a]:
            key.append(int(begin[a]))
        else:
            key.append(slice(None if bmask[a] else int(begin[a]), None if emask[a] else int(end[a]), int(strides[a])))
    out = np.asarray(x[tuple(key)])
    return out.reshape(1) if out.ndim == 0 else out


# -- fills --------------------------------------------------------------------------------------------

FILL = [
    Case("fill_like_rank2", lambda b: b.add_fill_like("f", "x", "out", value=1.5), {"x": rand(2, 3)},
         lambda x: np.full(x.shape, 1.5, F), nd=True, batch=3),
    Case("fill_like_rank1_rank4", lambda b: (b.add_fill_like("f", "x", "a", value=-2.0),
                                             b.add_fill_like("g", "y", "c", value=0.0)),
         {"x": rand(4), "y": rand(2, 1, 3, 2)}, lambda x, y: (np.full(x.shape, -2.0, F), np.zeros(y.shape, F)),
         nd=True, outputs=("a", "c")),
    Case("fill_static", lambda b: (b.add_fill_static("f", "a", (2, 3), value=2.5),
                                   b.add_fill_static("g", "c", (4,), value=-1.0),
                                   b.add_add_broadcastable("s", ["x", "a"], "s")),
         {"x": rand(2, 3)}, lambda x: (np.full((2, 3), 2.5, F), np.full(4, -1.0, F), x + F(2.5)),
         nd=True, outputs=("a", "c", "s"), batch=3),
    Case("fill_dynamic_rank2", lambda b: b.add_fill_dynamic("f", "shape", "out", value=3.0),
         {"shape": f32([2, 3])}, lambda s: np.full(ints(s), 3.0, F), nd=True),
    Case("fill_dynamic_rank3", lambda b: b.add_fill_dynamic("f", "shape", "out", value=-0.5),
         {"shape": f32([2, 1, 4])}, lambda s: np.full(ints(s), -0.5, F), nd=True, batch=3),
]

# -- broadcasts ---------------------------------------------------------------------------------------

BROADCAST = [
    Case("broadcast_to_like", lambda b: (b.add_broadcast_to_like("a", ["x", "r"], "a"),
                                         b.add_broadcast_to_like("c", ["y", "q"], "c"),
                                         b.add_broadcast_to_like("d", ["z", "r"], "d")),
         {"x": rand(1, 3), "r": rand(2, 4, 3), "y": rand(3, 1), "q": rand(3, 5), "z": rand(3)},
         lambda x, r, y, q, z: (np.broadcast_to(x, r.shape), np.broadcast_to(y, q.shape), np.broadcast_to(z, r.shape)),
         nd=True, outputs=("a", "c", "d"), batch=3),
    Case("broadcast_to_static", lambda b: (b.add_broadcast_to_static("a", "x", "a", (2, 3, 4)),
                                           b.add_broadcast_to_static("c", "y", "c", (5,))),
         {"x": rand(3, 1), "y": rand(1)},
         lambda x, y: (np.broadcast_to(x, (2, 3, 4)), np.broadcast_to(y, (5,))), nd=True, outputs=("a", "c")),
    Case("broadcast_to_dynamic_rank_up", lambda b: b.add_broadcast_to_dynamic("a", ["x", "shape"], "out"),
         {"x": rand(1), "shape": f32([2, 3, 4])}, lambda x, s: np.broadcast_to(x, ints(s)), nd=True, batch=3),
    Case("broadcast_to_dynamic_rank2", lambda b: b.add_broadcast_to_dynamic("a", ["x", "shape"], "out"),
         {"x": rand(3, 1), "shape": f32([3, 3])}, lambda x, s: np.broadcast_to(x, ints(s)), nd=True),
]

# -- ranges -------------------------------------------------------------------------------------------


def _range_static(b):
    b.add_range_static("r0", "a", end=5)
    b.add_range_static("r1", "c", end=-3, start=2, step=-0.5)
    b.add_range_static("r2", "d", end=2.0, start=1.0, step=0.3)
    b.add_add_broadcastable("s", ["x", "a"], "s")


RANGE = [
    Case("range_static", _range_static, {"x": rand(5)},
         lambda x: (arange_ref(0, 5, 1), arange_ref(2, -3, -0.5), arange_ref(1, 2, 0.3), x + arange_ref(0, 5, 1)),
         nd=True, outputs=("a", "c", "d", "s"), batch=3),
    Case("range_dynamic_end", lambda b: b.add_range_dynamic("r", ["e"], "out", start=1, step=2),
         {"e": f32([8.0])}, lambda e: arange_ref(1, float(e[0]), 2), nd=True),
    Case("range_dynamic_end_start", lambda b: b.add_range_dynamic("r", ["e", "s"], "out", step=0.5),
         {"e": f32([2.0]), "s": f32([-1.5])}, lambda e, s: arange_ref(float(s[0]), float(e[0]), 0.5), nd=True),
    Case("range_dynamic_all_inputs", lambda b: (b.add_range_dynamic("r", ["e", "s", "st"], "a"),
                                                b.add_range_dynamic("q", ["s", "e", "neg"], "c")),
         {"e": f32([7.5]), "s": f32([-2.0]), "st": f32([1.5]), "neg": f32([-2.0])},
         lambda e, s, st, neg: (arange_ref(s[0], e[0], st[0]), arange_ref(e[0], s[0], neg[0])),
         nd=True, outputs=("a", "c")),
    Case("range_dynamic_empty", lambda b: b.add_range_dynamic("r", ["e", "s"], "out", step=1),
         {"e": f32([0.0]), "s": f32([2.0])}, lambda e, s: arange_ref(s[0], e[0], 1), nd=True),
]

# -- reshape, getShape --------------------------------------------------------------------------------

SHAPES = [
    Case("reshape_dynamic", lambda b: (b.add_reshape_dynamic("a", ["x", "s2"], "a"),
                                       b.add_reshape_dynamic("c", ["x", "s3"], "c")),
         {"x": rand(2, 3, 4), "s2": f32([4, 6]), "s3": f32([2, 12, 1])},
         lambda x, s2, s3: (x.reshape(ints(s2)), x.reshape(ints(s3))), nd=True, outputs=("a", "c"), batch=3),
    Case("get_shape", lambda b: (b.add_get_shape("a", "x", "a"), b.add_get_shape("c", "y", "c")),
         {"x": rand(2, 3, 4), "y": rand(5)}, lambda x, y: (f32(x.shape), f32(y.shape)), nd=True,
         outputs=("a", "c"), batch=3),
    Case("get_shape_then_reshape_and_fill", lambda b: (b.add_get_shape("g", "like", "shape"),
                                                       b.add_reshape_dynamic("r", ["x", "shape"], "a"),
                                                       b.add_fill_dynamic("f", "shape", "c", value=4.0)),
         {"x": rand(6, 2), "like": rand(3, 2, 2)},
         lambda x, like: (x.reshape(like.shape), np.full(like.shape, 4.0, F)), nd=True, outputs=("a", "c")),
]

# -- sliceDynamic -------------------------------------------------------------------------------------

# proto example (SliceStaticLayerParams): shape (5, 5, 5), beginIds [1, 2, 3], beginMasks [T, F, T],
# endIds [3, -3, 2], endMasks [F, T, T], strides [2, 2, 2] -> x[:3:2, 2::2, ::2]; squeezing axis 1 -> x[:3:2, 2, ::2]
P_END, P_STRIDES, P_BMASK, P_EMASK = [3, -3, 2], [2, 2, 2], [True, False, True], [False, True, True]


def _slice_begin_only(id_: str, squeeze) -> Case:
    def add(b):
        b.add_slice_dynamic("s", ["x", "begin"], "out", end_ids=P_END, strides=P_STRIDES, begin_masks=P_BMASK,
                            end_masks=P_EMASK, squeeze_masks=squeeze)

    def ref(x, begin):
        return numpy_slice(x, begin, P_END, P_STRIDES, P_BMASK, P_EMASK, squeeze or [False] * 3)

    return Case(id_, add, {"x": rand(5, 5, 5), "begin": f32([1, 2, 3])}, ref, nd=True, batch=3)


def _slice_inputs(names, **params):
    def add(b):
        b.add_slice_dynamic("s", ["x", *names], "out", **params)
        b.spec.specificationVersion = max(b.spec.specificationVersion, 5)

    return add


SLICE = [
    _slice_begin_only("slice_dynamic_proto_example", None),
    _slice_begin_only("slice_dynamic_proto_example_squeeze", [False, True, False]),
    Case("slice_dynamic_begin_end", _slice_inputs(["begin", "end"], strides=[-1, 2]),
         {"x": rand(4, 6), "begin": f32([3, -5]), "end": f32([0, 5])},
         lambda x, bg, e: numpy_slice(x, bg, e, [-1, 2], [False] * 2, [False] * 2, [False] * 2), nd=True, batch=3),
    Case("slice_dynamic_begin_end_strides", _slice_inputs(["begin", "end", "strides"]),
         {"x": rand(3, 4, 6), "begin": f32([0, -1, 1]), "end": f32([3, -4, 9]), "strides": f32([1, -2, 3])},
         lambda x, bg, e, s: numpy_slice(x, bg, e, s, [False] * 3, [False] * 3, [False] * 3), nd=True, batch=3),
    Case("slice_dynamic_mask_inputs", _slice_inputs(["begin", "end", "strides", "bm", "em"]),
         {"x": rand(4, 5, 6), "begin": f32([1, -2, 3]), "end": f32([3, 4, -1]), "strides": f32([1, 2, 1]),
          "bm": f32([1, 0, 0]), "em": f32([0, 0, 1])},
         lambda x, bg, e, s, bm, em: numpy_slice(x, bg, e, s, bm.astype(bool), em.astype(bool), [False] * 3),
         nd=True, batch=3),
    Case("slice_dynamic_seven_inputs", _slice_inputs(["begin", "end", "strides", "bm", "em", "sq"]),
         {"x": rand(4, 5, 6), "begin": f32([1, -2, 3]), "end": f32([3, 4, -1]), "strides": f32([1, 2, 1]),
          "bm": f32([1, 0, 0]), "em": f32([0, 0, 1]), "sq": f32([0, 1, 0])},
         lambda x, bg, e, s, bm, em, sq: numpy_slice(x, bg, e, s, bm.astype(bool), em.astype(bool), sq.astype(bool)),
         nd=True, batch=3),
    Case("slice_dynamic_squeeze_to_scalar", _slice_inputs(["begin"], squeeze_masks=[True]),
         {"x": rand(4), "begin": f32([-3])}, lambda x, bg: numpy_slice(x, bg, [0], [1], [False], [False], [True]),
         nd=True),
]

CASES = FILL + BROADCAST + RANGE + SHAPES + SLICE

test_cases = case_test(CASES)


def test_cases_cover_every_kind():
    kinds = set().union(*(c.kinds() for c in CASES))
    assert {"fillLike", "fillStatic", "fillDynamic", "broadcastToLike", "broadcastToStatic", "broadcastToDynamic",
            "rangeStatic", "rangeDynamic", "reshapeDynamic", "getShape", "sliceDynamic"} <= kinds


def test_value_dependent_layers_run_one_example_at_a_time_on_torch(tmp_path):
    case = SHAPES[0]
    model = mlupdate.load(save(case.builder(), tmp_path), executor="onnxruntime")
    assert model.executor == "torch"
    out = model.predict_batch([{"x": case.inputs["x"], "s2": f32([4, 6]), "s3": f32([24, 1, 1])},
                               {"x": case.inputs["x"], "s2": f32([3, 8]), "s3": f32([1, 1, 24])}])
    assert [o["a"].shape for o in out] == [(4, 6), (3, 8)] and out[1]["c"].shape == (1, 1, 24)


def test_static_layers_export_to_onnx(tmp_path):
    for case in (FILL[2], RANGE[0], SHAPES[1], BROADCAST[0]):
        model = mlupdate.load(save(case.builder(), tmp_path), executor="onnxruntime")
        assert model.executor == "onnxruntime", case.id


def test_bad_dynamic_shapes_name_the_layer(tmp_path):
    b = Case("x", lambda b: b.add_broadcast_to_dynamic("bcast", ["x", "shape"], "out"),
             {"x": rand(2), "shape": f32([3, 3])}, lambda x, s: x, nd=True).builder()
    model = mlupdate.load(save(b, tmp_path))
    try:
        model.predict({"x": rand(2), "shape": f32([3, 3])})
    except mlupdate.LayerError as exc:
        assert "bcast" in str(exc) and "broadcast" in str(exc)
    else:
        raise AssertionError("broadcasting [2] to [3, 3] must fail")

REFERENCE = "numpy full / broadcast_to / arange / reshape / slicing, and the proto's examples"
