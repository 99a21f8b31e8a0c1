"""Band masks, cumSum, oneHot, argSort, reverseSeq, slidingWindows, whereNonZero and sequenceRepeat.

References follow the NeuralNetwork.proto comments, written with numpy (np.tril/np.triu, np.cumsum,
np.argsort(kind="stable"), np.argwhere, np.tile). The proto's own worked examples run as batch-1 cases
against the literal outputs printed there.
"""

from __future__ import annotations

import numpy as np
import pytest

import mlupdate
from tests.unit.test_layers_base import Case, builder, case_test, rand, save

F32 = np.float32


# -- numpy references ----------------------------------------------------------------------------------


def band_ref(x: np.ndarray, lower: int, upper: int) -> np.ndarray:
    """band(m, n) = (lower < 0 or m - n <= lower) and (upper < 0 or n - m <= upper), on the last two axes."""
    m = np.arange(x.shape[-2])[:, None]
    n = np.arange(x.shape[-1])[None, :]
    keep = ((lower < 0) | (m - n <= lower)) & ((upper < 0) | (n - m <= upper))
    return np.where(keep, x, 0).astype(F32)


def cumsum_ref(x: np.ndarray, axis: int, exclusive: bool, reverse: bool) -> np.ndarray:
    y = np.flip(x, axis) if reverse else x
    s = np.cumsum(y, axis=axis, dtype=np.float64)
    if exclusive:
        s = s - y  # the sum up to the previous entry
    return (np.flip(s, axis) if reverse else s).astype(F32)


def one_hot_ref(idx: np.ndarray, size: int, axis: int, on: float, off: float) -> np.ndarray:
    out = np.full((*idx.shape, size), off, F32)
    for pos in np.ndindex(idx.shape):
        k = int(idx[pos])
        if 0 <= k < size:
            out[(*pos, k)] = on
    return np.moveaxis(out, -1, axis)


def argsort_ref(x: np.ndarray, axis: int, descending: bool) -> np.ndarray:
    return np.argsort(-x if descending else x, axis=axis, kind="stable").astype(F32)


def reverse_seq_ref(x: np.ndarray, lengths: np.ndarray, batch_axis: int, seq_axis: int) -> np.ndarray:
    out = x.copy()
    xb, ob = np.moveaxis(x, (batch_axis, seq_axis), (0, 1)), np.moveaxis(out, (batch_axis, seq_axis), (0, 1))
    for b, n in enumerate(lengths.astype(int)):
        ob[b, :n] = xb[b, :n][::-1]
    return out


def windows_ref(x: np.ndarray, axis: int, size: int, step: int) -> np.ndarray:
    axis %= x.ndim
    count = (x.shape[axis] - size) // step + 1
    parts = [np.take(x, range(i * step, i * step + size), axis=axis) for i in range(count)]
    return np.stack(parts, axis=axis)


def nonzero_ref(x: np.ndarray) -> np.ndarray:
    return np.argwhere(x).astype(F32)


# -- cases ------------------------------------------------------------------------------------------------


def _one(fn, *args, **kw):
    """A builder callback adding one layer named ``l`` from ``x`` (or the given inputs) to ``out``."""
    return lambda b: getattr(b, fn)("l", *args, **kw)


