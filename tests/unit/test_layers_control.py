"""Control flow: branch, loop (for, while, while with a bound, count from an input), loopBreak, loopContinue.

Nested networks are built with coremltools' NeuralNetworkBuilder over the layer's ``ifBranch`` /
``elseBranch`` / ``conditionNetwork`` / ``bodyNetwork`` messages. References are plain Python/numpy
control flow written from NeuralNetwork.proto's pseudo-code. Control-flow networks are not
exportable, so they run on torch (also when onnxruntime is asked for).
"""

from __future__ import annotations

import numpy as np
import pytest
from coremltools.models.neural_network import NeuralNetworkBuilder

import mlupdate
from mlupdate.layers import control
from tests.unit.test_layers_base import Case, builder, case_test, save

REFERENCE = ("numpy loops and if/else written from NeuralNetwork.proto's Branch/Loop pseudo-code "
             "(for, while, while with maxLoopIterations, count from the input, break, continue)")
TORCH = ("torch",)


def nested(net, nd=True):
    """A builder adding layers to the nested ``NeuralNetwork`` message ``net``."""
    return NeuralNetworkBuilder(nn_spec=net, disable_rank5_shape_mapping=nd)


def double(b, blob="acc", tag=""):
    """``blob = blob + blob`` (written back with a copy, the one layer allowed to overwrite a blob)."""
    b.add_elementwise(f"dbl{tag}", [blob, blob], f"twice{tag}", "ADD")
    b.add_copy(f"back{tag}", f"twice{tag}", blob)


def start(b, src="x", blob="acc"):
    b.add_copy("init", src, blob)


# -- loops ---------------------------------------------------------------------------------------


def for_loop(times):
    def add(b):
        start(b)
        layer = b.add_loop("loop", max_iterations=times)
        double(nested(layer.loop.bodyNetwork))

    return add


def counted(max_iterations=None):
    def add(b):
        start(b)
        layer = b.add_loop("loop", input_name="k", max_iterations=max_iterations)
        double(nested(layer.loop.bodyNetwork))

    return add


def while_loop(limit, max_iterations=None):
    """``while acc < limit: acc *= 2`` (optionally also bounded by ``max_iterations``)."""

    def add(b):
        start(b)
        layer = b.add_loop("loop", condition="c", max_iterations=max_iterations)
        nested(layer.loop.conditionNetwork).add_less_than("lt", ["acc"], "c", alpha=limit)
        double(nested(layer.loop.bodyNetwork))

    return add


def ref_while(x, limit, bound=None):
    acc, it = x.copy(), 0
    while acc[0] < limit and (bound is None or it < bound):
        acc, it = acc * 2, it + 1
    return acc, np.array([float(acc[0] < limit)], np.float32)


def with_break(b):
    """Up to 10 doublings; once acc > 20: acc += x, break (in a branch; its write before the break stays)."""
    start(b)
    layer = b.add_loop("loop", max_iterations=10)
    body = nested(layer.loop.bodyNetwork)
    double(body)
    body.add_greater_than("gt", ["acc"], "big", alpha=20.0)
    br = body.add_branch("br", "big")
    ifb = nested(br.branch.ifBranch)
    ifb.add_elementwise("plus", ["acc", "x"], "p", "ADD")
    ifb.add_copy("p_back", "p", "acc")
    ifb.add_loop_break("stop")
    body.add_elementwise("never", ["acc", "acc"], "n", "ADD")  # skipped after the break
    body.add_copy("n_back", "n", "acc")


def ref_break(x):
    acc = x.copy()
    for _ in range(10):
        acc = acc * 2
        if acc[0] > 20:
            acc = acc + x
            break
        acc = acc * 2
    return acc


def with_continue(b):
    """5 iterations: i += 1; if i > 3: continue; acc += i (the constant 1 is loaded in the body)."""
    start(b)
    b.add_load_constant_nd("zero", "i", np.zeros(1, np.float32), (1,))
    layer = b.add_loop("loop", max_iterations=5)
    body = nested(layer.loop.bodyNetwork)
    body.add_load_constant_nd("one", "one", np.ones(1, np.float32), (1,))
    body.add_add_broadcastable("inc", ["i", "one"], "i1")
    body.add_copy("i_back", "i1", "i")
    body.add_greater_than("gt", ["i"], "late", alpha=3.0)
    br = body.add_branch("br", "late")
    nested(br.branch.ifBranch).add_loop_continue("skip")
    body.add_add_broadcastable("sum", ["acc", "i"], "acc1")
    body.add_copy("acc_back", "acc1", "acc")


