"""gatherND, scatter, scatterND and scatterAlongAxis against numpy references written from the proto.

Every scatter mode (UPDATE, ADD, SUB, MUL, DIV, MAX, MIN), several ranks, negative indices and
negative axes. The UPDATE cases use indices that stay duplicate-free when the harness shuffles them
for the extra examples (Core ML does not say which duplicate update wins); the other modes repeat
indices on purpose, since accumulation is defined for them.
"""

from __future__ import annotations

import numpy as np

from tests.unit.test_layers_base import Case, case_test, rand

OPS = {
    "UPDATE": lambda a, b: b,
    "ADD": lambda a, b: a + b,
    "SUB": lambda a, b: a - b,
    "MUL": lambda a, b: a * b,
    "DIV": lambda a, b: a / b,
    "MAX": np.maximum,
    "MIN": np.minimum,
}


def f32(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


# -- references (proto comments of ScatterLayerParams, GatherNDLayerParams, ScatterNDLayerParams,
#    ScatterAlongAxisLayerParams) -------------------------------------------------------------------


def gather_nd_ref(params: np.ndarray, indices: np.ndarray) -> np.ndarray:
    idx = indices.astype(np.int64)
    k = idx.shape[-1]
    out = params[tuple(idx[..., j] for j in range(k))] if k else np.broadcast_to(params, idx.shape[:-1] + params.shape)
    out = np.asarray(out, dtype=np.float32)
    return out.reshape(1) if out.ndim == 0 else out


def scatter_ref(mode: str, axis: int):
    def ref(container: np.ndarray, indices: np.ndarray, updates: np.ndarray) -> np.ndarray:
        out = container.astype(np.float64)
        a = axis % container.ndim
        flat = indices.astype(np.int64).reshape(-1)
        upd = updates.astype(np.float64).reshape(container.shape[:a] + (flat.size,) + container.shape[a + 1:])
        for m, i in enumerate(flat):
            sl = (slice(None),) * a + (i,)
            out[sl] = OPS[mode](out[sl], np.take(upd, m, axis=a))
        return out.astype(np.float32)

    return ref


def scatter_nd_ref(mode: str):
    def ref(container: np.ndarray, indices: np.ndarray, updates: np.ndarray) -> np.ndarray:
        out = container.astype(np.float64)
        idx = indices.astype(np.int64)
        k = idx.shape[-1]
        points = idx.reshape(-1, k)
        upd = updates.astype(np.float64).reshape((points.shape[0],) + container.shape[k:])
        for p, u in zip(points, upd, strict=True):
            t = tuple(p)
            out[t] = OPS[mode](out[t], u)
        return out.astype(np.float32)

    return ref


def scatter_along_axis_ref(mode: str, axis: int):
    def ref(container: np.ndarray, indices: np.ndarray, updates: np.ndarray) -> np.ndarray:
        out = container.astype(np.float64)
        a = axis % container.ndim
        idx = indices.astype(np.int64)
        for pos in np.ndindex(*idx.shape):
            target = list(pos)
            target[a] = idx[pos]
            out[tuple(target)] = OPS[mode](out[tuple(target)], float(updates[pos]))
        return out.astype(np.float32)

    return ref


# -- cases (the harness shuffles each input's values for the extra examples: every multi-index value
#    is valid on every axis it may land on) ---------------------------------------------------


def _add3(method: str, **kw):
    def add(b):
        getattr(b, method)("layer", ["c", "i", "u"], "out", **kw)

    return add


def _gnd_case(id_: str, params: np.ndarray, indices: np.ndarray) -> Case:
    return Case(id_, lambda b: b.add_gather_nd("g", ["p", "i"], "out"), {"p": params, "i": f32(indices)},
                gather_nd_ref, nd=True, batch=3)


GATHER_ND = [
    # proto examples: (4, 2, 3, 4) by (6, 2); (3, 3, 3, 4, 7) by (3, 5); (5, 3, 2, 5) by (2, 7, 3, 2)
    _gnd_case("gather_nd_slices", rand(4, 2, 3, 4, seed=1),
              [[0, 1], [1, 0], [-1, -2], [-2, 1], [1, 1], [0, -1]]),
    _gnd_case("gather_nd_points", rand(3, 3, 3, 4, 7, seed=2),
              [[0, 1, 2, -3, 2], [2, -1, 0, -2, 0], [1, 1, 1, 1, 1]]),
    _gnd_case("gather_nd_batched", rand(5, 3, 2, 5, seed=3),
              np.random.default_rng(4).integers(-2, 2, (2, 7, 3, 2))),
    # a single multi-index of full length: a scalar result, held as [1]
    _gnd_case("gather_nd_scalar", rand(3, 4, seed=5), [2, -1]),
    _gnd_case("gather_nd_rank1", rand(6, seed=6), [[0], [5], [-2], [3]]),
]

MODES = tuple(OPS)


def _scatter_cases() -> list[Case]:
    cases = []
    # proto example shapes: container (4, 3), indices (5, 2, 3), updates (4, 5, 2, 3), axis 1
    # (accumulating modes: indices repeat), and container (4, 4, 3), indices (6,), axis -2
    for mode in MODES:
        low = 0.5 if mode in ("MUL", "DIV") else -1.0
        ind = np.random.default_rng(7).integers(-3, 3, (5, 2, 3))
        if mode != "UPDATE":
            cases.append(Case(
                f"scatter_{mode.lower()}_axis1", _add3("add_scatter", axis=1, mode=mode),
                {"c": rand(4, 3, seed=8), "i": f32(ind), "u": rand(4, 5, 2, 3, seed=9, low=low, high=2.0)},
                scatter_ref(mode, 1), nd=True))
        cases.append(Case(
            f"scatter_{mode.lower()}_axis-2", _add3("add_scatter", axis=-2, mode=mode),
            {"c": rand(4, 4, 3, seed=10, low=low, high=2.0), "i": f32([1, -1, 0, 2][:4] if mode == "UPDATE"
                                                                       else [1, -1, 0, 1, 3, -4]),
             "u": rand(4, 4 if mode == "UPDATE" else 6, 3, seed=11, low=low, high=2.0)},
            scatter_ref(mode, -2), nd=True, batch=3))
    cases.append(Case(
        "scatter_update_axis0_rank1", _add3("add_scatter", axis=0, mode="UPDATE"),
        {"c": rand(5, seed=12), "i": f32([4, -4, 2]), "u": rand(3, seed=13)}, scatter_ref("UPDATE", 0), nd=True))
    cases.append(Case(
        "scatter_update_axis-1_rank3", _add3("add_scatter", axis=-1, mode="UPDATE"),
        {"c": rand(2, 3, 5, seed=14), "i": f32([[0, -1]]), "u": rand(2, 3, 1, 2, seed=15)},
        scatter_ref("UPDATE", -1), nd=True))
    return cases


def _scatter_nd_cases() -> list[Case]:
    cases = []
    for mode in MODES:
        low = 0.5 if mode in ("MUL", "DIV") else -1.0
        # proto example: container (3, 2), indices (4, 2), updates (4,): element updates
        pts = [[0, 1], [-1, 0], [1, 1], [2, -1]] if mode == "UPDATE" else [[0, 1], [-2, 1], [1, 0], [1, -2]]
        cases.append(Case(
            f"scatter_nd_{mode.lower()}_points", _add3("add_scatter_nd", mode=mode),
            {"c": rand(3, 2, seed=16, low=low, high=2.0), "i": f32(pts), "u": rand(4, seed=17, low=low, high=2.0)},
            scatter_nd_ref(mode), nd=True, batch=1 if mode == "UPDATE" else 2))
    # proto example: container (7, 6), indices (4, 7, 2, 5, 1), updates (4, 7, 2, 5, 6): row updates
    cases.append(Case(
        "scatter_nd_add_rows", _add3("add_scatter_nd", mode="ADD"),
        {"c": rand(7, 6, seed=18), "i": f32(np.random.default_rng(19).integers(-7, 7, (4, 7, 2, 5, 1))),
         "u": rand(4, 7, 2, 5, 6, seed=20)}, scatter_nd_ref("ADD"), nd=True))
    cases.append(Case(
        "scatter_nd_update_rows_rank3", _add3("add_scatter_nd", mode="UPDATE"),
        {"c": rand(4, 3, 2, seed=21), "i": f32([[3], [0], [-3]]), "u": rand(3, 3, 2, seed=22)},
        scatter_nd_ref("UPDATE"), nd=True, batch=3))
    cases.append(Case(
        "scatter_nd_max_blocks", _add3("add_scatter_nd", mode="MAX"),
        {"c": rand(3, 4, 2, seed=23), "i": f32([[[0, 1], [2, -1]], [[0, 1], [-1, 0]]]), "u": rand(2, 2, 2, seed=24)},
        scatter_nd_ref("MAX"), nd=True))
    return cases


def _scatter_along_axis_cases() -> list[Case]:
    cases = []
    for mode in MODES:
        low = 0.5 if mode in ("MUL", "DIV") else -1.0
        # proto example: container (2, 5, 6), indices and updates (2, 2, 6), axis -2
        if mode == "UPDATE":  # one update per (i, k) line: no duplicates whatever the shuffle
            ind = np.random.default_rng(25).integers(-5, 5, (2, 1, 6))
        else:
            ind = np.random.default_rng(25).integers(-5, 5, (2, 3, 6))
        cases.append(Case(
            f"scatter_along_axis_{mode.lower()}", _add3("add_scatter_along_axis", axis=-2, mode=mode),
            {"c": rand(2, 5, 6, seed=26, low=low, high=2.0), "i": f32(ind),
             "u": rand(*ind.shape, seed=27, low=low, high=2.0)}, scatter_along_axis_ref(mode, -2), nd=True))
    cases.append(Case(
        "scatter_along_axis_add_rank1", _add3("add_scatter_along_axis", axis=0, mode="ADD"),
        {"c": rand(4, seed=28), "i": f32([0, -1, 0, 2, 3, -4]), "u": rand(6, seed=29)},
        scatter_along_axis_ref("ADD", 0), nd=True, batch=3))
    cases.append(Case(
        "scatter_along_axis_update_axis2", _add3("add_scatter_along_axis", axis=2, mode="UPDATE"),
        {"c": rand(2, 3, 4, seed=30), "i": f32(np.random.default_rng(31).integers(-4, 4, (2, 3, 1))),
         "u": rand(2, 3, 1, seed=32)}, scatter_along_axis_ref("UPDATE", 2), nd=True))
    return cases


CASES = GATHER_ND + _scatter_cases() + _scatter_nd_cases() + _scatter_along_axis_cases()

test_cases = case_test(CASES)


def test_cases_cover_every_kind_and_mode():
    kinds = set().union(*(c.kinds() for c in CASES))
    assert {"gatherND", "scatter", "scatterND", "scatterAlongAxis"} <= kinds
    modes = {(layer.WhichOneof("layer"), getattr(layer, layer.WhichOneof("layer")).mode)
             for c in CASES for layer in c.builder().nn_spec.layers if layer.WhichOneof("layer") != "gatherND"}
    assert modes == {(k, m) for k in ("scatter", "scatterND", "scatterAlongAxis") for m in range(7)}

REFERENCE = "numpy gather and scatter loops written from the proto's comments (every ScatterMode)"