def ints(*shape: int, low: int, high: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(low, high, shape).astype(F32)


X2 = rand(4, 5, seed=1)
X3 = rand(2, 3, 4, seed=2)
X4 = rand(2, 2, 3, 5, seed=3)
TIES = np.array([[3, 1, 3, 2, 1, 2], [0, 0, 0, 0, 0, 0], [5, 4, 5, 4, 5, 4]], F32)

CASES = [
    # lowerTriangular / upperTriangular: np.tril / np.triu on the last two axes, k shifts the diagonal
    Case("tril_r2_k0", _one("add_lower_triangular", "x", "out"), {"x": X2}, np.tril, nd=True),
    Case("tril_r3_k1", _one("add_lower_triangular", "x", "out", k=1), {"x": X3}, lambda x: np.tril(x, 1), nd=True),
    Case("tril_r4_km2", _one("add_lower_triangular", "x", "out", k=-2), {"x": X4},
         lambda x: np.tril(x, -2), nd=True),
    Case("triu_r2_k0", _one("add_upper_triangular", "x", "out"), {"x": X2}, np.triu, nd=True),
    Case("triu_r3_km1", _one("add_upper_triangular", "x", "out", k=-1), {"x": X3},
         lambda x: np.triu(x, -1), nd=True),
    Case("triu_r4_k2", _one("add_upper_triangular", "x", "out", k=2), {"x": X4}, lambda x: np.triu(x, 2), nd=True),
    # matrixBandPart: the band formula of the proto; -1 keeps a whole triangle
    Case("band_r2_1_2", _one("add_matrix_band_part", "x", "out", num_lower=1, num_upper=2), {"x": X2},
         lambda x: band_ref(x, 1, 2), nd=True),
    Case("band_r3_all_0", _one("add_matrix_band_part", "x", "out", num_lower=-1, num_upper=0), {"x": X3},
         lambda x: band_ref(x, -1, 0), nd=True),
    Case("band_r4_0_all", _one("add_matrix_band_part", "x", "out", num_lower=0, num_upper=-1), {"x": X4},
         lambda x: band_ref(x, 0, -1), nd=True),
    Case("band_r4_default", _one("add_matrix_band_part", "x", "out"), {"x": X4}, lambda x: x, nd=True),
    # cumSum: axis (negative too), excludeFinalSum, reverse; the axis from a second input
    Case("cumsum_r1", _one("add_cumsum", ["x"], "out", axis=0), {"x": rand(7, seed=4)},
         lambda x: cumsum_ref(x, 0, False, False), nd=True),
    Case("cumsum_r3_ax1_excl", _one("add_cumsum", ["x"], "out", axis=1, exclusive=True), {"x": X3},
         lambda x: cumsum_ref(x, 1, True, False), nd=True),
    Case("cumsum_r3_axm1_rev", _one("add_cumsum", ["x"], "out", axis=-1, reverse=True), {"x": X3},
         lambda x: cumsum_ref(x, -1, False, True), nd=True),
    Case("cumsum_r4_axm4_excl_rev", _one("add_cumsum", ["x"], "out", axis=-4, exclusive=True, reverse=True),
         {"x": X4}, lambda x: cumsum_ref(x, 0, True, True), nd=True),
    Case("cumsum_excl_len1", _one("add_cumsum", ["x"], "out", axis=1, exclusive=True), {"x": rand(3, 1, seed=22)},
         lambda x: cumsum_ref(x, 1, True, False), nd=True),
    Case("cumsum_axis_input", _one("add_cumsum", ["x", "a"], "out", axis=0, exclusive=True),
         {"x": X3, "a": np.array([-2], F32)}, lambda x, a: cumsum_ref(x, -2, True, False), nd=True),
    Case("cumsum_axis_input_pos", _one("add_cumsum", ["x", "a"], "out", axis=-1, reverse=True),
         {"x": X4, "a": np.array([2], F32)}, lambda x, a: cumsum_ref(x, 2, False, True), nd=True),
    # oneHot: axis of the output (negative too); out-of-range and negative indices give all offValue
    Case("onehot_r1_last", _one("add_one_hot", ["x"], "out", one_hot_vector_size=5, axis=-1),
         {"x": np.array([2, 0, 4, 1, -1, 7], F32)}, lambda x: one_hot_ref(x, 5, -1, 1.0, 0.0), nd=True),
    Case("onehot_r1_axis0", _one("add_one_hot", ["x"], "out", one_hot_vector_size=4, axis=0, on_value=5.0,
                                 off_value=-1.0),
         {"x": np.array([2, 0, 3, 9], F32)}, lambda x: one_hot_ref(x, 4, 0, 5.0, -1.0), nd=True),
    Case("onehot_r2_axis1", _one("add_one_hot", ["x"], "out", one_hot_vector_size=3, axis=1, on_value=2.0,
                                 off_value=0.5),
         {"x": ints(2, 4, low=-1, high=4, seed=5)}, lambda x: one_hot_ref(x, 3, 1, 2.0, 0.5), nd=True),
    Case("onehot_r3_axism2", _one("add_one_hot", ["x"], "out", one_hot_vector_size=4, axis=-2),
         {"x": ints(2, 3, 2, low=0, high=4, seed=6)}, lambda x: one_hot_ref(x, 4, -2, 1.0, 0.0), nd=True),
    Case("onehot_size_input", _one("add_one_hot", ["x", "n"], "out", one_hot_vector_size=2, axis=-1,
                                   on_value=3.0, off_value=-2.0),
         {"x": np.array([[0, 5], [3, 1]], F32), "n": np.array([6], F32)},
         lambda x, n: one_hot_ref(x, 6, -1, 3.0, -2.0), nd=True),
    # argSort: float indices; ties keep their input order (Core ML documents no order for them)
    Case("argsort_r1", _one("add_argsort", "x", "out", axis=0), {"x": rand(8, seed=7)},
         lambda x: argsort_ref(x, 0, False), nd=True),
    Case("argsort_r2_ties", _one("add_argsort", "x", "out", axis=1), {"x": TIES},
         lambda x: argsort_ref(x, 1, False), nd=True),
    Case("argsort_r2_ties_desc", _one("add_argsort", "x", "out", axis=1, descending=True), {"x": TIES},
         lambda x: argsort_ref(x, 1, True), nd=True),
    Case("argsort_r3_ax0_desc", _one("add_argsort", "x", "out", axis=0, descending=True),
         {"x": ints(4, 2, 3, low=0, high=3, seed=8)}, lambda x: argsort_ref(x, 0, True), nd=True),
    Case("argsort_r4_ax2", _one("add_argsort", "x", "out", axis=2), {"x": X4},
         lambda x: argsort_ref(x, 2, False), nd=True),
    # reverseSeq: per slice along batchAxis, reverse the first lengths[b] entries of sequenceAxis
    Case("revseq_r2", _one("add_reverse_sequence", ["x", "n"], "out", batch_axis=0, seq_axis=1),
         {"x": rand(3, 5, seed=9), "n": np.array([3, 0, 5], F32)},
         lambda x, n: reverse_seq_ref(x, n, 0, 1), nd=True),
    Case("revseq_r3_neg", _one("add_reverse_sequence", ["x", "n"], "out", batch_axis=-3, seq_axis=-1),
         {"x": X3, "n": np.array([2, 4], F32)}, lambda x, n: reverse_seq_ref(x, n, 0, 2), nd=True),
    Case("revseq_r4_b1_s2", _one("add_reverse_sequence", ["x", "n"], "out", batch_axis=1, seq_axis=2),
         {"x": X4, "n": np.array([1, 3], F32)}, lambda x, n: reverse_seq_ref(x, n, 1, 2), nd=True),
    # slidingWindows: [.., L, ..] -> [.., M, W, ..], M = (L - W) // step + 1
    Case("windows_r1", _one("add_sliding_windows", "x", "out", axis=0, window_size=3), {"x": rand(6, seed=10)},
         lambda x: windows_ref(x, 0, 3, 1), nd=True),
    Case("windows_r3_step2", _one("add_sliding_windows", "x", "out", axis=1, window_size=2, step=2),
         {"x": rand(2, 7, 3, seed=11)}, lambda x: windows_ref(x, 1, 2, 2), nd=True),
    Case("windows_r4_neg", _one("add_sliding_windows", "x", "out", axis=-1, window_size=4, step=3),
         {"x": rand(2, 1, 3, 11, seed=12)}, lambda x: windows_ref(x, -1, 4, 3), nd=True),
    Case("windows_r2_full", _one("add_sliding_windows", "x", "out", axis=-2, window_size=4, step=5),
         {"x": X2}, lambda x: windows_ref(x, 0, 4, 5), nd=True),
    # whereNonZero: [K, R] indices in row-major order; K depends on the values
    Case("nonzero_r1", _one("add_where_nonzero", "x", "out"), {"x": np.array([0, 1, 0, 2, 0, -3], F32)},
         nonzero_ref, nd=True),
    Case("nonzero_r3", _one("add_where_nonzero", "x", "out"), {"x": ints(2, 3, 4, low=-1, high=2, seed=13)},
         nonzero_ref, nd=True),
    Case("nonzero_all_zero", _one("add_where_nonzero", "x", "out"), {"x": np.zeros((2, 3), F32)},
         nonzero_ref, nd=True),
    # sequenceRepeat (legacy): [Seq, 1, C, H, W] -> [n * Seq, 1, C, H, W], the sequence tiled n times
    Case("seqrep_vector", _one("add_sequence_repeat", 3, "x", "out"), {"x": rand(4, seed=14)},
         lambda x: np.tile(x.reshape(1, 1, 4, 1, 1), (3, 1, 1, 1, 1))),
    Case("seqrep_chw", _one("add_sequence_repeat", 2, "x", "out"), {"x": X3},
         lambda x: np.tile(x[None, None], (2, 1, 1, 1, 1))),
    Case("seqrep_seq3", _one("add_sequence_repeat", 2, "x", "out"), {"x": rand(3, 1, 2, 1, 2, seed=15)},
         lambda x: np.tile(x, (2, 1, 1, 1, 1))),
    Case("seqrep_chained", lambda b: (b.add_sequence_repeat("r1", 2, "x", "mid"),
                                      b.add_sequence_repeat("r2", 3, "mid", "out")),
         {"x": rand(2, 1, 3, 1, 1, seed=16)}, lambda x: np.tile(x, (6, 1, 1, 1, 1))),
    Case("seqrep_zero_is_one", _one("add_sequence_repeat", 0, "x", "out"), {"x": X3}, lambda x: x),
    # sequenceRepeat in an ND network: Core ML axis -5 of a rank >= 5 input
    Case("seqrep_nd_r5", _one("add_sequence_repeat", 2, "x", "out"), {"x": rand(2, 1, 3, 1, 2, seed=17)},
         lambda x: np.tile(x, (2, 1, 1, 1, 1)), nd=True),
    Case("seqrep_nd_r6", _one("add_sequence_repeat", 3, "x", "out"), {"x": rand(2, 2, 1, 2, 1, 1, seed=18)},
         lambda x: np.tile(x, (1, 3, 1, 1, 1, 1)), nd=True),
]

# the worked examples of NeuralNetwork.proto, one example each, against the printed outputs
DOC_CASES = [
    Case(f"doc_cumsum_excl{e:d}_rev{r:d}", _one("add_cumsum", ["x"], "out", axis=0, exclusive=e, reverse=r),
         {"x": np.array([4, 6, 7], F32)}, lambda x, w=want: np.array(w, F32), nd=True, batch=1)
    for e, r, want in [(False, False, [4, 10, 17]), (True, False, [0, 4, 10]), (False, True, [17, 13, 7]),
                       (True, True, [13, 7, 0])]
] + [
    Case(f"doc_onehot_{i}", _one("add_one_hot", ["x"], "out", one_hot_vector_size=4, axis=-1, on_value=5.0,
                                 off_value=-1.0),
         {"x": np.array(v, F32)}, lambda x, w=want: np.array(w, F32), nd=True, batch=1)
    for i, (v, want) in enumerate([([2, 0], [[-1, -1, 5, -1], [5, -1, -1, -1]]),
                                   ([2, -1], [[-1, -1, 5, -1], [-1, -1, -1, -1]])])
] + [
    Case("doc_argsort_r1", lambda b: (b.add_argsort("a", "x", "out", axis=0),
                                      b.add_argsort("d", "x", "desc", axis=0, descending=True)),
         {"x": np.array([3.1, 5.4, 32.9, 3.2, 77.0], F32)},
         lambda x: (np.array([0, 3, 1, 2, 4], F32), np.array([4, 2, 1, 3, 0], F32)), nd=True,
         outputs=("out", "desc"), batch=1),
    Case("doc_argsort_r2", lambda b: (b.add_argsort("a", "x", "out", axis=1),
                                      b.add_argsort("d", "x", "desc", axis=1, descending=True)),
         {"x": np.array([[3, 5, 32], [3, 77, 6]], F32)},
         lambda x: (np.array([[0, 1, 2], [0, 2, 1]], F32), np.array([[2, 1, 0], [1, 2, 0]], F32)), nd=True,
         outputs=("out", "desc"), batch=1),
    Case("doc_revseq_r2", _one("add_reverse_sequence", ["x", "n"], "out", batch_axis=0, seq_axis=1),
         {"x": np.arange(8, dtype=F32).reshape(2, 4), "n": np.array([3, 0], F32)},
         lambda x, n: np.array([[2, 1, 0, 3], [4, 5, 6, 7]], F32), nd=True, batch=1),
    Case("doc_revseq_r3", _one("add_reverse_sequence", ["x", "n"], "out", batch_axis=0, seq_axis=1),
         {"x": np.arange(12, dtype=F32).reshape(2, 3, 2), "n": np.array([2, 3], F32)},
         lambda x, n: np.array([[[2, 3], [0, 1], [4, 5]], [[10, 11], [8, 9], [6, 7]]], F32), nd=True, batch=1),
    Case("doc_windows_r3", _one("add_sliding_windows", "x", "out", axis=1, window_size=3, step=2),
         {"x": rand(2, 7, 3, seed=19)}, lambda x: np.stack([x[:, 0:3], x[:, 2:5], x[:, 4:7]], axis=1),
         nd=True, batch=1),
    # the proto prints "shape = (7,1)" for the second example, but the rows it lists have 2 entries
    Case("doc_nonzero_r1", _one("add_where_nonzero", "x", "out"), {"x": np.array([0, 1, 0, 2], F32)},
         lambda x: np.array([[1], [3]], F32), nd=True, batch=1),
    Case("doc_nonzero_r2", _one("add_where_nonzero", "x", "out"), {"x": np.array([[1, 2, 1], [0, 2, 2], [2, 1, 0]],
                                                                                F32)},
         lambda x: np.array([[0, 0], [0, 1], [0, 2], [1, 1], [1, 2], [2, 0], [2, 1]], F32), nd=True, batch=1),
]

test_cases = case_test(CASES)
test_doc_examples = case_test(DOC_CASES)


# -- per-example values, errors --------------------------------------------------------------------------


@pytest.mark.parametrize("executor", ["torch", "onnxruntime"])
def test_cumsum_axis_input_differs_per_example(tmp_path, executor):
    b = builder([("x", (2, 3, 4)), ("a", (1,))], ("out",), nd=True)
    b.add_cumsum("l", ["x", "a"], "out", exclusive=True, reverse=True)
    model = mlupdate.load(save(b, tmp_path), executor=executor)
    examples = [{"x": rand(2, 3, 4, seed=20 + i), "a": np.array([a], F32)} for i, a in enumerate([0, -1, 1, -3])]
    for ex, res in zip(examples, model.predict_batch(examples), strict=True):
        want = cumsum_ref(ex["x"], int(ex["a"][0]), True, True)
        np.testing.assert_allclose(res["out"], want, atol=1e-5)


@pytest.mark.parametrize("executor", ["torch", "onnxruntime"])
def test_one_hot_size_input_differs_per_example(tmp_path, executor):
    b = builder([("x", (3,)), ("n", (1,))], ("out",), nd=True)
    b.add_one_hot("l", ["x", "n"], "out", axis=0)
    model = mlupdate.load(save(b, tmp_path), executor=executor)
    examples = [{"x": np.array([0, 2, 4], F32), "n": np.array([n], F32)} for n in (3, 5)]
    got = model.predict_batch(examples)
    for ex, res in zip(examples, got, strict=True):
        np.testing.assert_array_equal(res["out"], one_hot_ref(ex["x"], int(ex["n"][0]), 0, 1.0, 0.0))


def test_where_nonzero_counts_differ_per_example(tmp_path):
    b = builder([("x", (2, 3))], ("out",), nd=True)
    b.add_where_nonzero("l", "x", "out")
    model = mlupdate.load(save(b, tmp_path))
    examples = [{"x": np.eye(2, 3, dtype=F32)}, {"x": np.ones((2, 3), F32)}, {"x": np.zeros((2, 3), F32)}]
    got = model.predict_batch(examples)
    assert [r["out"].shape for r in got] == [(2, 2), (6, 2), (0, 2)]
    for ex, res in zip(examples, got, strict=True):
        np.testing.assert_array_equal(res["out"], nonzero_ref(ex["x"]))


def _spec_error(tmp_path, add, shape=(3, 4)):
    b = builder([("x", shape)], ("out",), nd=True)
    add(b)
    path = tmp_path / "bad.mlmodel"
    path.write_bytes(b.spec.SerializeToString())
    with pytest.raises(mlupdate.SpecError, match="'l'"):
        mlupdate.load(path)


def test_argsort_negative_axis_is_refused(tmp_path):
    # Core ML's validator: "Value of 'axis' is negative for layer of type 'ArgSort' ... It must be positive."
    _spec_error(tmp_path, lambda b: b.add_argsort("l", "x", "out", axis=-1))


def test_sliding_windows_zero_size_and_step_are_refused(tmp_path):
    _spec_error(tmp_path, lambda b: b.add_sliding_windows("l", "x", "out", axis=0, window_size=0))
    _spec_error(tmp_path, lambda b: b.add_sliding_windows("l", "x", "out", axis=0, window_size=2, step=0))


def test_one_hot_without_any_size_is_refused(tmp_path):
    _spec_error(tmp_path, lambda b: b.add_one_hot("l", ["x"], "out", axis=-1))


@pytest.mark.parametrize(("add", "shape", "inputs"), [
    (lambda b: b.add_sliding_windows("l", "x", "out", axis=1, window_size=5), (3, 4), {}),
    (lambda b: b.add_lower_triangular("l", "x", "out"), (4,), {}),
    (lambda b: b.add_cumsum("l", ["x", "a"], "out"), (3, 4), {"a": np.array([2], F32)}),
    (lambda b: b.add_reverse_sequence("l", ["x", "a"], "out", batch_axis=0, seq_axis=1), (3, 4),
     {"a": np.array([1, 2], F32)}),
], ids=["window_too_long", "tril_rank1", "cumsum_axis_out_of_range", "revseq_length_count"])
def test_bad_inputs_name_the_layer(tmp_path, add, shape, inputs):
    b = builder([("x", shape), *((k, v.shape) for k, v in inputs.items())], ("out",), nd=True)
    add(b)
    with pytest.raises(mlupdate.LayerError, match="'l'"):
        model = mlupdate.load(save(b, tmp_path), executor="torch")
        model.predict({"x": rand(*shape, seed=21), **inputs})

REFERENCE = "numpy tril / triu / cumsum / argsort / one-hot and the proto's worked examples"