def ref_continue(x):
    acc, i = x.copy(), 0
    for _ in range(5):
        i += 1
        if i > 3:
            continue
        acc = acc + i
    return acc, np.array([5.0], np.float32)


def halve_or_double(b):
    """4 iterations of: if acc > 1: acc *= 0.5 else: acc *= 2 (a branch writing acc both ways)."""
    start(b)
    layer = b.add_loop("loop", max_iterations=4)
    body = nested(layer.loop.bodyNetwork)
    body.add_greater_than("gt", ["acc"], "c", alpha=1.0)
    br = body.add_branch("br", "c")
    yes = nested(br.branch.ifBranch)
    yes.add_multiply_broadcastable("half", ["acc", "half"], "h")
    yes.add_copy("h_back", "h", "acc")
    double(nested(br.branch.elseBranch))


def ref_halve_or_double(x, half):
    acc = x.copy()
    for _ in range(4):
        acc = acc * half if acc[0] > 1 else acc * 2
    return acc


def nested_loops(b):
    """3 outer iterations, each an inner loop of up to 4 doublings that breaks once acc > 30."""
    start(b)
    outer = b.add_loop("outer", max_iterations=3)
    ob = nested(outer.loop.bodyNetwork)
    ob.add_elementwise("plus", ["acc", "x"], "p", "ADD")
    ob.add_copy("p_back", "p", "acc")
    inner = ob.add_loop("inner", max_iterations=4)
    ib = nested(inner.loop.bodyNetwork)
    double(ib)
    ib.add_greater_than("gt", ["acc"], "big", alpha=30.0)
    br = ib.add_branch("br", "big")
    nested(br.branch.ifBranch).add_loop_break("stop")


def ref_nested_loops(x):
    acc = x.copy()
    for _ in range(3):
        acc = acc + x
        for _ in range(4):
            acc = acc * 2
            if acc[0] > 30:
                break
    return acc


# -- branches ------------------------------------------------------------------------------------


def branch_on_sum(b):
    """if sum(x) > 0: out = x + x else: out = x * x."""
    b.add_reduce_sum("sum", "x", "s", axes=[0], keepdims=True)
    b.add_greater_than("gt", ["s"], "c", alpha=0.0)
    br = b.add_branch("br", "c")
    nested(br.branch.ifBranch).add_elementwise("twice", ["x", "x"], "out", "ADD")
    nested(br.branch.elseBranch).add_elementwise("square", ["x", "x"], "out", "MULTIPLY")


def ref_branch_on_sum(x):
    return x + x if x.sum() > 0 else x * x


def branch_without_else(b):
    """out = x; if c: out = -x (an if branch overwriting an earlier blob; no else branch)."""
    b.add_copy("init", "x", "out")
    br = b.add_branch("br", "c")
    ifb = nested(br.branch.ifBranch)
    ifb.add_elementwise("neg", ["x"], "negx", "MULTIPLY", alpha=-1.0)
    ifb.add_copy("back", "negx", "out")


def legacy_loop(b):
    start(b)
    layer = b.add_loop("loop", max_iterations=2)
    double(nested(layer.loop.bodyNetwork, nd=False))


X3 = np.array([0.5, -1.25, 2.0], np.float32)
POS = np.array([1.5, -0.5, 2.0, 0.25], np.float32)
NEG = np.array([-1.5, 0.5, -2.0, 0.25], np.float32)
ONE = np.array([0.7], np.float32)
HALF = np.array([0.5], np.float32)

