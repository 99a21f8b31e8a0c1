"""ML Programs end to end: programs built with coremltools' MIL builder, saved as real packages, run by mlupdate.

Expected values are numpy written from the ops' documented semantics; fp16 values follow numpy's float16
arithmetic (each result rounded to fp16), which is what the program's declared types ask for.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import mlupdate
from mlupdate.errors import FeatureError, LayerError, SpecError, UnsupportedModelError
from mlupdate.kinds.summary import summarize
from mlupdate.spec.io import import_coremltools, read_spec, write_spec
from tests.ops.mlprogram import run_program, save_program


def _mb():
    from coremltools.converters.mil.mil import Builder as mb

    return mb


RNG = np.random.default_rng(17)


@pytest.mark.parametrize("executor", ["onnxruntime", "torch"])
def test_fp16_values_are_rounded_after_every_op(tmp_path: Path, executor: str) -> None:
    x, y, z = (RNG.uniform(-4, 4, (3, 5)).astype(np.float16) for _ in range(3))

    def build(x, y, z):
        mb = _mb()
        return mb.add(x=mb.mul(x=x, y=y), y=z, name="out")

    out = run_program(build, {"x": x, "y": y, "z": z}, tmp_path, opset=16, fp16=True, executor=executor)["out"]
    assert out.dtype == np.float16 and out.shape == (3, 5)
    np.testing.assert_array_equal(out, (x * y) + z)  # numpy: fp16 * fp16 -> fp16, then + -> fp16
    assert not np.array_equal(out.astype(np.float32), x.astype(np.float32) * y + z)  # fp32 would differ


def test_fp16_overflow_is_infinity(tmp_path: Path) -> None:
    x = np.array([[60000.0, 1.0]], np.float16)

    def build(x):
        return _mb().mul(x=x, y=np.float16(2.0), name="out")

    out = run_program(build, {"x": x}, tmp_path, opset=16, fp16=True)["out"]
    np.testing.assert_array_equal(out, np.array([[np.inf, 2.0]], np.float16))


def test_int32_inputs_and_outputs_keep_their_type(tmp_path: Path) -> None:
    a = RNG.integers(-(1 << 30), 1 << 30, (2, 4)).astype(np.int32)
    b = RNG.integers(-100, 100, (2, 4)).astype(np.int32)

    def build(a, b):
        return _mb().sub(x=a, y=b, name="out")

    out = run_program(build, {"a": a, "b": b}, tmp_path)["out"]
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out, a - b)  # exact beyond float32's 24 bits


def test_fp32_program_matches_numpy(tmp_path: Path) -> None:
    x = RNG.normal(size=(2, 3, 4)).astype(np.float32)

    def build(x):
        mb = _mb()
        return mb.reduce_sum(x=mb.exp(x=mb.sin(x=x)), axes=[-1], keep_dims=False, name="out")

    out = run_program(build, {"x": x}, tmp_path)["out"]
    np.testing.assert_allclose(out, np.exp(np.sin(x)).sum(-1), rtol=1e-6)


def test_torch_module_converted_fp32_and_fp16_matches_pytorch(tmp_path: Path) -> None:
    import torch

    ct = import_coremltools()

    class Net(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.softmax(torch.sin(x) * 3 + x.mean(dim=1, keepdim=True), dim=1)

    x = torch.randn(2, 6)
    want = Net()(x).numpy()
    traced = torch.jit.trace(Net().eval(), x)
    for precision, tol in ((ct.precision.FLOAT32, 1e-6), (ct.precision.FLOAT16, 4e-3)):
        path = tmp_path / f"{precision.value}.mlpackage"
        ct.convert(traced, inputs=[ct.TensorType(name="x", shape=(2, 6))], convert_to="mlprogram",
                   compute_precision=precision).save(str(path))
        model = mlupdate.load(path)
        (got,) = model.predict({"x": x.numpy()}).values()
        np.testing.assert_allclose(got, want, atol=tol, rtol=tol)
        if precision == ct.precision.FLOAT16:
            assert not np.allclose(got, want, atol=1e-6, rtol=1e-6)  # the program's fp16 casts are honoured


def test_cond_runs_the_branch_the_predicate_picks(tmp_path: Path) -> None:
    def build(x):
        mb = _mb()
        pred = mb.greater(x=mb.reduce_sum(x=x), y=np.float32(0))
        return mb.cond(pred=pred, _true_fn=lambda: mb.mul(x=x, y=np.float32(2)),
                       _false_fn=lambda: mb.sub(x=x, y=np.float32(1)), name="out")

    path = save_program(build, {"x": ((2, 2), np.float32)}, tmp_path / "cond.mlpackage")
    model = mlupdate.load(path)
    assert model.executor == "torch"  # an ONNX export would fix the branch
    pos = np.abs(RNG.normal(size=(2, 2))).astype(np.float32)
    (out,) = model.predict({"x": pos}).values()
    np.testing.assert_allclose(out, pos * 2)
    (out,) = model.predict({"x": -pos}).values()
    np.testing.assert_allclose(out, -pos - 1)


def test_while_loop_runs_until_its_condition_fails(tmp_path: Path) -> None:
    def build(x, n):
        mb = _mb()

        def cond(i, acc):
            return mb.less(x=i, y=mb.reduce_sum(x=n))

        def body(i, acc):
            return mb.add(x=i, y=np.int32(1)), mb.mul(x=acc, y=np.float32(2))

        _, acc = mb.while_loop(_cond=cond, _body=body, loop_vars=(np.int32(0), x))
        return mb.identity(x=acc, name="out")

    x = RNG.normal(size=(3,)).astype(np.float32)
    for n in (0, 1, 5):
        out = run_program(build, {"x": x, "n": np.array([n], np.int32)}, tmp_path)["out"]
        np.testing.assert_allclose(out, x * 2**n)


def test_stateful_program_accumulates_in_its_state(tmp_path: Path) -> None:
    def build(acc, x):
        mb = _mb()
        total = mb.add(x=mb.read_state(input=acc), y=x)
        mb.coreml_update_state(state=acc, value=total)
        return mb.mul(x=total, y=np.float16(2), name="out")

    path = save_program(build, {"x": ((1, 3), np.float16)}, tmp_path / "state.mlpackage", opset=18, fp16=True,
                        states={"acc": ((1, 3), np.float16)})
    model = mlupdate.load(path)
    state = model.make_state()
    np.testing.assert_array_equal(state.read_state("acc"), np.zeros((1, 3), np.float16))
    xs = [RNG.uniform(0, 2, (1, 3)).astype(np.float16) for _ in range(3)]
    total = np.zeros((1, 3), np.float16)
    for x in xs:
        total = total + x
        np.testing.assert_array_equal(model.predict({"x": x}, state=state)["out"], total * np.float16(2))
    np.testing.assert_array_equal(state.read_state("acc"), total)
    state.write_state("acc", np.full((1, 3), 10, np.float16))
    np.testing.assert_array_equal(model.predict({"x": xs[0]}, state=state)["out"], (10 + xs[0]) * np.float16(2))
    other = model.make_state()  # a fresh state starts again from zeros
    np.testing.assert_array_equal(model.predict({"x": xs[0]}, state=other)["out"], xs[0] * np.float16(2))
    with pytest.raises(FeatureError, match="make_state"):
        model.predict({"x": xs[0]})


def test_stateless_model_has_no_state(tmp_path: Path) -> None:
    path = save_program(lambda x: _mb().relu(x=x, name="out"), {"x": ((2,), np.float32)}, tmp_path / "r.mlpackage")
    with pytest.raises(FeatureError, match="no states"):
        mlupdate.load(path).make_state()


def test_multifunction_model_runs_the_function_asked_for(tmp_path: Path) -> None:
    ct = import_coremltools()
    for name, k in (("double", 2.0), ("triple", 3.0)):
        save_program(lambda x, k=k: _mb().mul(x=x, y=np.float32(k), name="out"), {"x": ((1, 4), np.float32)},
                     tmp_path / f"{name}.mlpackage", opset=18)
    desc = ct.utils.MultiFunctionDescriptor()
    for name in ("double", "triple"):
        desc.add_function(str(tmp_path / f"{name}.mlpackage"), src_function_name="main", target_function_name=name)
    desc.default_function_name = "triple"
    path = tmp_path / "multi.mlpackage"
    ct.utils.save_multifunction(desc, str(path))
    x = RNG.normal(size=(1, 4)).astype(np.float32)
    np.testing.assert_allclose(mlupdate.load(path).predict({"x": x})["out"], 3 * x)
    np.testing.assert_allclose(mlupdate.load(path, function_name="double").predict({"x": x})["out"], 2 * x)
    with pytest.raises(SpecError, match="double"):
        mlupdate.load(path, function_name="quadruple")


def test_classifier_program_gives_label_and_probabilities(tmp_path: Path) -> None:
    ct = import_coremltools()
    labels = ["cat", "dog", "fox"]

    def build(x):
        return _mb().softmax(x=x, axis=-1)

    path = save_program(build, {"x": ((1, 3), np.float32)}, tmp_path / "cls.mlpackage",
                        classifier_config=ct.ClassifierConfig(labels))
    assert "classify" in summarize(read_spec(path))["program"]["functions"][0]["ops"]
    model = mlupdate.load(path)
    x = np.array([[0.5, 2.0, -1.0]], np.float32)
    probs = np.exp(x[0]) / np.exp(x[0]).sum()
    out = model.predict({"x": x})
    label_name = model.description.predicted_feature_name
    probs_name = model.description.predicted_probabilities_name
    assert out[label_name] == "dog"
    assert out[probs_name].keys() == set(labels)
    np.testing.assert_allclose([out[probs_name][c] for c in labels], probs, rtol=1e-6)
    warm = mlupdate.load(path)  # from the compiled-model cache this time
    assert warm.executor == "onnxruntime" and warm.predict({"x": x}) == out


@pytest.mark.parametrize("layout", ["RGB", "BGR"])
def test_image_input_is_preprocessed_as_declared(tmp_path: Path, layout: str) -> None:
    ct = import_coremltools()
    from PIL import Image

    pixels = RNG.integers(0, 256, (4, 5, 3)).astype(np.uint8)
    bias = [-1.0, 0.5, 2.0]
    path = save_program(lambda x: _mb().identity(x=x, name="out"), {"x": ((1, 3, 4, 5), np.float32)},
                        tmp_path / "img.mlpackage",
                        inputs=[ct.ImageType(name="x", shape=(1, 3, 4, 5), scale=1 / 255, bias=bias,
                                             color_layout=getattr(ct.colorlayout, layout))])
    out = mlupdate.load(path).predict({"x": Image.fromarray(pixels)})["out"]
    chw = pixels.transpose(2, 0, 1).astype(np.float32)
    if layout == "BGR":
        chw = chw[::-1]
    np.testing.assert_allclose(out[0], chw / 255 + np.array(bias, np.float32)[:, None, None], rtol=1e-6, atol=1e-6)


def test_flexible_and_enumerated_shapes(tmp_path: Path) -> None:
    ct = import_coremltools()
    build = lambda x: _mb().mul(x=x, y=np.float32(3), name="out")  # noqa: E731
    ranged = save_program(build, {"x": ((None, 3), np.float32)}, tmp_path / "range.mlpackage",
                          inputs=[ct.TensorType(name="x", shape=(ct.RangeDim(1, 8, default=2), 3))])
    enum = save_program(build, {"x": ((None, 3), np.float32)}, tmp_path / "enum.mlpackage",
                        inputs=[ct.TensorType(name="x", shape=ct.EnumeratedShapes(shapes=[(2, 3), (4, 3)]))],
                        )
    for path, ok, bad in ((ranged, [(1, 3), (5, 3)], (9, 3)), (enum, [(2, 3), (4, 3)], (3, 3))):
        model = mlupdate.load(path)
        for shape in ok:
            x = RNG.normal(size=shape).astype(np.float32)
            np.testing.assert_allclose(model.predict({"x": x})["out"], 3 * x)
        with pytest.raises(FeatureError):
            model.predict({"x": np.zeros(bad, np.float32)})


# -- ill-formed programs ----------------------------------------------------------------------
@pytest.fixture()
def two_ops(tmp_path: Path) -> Path:
    def build(x):
        mb = _mb()
        return mb.add(x=mb.mul(x=x, y=np.float32(2)), y=np.float32(1), name="out")

    return save_program(build, {"x": ((2,), np.float32)}, tmp_path / "two.mlpackage")


def _edit(package: Path, change) -> Path:
    spec_path = package / "Data" / "com.apple.CoreML" / "model.mlmodel"
    spec = read_spec(package)
    fn = spec.mlProgram.functions["main"]
    change(fn.block_specializations[fn.opset])
    write_spec(spec, spec_path)
    return package


def _ops(block, kind):
    return [op for op in block.operations if op.type == kind]


def test_name_used_before_defined_is_a_spec_error(two_ops: Path) -> None:
    def swap(block):
        ops = list(block.operations)
        mul, add = _ops(block, "mul")[0], _ops(block, "add")[0]
        order = [op for op in ops if op is not mul and op is not add] + [add, mul]
        copies = [type(op)() for op in order]
        for c, op in zip(copies, order, strict=True):
            c.CopyFrom(op)
        del block.operations[:]
        block.operations.extend(copies)

    with pytest.raises(SpecError, match="before any input or op defines it"):
        mlupdate.load(_edit(two_ops, swap))


def test_unknown_op_is_a_spec_error_naming_it(two_ops: Path) -> None:
    def rename(block):
        _ops(block, "mul")[0].type = "frobnicate"

    with pytest.raises(SpecError, match="'frobnicate', which is not an op of MIL"):
        mlupdate.load(_edit(two_ops, rename))


def test_op_of_a_later_opset_is_refused_by_name(two_ops: Path) -> None:
    def later(block):  # read_state exists from iOS18 on; this program's opset is iOS15
        _ops(block, "mul")[0].type = "read_state"

    with pytest.raises(UnsupportedModelError, match="read_state"):
        mlupdate.load(_edit(two_ops, later))


def test_constant_unlike_its_declared_type_is_a_spec_error(two_ops: Path) -> None:
    def reshape(block):
        const = next(op for op in block.operations if op.type == "const" and op.outputs[0].type.tensorType.rank == 0
                     and op.outputs[0].type.tensorType.dataType == 11)  # an fp32 scalar
        const.outputs[0].type.tensorType.rank = 1
        const.outputs[0].type.tensorType.dimensions.add().constant.size = 3

    with pytest.raises(SpecError, match="declare"):
        mlupdate.load(_edit(two_ops, reshape))


def test_wrong_arity_is_a_spec_error(two_ops: Path) -> None:
    def extra(block):
        arg = _ops(block, "add")[0].inputs["x"]
        arg.arguments.add().CopyFrom(arg.arguments[0])

    with pytest.raises(SpecError, match="exactly one"):
        mlupdate.load(_edit(two_ops, extra))


def test_kernel_failure_is_a_layer_error_naming_the_op(two_ops: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlupdate.ops import OPS, kernel_for

    kernel_for("mul", 15)  # the families are loaded

    def boom(ctx, inputs):
        raise RuntimeError("raw torch failure")

    monkeypatch.setitem(OPS, "mul", {15: boom})
    with pytest.raises(LayerError, match=r"\(mul\) failed .*raw torch failure"):
        mlupdate.load(two_ops, executor="torch")


def test_lists_grow_in_a_loop_and_gather(tmp_path: Path) -> None:
    def build(x):
        mb = _mb()
        ls = mb.make_list(init_length=1, elem_shape=[3], dtype="fp32", dynamic_length=True)

        def cond(i, ls):
            return mb.less(x=i, y=np.int32(4))

        def body(i, ls):
            value = mb.mul(x=x, y=mb.cast(x=i, dtype="fp32"))
            return mb.add(x=i, y=np.int32(1)), mb.list_write(ls=ls, index=i, value=value)

        _, ls = mb.while_loop(_cond=cond, _body=body, loop_vars=(np.int32(0), ls))
        rows = mb.stack(values=[mb.add(x=x, y=np.float32(100)), mb.add(x=x, y=np.float32(200))], axis=0)
        moved = mb.list_scatter(ls=ls, indices=np.array([5, 0], np.int32), value=rows)
        return (mb.list_gather(ls=ls, indices=np.array([3, 0, 2], np.int32), name="picked"),
                mb.list_read(ls=ls, index=np.int32(1), name="second"), mb.list_length(ls=ls, name="n"),
                mb.list_gather(ls=moved, indices=np.array([0, 5, 3], np.int32), name="scattered"),
                mb.list_length(ls=moved, name="grown"))

    x = RNG.normal(size=(3,)).astype(np.float32)
    out = run_program(build, {"x": x}, tmp_path)
    np.testing.assert_allclose(out["picked"], np.stack([3 * x, 0 * x, 2 * x]), rtol=1e-6)
    np.testing.assert_allclose(out["second"], x, rtol=1e-6)
    assert int(np.asarray(out["n"]).reshape(())) == 4
    np.testing.assert_allclose(out["scattered"], np.stack([x + 200, x + 100, 3 * x]), rtol=1e-6)
    assert int(np.asarray(out["grown"]).reshape(())) == 6  # index 5 grows the list


def test_image_output_is_an_image(tmp_path: Path) -> None:
    import torch

    ct = import_coremltools()
    from PIL import Image

    class Brighten(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + 10

    pixels = RNG.integers(0, 200, (4, 5, 3)).astype(np.uint8)
    path = tmp_path / "imgout.mlpackage"
    ct.convert(torch.jit.trace(Brighten(), torch.zeros(1, 3, 4, 5)), convert_to="mlprogram",
               minimum_deployment_target=ct.target.iOS16, compute_precision=ct.precision.FLOAT32,
               inputs=[ct.ImageType(name="x", shape=(1, 3, 4, 5), color_layout=ct.colorlayout.RGB)],
               outputs=[ct.ImageType(name="out", color_layout=ct.colorlayout.RGB)]).save(str(path))
    out = mlupdate.load(path).predict({"x": Image.fromarray(pixels)})["out"]
    assert isinstance(out, Image.Image) and out.size == (5, 4) and out.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(out), pixels.astype(np.int32) + 10)


def test_a_shape_given_at_run_time_loads_and_sets_the_output_shape(tmp_path):
    """coremltools' random op tests feed the shape as an input: zeros must not stand for it at load."""
    from coremltools.converters.mil.mil import Builder as mb

    def build(shape):
        return mb.random_uniform(shape=shape, low=2.0, high=3.0, name="out")

    got = run_program(build, {"shape": np.array([2, 5], np.int32)}, tmp_path)["out"]
    assert got.shape == (2, 5) and ((got >= 2.0) & (got < 3.0)).all()


def test_a_run_time_shape_is_not_frozen_by_the_export(tmp_path):
    """fill's shape read at run time: the program runs on torch, and a second shape is honoured."""
    import warnings

    from coremltools.converters.mil.mil import Builder as mb

    def build(shape):
        return mb.fill(shape=shape, value=2.5, name="out")

    path = save_program(build, {"shape": ((2,), np.int32)}, tmp_path / "fill.mlpackage")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "runs this model with PyTorch instead"
        model = mlupdate.load(path)
    for shape in ([2, 3], [4, 1]):
        got = model.predict({"shape": np.array(shape, np.int32)})["out"]
        np.testing.assert_array_equal(got, np.full(shape, 2.5))