CASES = [
    Case("loop-for-3", for_loop(3), {"x": X3}, lambda x: x * 8, nd=True, outputs=("acc",), executors=TORCH),
    Case("loop-for-1", for_loop(1), {"x": X3}, lambda x: x * 2, nd=True, outputs=("acc",), executors=TORCH),
    Case("loop-count-input", counted(), {"x": X3, "k": np.array([2.0], np.float32)},
         lambda x, k: x * 2 ** int(k[0]), nd=True, outputs=("acc",), executors=TORCH),
    Case("loop-count-input-overrides-max", counted(5), {"x": X3, "k": np.array([1.0], np.float32)},
         lambda x, k: x * 2 ** int(k[0]), nd=True, outputs=("acc",), executors=TORCH),
    Case("loop-count-input-zero", counted(5), {"x": X3, "k": np.array([0.0], np.float32)},
         lambda x, k: x.copy(), nd=True, outputs=("acc",), executors=TORCH),
    Case("loop-while", while_loop(10.0), {"x": ONE}, lambda x: ref_while(x, 10.0), nd=True,
         outputs=("acc", "c"), executors=TORCH),
    Case("loop-while-false-at-once", while_loop(0.5), {"x": ONE}, lambda x: ref_while(x, 0.5), nd=True,
         outputs=("acc", "c"), executors=TORCH),
    Case("loop-while-bounded", while_loop(100.0, 2), {"x": ONE}, lambda x: ref_while(x, 100.0, 2), nd=True,
         outputs=("acc", "c"), executors=TORCH),
    Case("loop-break", with_break, {"x": ONE}, ref_break, nd=True, outputs=("acc",), executors=TORCH),
    Case("loop-continue", with_continue, {"x": X3}, ref_continue, nd=True, outputs=("acc", "i"), executors=TORCH),
    Case("loop-branch-in-body", halve_or_double, {"x": np.array([3.0], np.float32), "half": HALF},
         ref_halve_or_double, nd=True, outputs=("acc",), executors=TORCH),
    Case("loop-nested-loops", nested_loops, {"x": ONE}, ref_nested_loops, nd=True, outputs=("acc",),
         executors=TORCH),
    Case("branch-if", branch_on_sum, {"x": POS}, ref_branch_on_sum, nd=True, executors=TORCH),
    Case("branch-else", branch_on_sum, {"x": NEG}, ref_branch_on_sum, nd=True, executors=TORCH),
    Case("branch-no-else-taken", branch_without_else, {"x": X3, "c": np.array([1.0], np.float32)},
         lambda x, c: -x, nd=True, executors=TORCH),
    Case("branch-no-else-skipped", branch_without_else, {"x": X3, "c": np.array([0.0], np.float32)},
         lambda x, c: x.copy(), nd=True, executors=TORCH),
    Case("loop-legacy", legacy_loop, {"x": np.arange(6, dtype=np.float32).reshape(2, 1, 3)}, lambda x: x * 4,
         outputs=("acc",), executors=TORCH),
]

test_cases = case_test(CASES)


# -- executors, visibility and refusals ------------------------------------------------------------


def test_onnxruntime_request_runs_on_torch(tmp_path):
    case = next(c for c in CASES if c.id == "loop-for-3")
    model = mlupdate.load(save(case.builder(), tmp_path), executor="onnxruntime")
    got = model.predict({"x": X3})["acc"]
    np.testing.assert_allclose(got, X3 * 8, rtol=1e-6)
    assert model.executor == "torch"


def test_examples_of_a_batch_take_their_own_branch(tmp_path):
    case = next(c for c in CASES if c.id == "branch-if")
    model = mlupdate.load(save(case.builder(), tmp_path), executor="torch")
    got = model.predict_batch([{"x": POS}, {"x": NEG}, {"x": POS}])
    for ex, res in zip([POS, NEG, POS], got, strict=True):
        np.testing.assert_allclose(res["out"], ref_branch_on_sum(ex), rtol=1e-6)


def load(tmp_path, add, inputs, outputs=("out",)):
    b = builder(list(inputs.items()), outputs, nd=True)
    add(b)
    return mlupdate.load(save(b, tmp_path), executor="torch")


def test_break_outside_a_loop_body_is_a_spec_error(tmp_path):
    def add(b):
        b.add_copy("cp", "x", "out")
        b.add_loop_break("stop")

    with pytest.raises(mlupdate.SpecError, match="stop"):
        load(tmp_path, add, {"x": (1,)})


def test_continue_in_a_branch_outside_loops_is_a_spec_error(tmp_path):
    def add(b):
        b.add_copy("cp", "x", "out")
        br = b.add_branch("br", "x")
        nested(br.branch.ifBranch).add_loop_continue("skip")

    with pytest.raises(mlupdate.SpecError, match="skip"):
        load(tmp_path, add, {"x": (1,)})


def test_loop_without_bound_or_condition_is_a_spec_error(tmp_path):
    def add(b):
        start(b, blob="out")
        double(nested(b.add_loop("loop").loop.bodyNetwork), blob="out")

    with pytest.raises(mlupdate.SpecError, match="maxLoopIterations 0"):
        load(tmp_path, add, {"x": (1,)})


def test_condition_var_the_condition_network_does_not_write_is_a_spec_error(tmp_path):
    def add(b):
        start(b, blob="out")
        layer = b.add_loop("loop", condition="nope")
        nested(layer.loop.conditionNetwork).add_less_than("lt", ["out"], "c", alpha=3.0)
        double(nested(layer.loop.bodyNetwork), blob="out")

    with pytest.raises(mlupdate.SpecError, match="nope"):
        load(tmp_path, add, {"x": (1,)})


def test_blob_made_only_in_the_if_branch_is_not_visible_after_it(tmp_path):
    def add(b):
        br = b.add_branch("br", "x")
        nested(br.branch.ifBranch).add_copy("cp", "x", "made")
        b.add_copy("after", "made", "out")

    with pytest.raises(mlupdate.SpecError, match="made"):
        load(tmp_path, add, {"x": (1,)})


def test_body_blob_of_a_while_loop_is_not_visible_after_it(tmp_path):
    def add(b):
        start(b)
        layer = b.add_loop("loop", condition="c")
        nested(layer.loop.conditionNetwork).add_less_than("lt", ["acc"], "c", alpha=3.0)
        double(nested(layer.loop.bodyNetwork))  # "twice" is new in the body: the body may not run
        b.add_copy("after", "twice", "out")

    with pytest.raises(mlupdate.SpecError, match="twice"):
        load(tmp_path, add, {"x": (1,)})


def test_body_blob_of_a_for_loop_is_visible_after_it(tmp_path):
    def add(b):
        start(b)
        double(nested(b.add_loop("loop", max_iterations=2).loop.bodyNetwork))
        b.add_copy("after", "twice", "out")

    got = load(tmp_path, add, {"x": (1,)}).predict({"x": ONE})["out"]
    np.testing.assert_allclose(got, ONE * 4, rtol=1e-6)


def test_condition_with_several_values_fails_naming_the_layer(tmp_path):
    def add(b):
        br = b.add_branch("my_branch", "x")
        nested(br.branch.ifBranch).add_copy("cp", "x", "out")
        nested(br.branch.elseBranch).add_copy("cp2", "x", "out")

    model = load(tmp_path, add, {"x": (3,)})
    with pytest.raises(mlupdate.LayerError, match="my_branch"):
        model.predict({"x": X3})


def test_endless_while_loop_stops_with_a_layer_error(tmp_path, monkeypatch):
    monkeypatch.setattr(control, "MAX_ITERATIONS", 50)
    model = load(tmp_path, while_loop(10.0), {"x": (1,)}, outputs=("acc",))
    np.testing.assert_allclose(model.predict({"x": ONE})["acc"], ref_while(ONE, 10.0)[0], rtol=1e-6)
    with pytest.raises(mlupdate.LayerError, match="'loop'"):
        model.predict({"x": np.zeros(1, np.float32)})  # 0 doubled stays below 10 for ever


def test_iteration_cap_applies_to_counted_loops_too(tmp_path, monkeypatch):
    monkeypatch.setattr(control, "MAX_ITERATIONS", 50)
    model = load(tmp_path, counted(), {"x": (1,), "k": (1,)}, outputs=("acc",))
    small = np.full(1, 1e-30, np.float32)
    np.testing.assert_allclose(model.predict({"x": small, "k": np.array([50.0], np.float32)})["acc"],
                               small * 2.0**50, rtol=1e-6)
    with pytest.raises(mlupdate.LayerError, match="50 iterations"):
        model.predict({"x": small, "k": np.array([51.0], np.float32)})
