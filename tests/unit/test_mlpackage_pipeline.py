"""Apple's recommended updatable layout: an ML Program feature extractor feeding an updatable NN head.

Everything is built with coremltools' own tools: the extractor with the MIL builder (``mb``) and
``ct.convert(convert_to="mlprogram")``, the head with ``NeuralNetworkBuilder``, both joined with
``coremltools.utils.make_pipeline`` and saved by coremltools as an ``.mlpackage``. Ground truth for the
update: a plain PyTorch loop on the same weights (the extractor is ``relu(x * scale)``, written in numpy).
"""

from __future__ import annotations

import errno
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import mlupdate
from mlupdate.spec.io import import_coremltools

ct = import_coremltools()
from coremltools.converters.mil.mil import Builder as mb  # noqa: E402
from coremltools.models import datatypes  # noqa: E402
from coremltools.models.neural_network import NeuralNetworkBuilder, SgdParams  # noqa: E402
from coremltools.proto import Model_pb2  # noqa: E402

LABELS = ["cat", "dog", "fox"]
DIM = 16


def _weights(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"scale": rng.uniform(0.5, 1.5, size=DIM).astype(np.float32),
            "w": rng.normal(size=(3, DIM)).astype(np.float32) * 0.3, "b": rng.normal(size=3).astype(np.float32)}


def _extractor(scale: np.ndarray, precision: str = "float32") -> object:
    @mb.program(input_specs=[mb.TensorSpec(shape=(1, DIM))])
    def prog(x):
        return mb.reshape(x=mb.relu(x=mb.mul(x=x, y=scale.reshape(1, DIM))), shape=[DIM], name="emb")

    return ct.convert(prog, convert_to="mlprogram", minimum_deployment_target=ct.target.iOS15,
                      compute_precision=getattr(ct.precision, precision.upper()))


def _head(w: np.ndarray, b: np.ndarray) -> object:
    head = NeuralNetworkBuilder([("emb", datatypes.Array(DIM))], [("probs", datatypes.Array(3))], mode="classifier")
    head.add_inner_product("dense", w, b, DIM, 3, True, "emb", "logits")
    head.add_softmax("softmax", "logits", "probs")
    head.set_class_labels(LABELS, predicted_feature_name="label", prediction_blob="probs")
    head.make_updatable(["dense"])
    head.set_categorical_cross_entropy_loss(name="loss", input="probs")
    head.set_sgd_optimizer(SgdParams(lr=0.1, batch=2))
    head.set_epochs(3)
    head.spec.specificationVersion = 4
    float32 = Model_pb2.ArrayFeatureType.FLOAT32
    head.spec.description.input[0].type.multiArrayType.dataType = float32  # as the extractor's output
    head.spec.description.trainingInput[0].type.multiArrayType.dataType = float32
    return ct.models.MLModel(head.spec, skip_model_load=True)


def save_layout(path, weights: dict[str, np.ndarray], precision: str = "float32"):
    """The layout as coremltools writes it: make_pipeline, marked updatable, saved as a package."""
    joined = ct.utils.make_pipeline(_extractor(weights["scale"], precision), _head(weights["w"], weights["b"]))
    spec = joined.get_spec()
    spec.isUpdatable = True
    head = spec.pipeline.models[1]
    spec.description.trainingInput.extend(spec.description.input)
    spec.description.trainingInput.extend(t for t in head.description.trainingInput if t.name == "label")
    ct.models.MLModel(spec, weights_dir=joined.weights_dir, skip_model_load=True).save(str(path))
    return path


def _data(n: int = 7, seed: int = 1):
    rng = np.random.default_rng(seed)
    xs = rng.normal(size=(n, 1, DIM)).astype(np.float32)
    return xs, [LABELS[i % 3] for i in range(n)]


def _weight_bin(pkg):
    return (pkg / "Data" / "com.apple.CoreML" / "weights" / "0-weight.bin").read_bytes()


def _head_layer(model):
    pipe = model.spec.pipeline
    return next(layer for layer in pipe.models[1].neuralNetworkClassifier.layers if layer.name == "dense")


def test_layout_lints_clean_and_predicts(tmp_path):
    w = _weights()
    pkg = save_layout(tmp_path / "Layout.mlpackage", w)
    assert mlupdate.lint(pkg) == []
    model = mlupdate.load(pkg)
    xs, _ = _data()
    emb = np.maximum(xs * w["scale"], 0)
    logits = emb[:, 0] @ w["w"].T + w["b"]
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    for x, p in zip(xs, probs, strict=True):
        got = model.predict({"x": x})
        np.testing.assert_allclose([got["probs"][k] for k in LABELS], p, atol=1e-5)
        assert got["label"] == LABELS[int(np.argmax(p))]


def test_update_trains_like_torch_and_runs_the_extractor_once(tmp_path, monkeypatch):
    from mlupdate.runtime import mlprogram

    w = _weights()
    pkg = save_layout(tmp_path / "Layout.mlpackage", w)
    before = _weight_bin(pkg)
    xs, ys = _data()
    seen = []
    original = mlprogram.MLProgram.predict_batch

    def counting(self, examples, *args, **kwargs):
        seen.append(len(examples))
        return original(self, examples, *args, **kwargs)

    monkeypatch.setattr(mlprogram.MLProgram, "predict_batch", counting)
    ctx = mlupdate.UpdateTask(pkg, [{"x": x, "label": y} for x, y in zip(xs, ys, strict=True)],
                              parameters={"shuffle": False}).run()
    assert sum(seen) == len(xs)  # 3 epochs, one extractor pass per example
    monkeypatch.setattr(mlprogram.MLProgram, "predict_batch", original)

    emb = torch.from_numpy(np.maximum(xs[:, 0] * w["scale"], 0))
    target = torch.tensor([LABELS.index(y) for y in ys])
    wt, bt = torch.tensor(w["w"], requires_grad=True), torch.tensor(w["b"], requires_grad=True)
    opt = torch.optim.SGD([wt, bt], lr=0.1)
    for _ in range(3):
        for s in range(0, len(xs), 2):  # batches of 2 in order, the last one partial
            opt.zero_grad()
            F.cross_entropy(emb[s:s + 2] @ wt.T + bt, target[s:s + 2]).backward()
            opt.step()
    dense = _head_layer(ctx.model).innerProduct
    np.testing.assert_allclose(np.array(dense.weights.floatValue).reshape(3, DIM), wt.detach().numpy(), atol=1e-5)
    np.testing.assert_allclose(np.array(dense.bias.floatValue), bt.detach().numpy(), atol=1e-5)
    probs = torch.softmax(emb @ wt.T + bt, dim=1).detach().numpy()
    for x, p in zip(xs, probs, strict=True):
        got = ctx.model.predict({"x": x})
        np.testing.assert_allclose([got["probs"][k] for k in LABELS], p, atol=1e-5)
    assert _weight_bin(pkg) == before  # the source package is never modified


def test_round_trip_coremltools_loads_it_and_weights_are_byte_identical(tmp_path):
    w = _weights()
    pkg = save_layout(tmp_path / "Layout.mlpackage", w)
    xs, ys = _data()
    ctx = mlupdate.UpdateTask(pkg, [{"x": x, "label": y} for x, y in zip(xs, ys, strict=True)]).run()
    out = tmp_path / "Personal.mlpackage"
    ctx.model.write(out)
    assert _weight_bin(out) == _weight_bin(pkg)
    theirs = ct.models.MLModel(str(out), skip_model_load=True).get_spec()
    assert theirs.WhichOneof("Type") == "pipeline" and theirs.isUpdatable
    assert theirs.pipeline.models[0] == mlupdate.load(pkg).spec.pipeline.models[0]  # the extractor as it was
    mine = next(la for la in theirs.pipeline.models[1].neuralNetworkClassifier.layers if la.name == "dense")
    assert mine == _head_layer(ctx.model)  # the new weights are what coremltools reads
    assert mine != _head_layer(mlupdate.load(pkg))
    again = mlupdate.load(out)
    for x in xs:
        a, b = again.predict({"x": x}), ctx.model.predict({"x": x})
        np.testing.assert_allclose([a["probs"][k] for k in LABELS], [b["probs"][k] for k in LABELS], atol=1e-6)
    assert mlupdate.lint(out) == []
    ctx2 = mlupdate.UpdateTask(out, [{"x": x, "label": y} for x, y in zip(xs, ys, strict=True)]).run()
    ctx2.write(out)  # back over the package it was read from
    assert _weight_bin(out) == _weight_bin(pkg)
    assert _head_layer(mlupdate.load(out)) == _head_layer(ctx2.model)


def test_write_over_an_existing_package_is_atomic(tmp_path, monkeypatch):
    pkg = save_layout(tmp_path / "Layout.mlpackage", _weights())
    xs, ys = _data()
    ctx = mlupdate.UpdateTask(pkg, [{"x": x, "label": y} for x, y in zip(xs, ys, strict=True)]).run()
    dest = tmp_path / "out" / "Model.mlpackage"
    dest.parent.mkdir()
    mlupdate.load(pkg).write(dest)
    old = {p.relative_to(dest): p.read_bytes() for p in dest.rglob("*") if p.is_file()}

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(mlupdate.ModelFileError, match="disk|space|No space"):
        ctx.model.write(dest)
    monkeypatch.undo()
    assert {p.relative_to(dest): p.read_bytes() for p in dest.rglob("*") if p.is_file()} == old
    assert sorted(p.name for p in dest.parent.iterdir()) == ["Model.mlpackage"]  # no temp folder left

    ctx.model.write(dest)
    assert sorted(p.name for p in dest.parent.iterdir()) == ["Model.mlpackage"]
    assert _head_layer(mlupdate.load(dest)) == _head_layer(ctx.model)
    with pytest.raises(mlupdate.ModelFileError, match=r"\.mlpackage"):
        ctx.model.write(tmp_path / "Model.mlmodel")  # an ML Program needs its package


def _spec_of(pkg):
    return ct.models.MLModel(str(pkg), skip_model_load=True).get_spec()


def _resave(spec, src, dest):
    weights = src / "Data" / "com.apple.CoreML" / "weights"
    ct.models.MLModel(spec, weights_dir=str(weights), skip_model_load=True).save(str(dest))
    return dest


def _rules(path):
    return {p.rule for p in mlupdate.lint(path) if p.severity == "error"}


@pytest.mark.parametrize("breakage, rule", [
    (lambda s: setattr(s.pipeline.models[0], "isUpdatable", True), "pipeline-updatable"),
    (lambda s: setattr(s, "specificationVersion", 5), "spec-version"),
    (lambda s: setattr(s.pipeline.models[1].description.input[0], "name", "embedding"), "pipeline-input"),
    (lambda s: s.pipeline.models[1].description.input[0].type.multiArrayType.shape.__setitem__(0, 8),
     "pipeline-type"),
    (lambda s: setattr(s.description.output[0], "name", "nothing"), "pipeline-output"),
])
def test_lint_finds_what_cores_ml_validator_refuses(tmp_path, breakage, rule):
    src = save_layout(tmp_path / "Layout.mlpackage", _weights())
    spec = _spec_of(src)
    breakage(spec)
    assert rule in _rules(_resave(spec, src, tmp_path / "Broken.mlpackage"))


def test_lint_ml_program_stage_weights(tmp_path):
    src = save_layout(tmp_path / "Layout.mlpackage", _weights())
    broken = tmp_path / "Missing.mlpackage"
    _resave(_spec_of(src), src, broken)
    (broken / "Data" / "com.apple.CoreML" / "weights" / "0-weight.bin").unlink()
    assert "pipeline-weights" in _rules(broken)
    spec = _spec_of(src)
    shared = Model_pb2.Model()
    shared.CopyFrom(spec)
    stage = shared.pipeline.models.add()
    stage.CopyFrom(spec.pipeline.models[0])  # a second stage naming the first one's weight file
    shared.pipeline.models[2].description.output[0].name = "emb2"
    found = mlupdate.lint(_resave(shared, src, tmp_path / "Shared.mlpackage"))
    assert any(p.rule == "pipeline-weights" and "both" in p.message for p in found)


def test_pipeline_of_ml_programs_reads_each_stages_weights(tmp_path):
    rng = np.random.default_rng(3)
    s1, s2 = rng.normal(size=(1, DIM)).astype(np.float32), rng.normal(size=(1, DIM)).astype(np.float32)

    @mb.program(input_specs=[mb.TensorSpec(shape=(1, DIM))])
    def first(x):
        return mb.mul(x=x, y=s1, name="a")

    @mb.program(input_specs=[mb.TensorSpec(shape=(1, DIM))])
    def second(a):
        return mb.add(x=mb.mul(x=a, y=s2), y=s1, name="y")

    stages = [ct.convert(p, convert_to="mlprogram", minimum_deployment_target=ct.target.iOS15,
                         compute_precision=ct.precision.FLOAT32) for p in (first, second)]
    stages[1] = ct.models.MLModel(_renamed_input(stages[1].get_spec(), "a"), weights_dir=stages[1].weights_dir,
                                  skip_model_load=True)
    joined = ct.utils.make_pipeline(*stages)
    pkg = tmp_path / "Two.mlpackage"
    joined.save(str(pkg))
    weights = sorted(p.name for p in (pkg / "Data" / "com.apple.CoreML" / "weights").iterdir())
    assert weights == ["0-weight.bin", "1-weight.bin"]
    model = mlupdate.load(pkg)
    x = rng.normal(size=(1, DIM)).astype(np.float32)
    np.testing.assert_allclose(model.predict({"x": x})["y"], x * s1 * s2 + s1, rtol=1e-6, atol=1e-6)
    assert mlupdate.lint(pkg) == []  # a valid (not updatable) pipeline
    out = model.write(tmp_path / "Copy.mlpackage")
    for name in weights:
        assert (out / "Data/com.apple.CoreML/weights" / name).read_bytes() == \
            (pkg / "Data/com.apple.CoreML/weights" / name).read_bytes()


def _renamed_input(spec, name):
    """The program's input renamed (make_pipeline joins stages by feature name)."""
    old = spec.description.input[0].name
    spec.description.input[0].name = name
    fn = spec.mlProgram.functions["main"]
    fn.inputs[0].name = name
    for op in fn.block_specializations[fn.opset].operations:
        for arg in op.inputs.values():
            for binding in arg.arguments:
                if binding.name == old:
                    binding.name = name
    return spec


def test_a_folder_that_is_not_a_package_is_never_replaced(tmp_path):
    model = mlupdate.load(save_layout(tmp_path / "Layout.mlpackage", _weights()))
    folder = tmp_path / "Mine.mlpackage"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    with pytest.raises(mlupdate.ModelFileError, match="not a package"):
        model.write(folder)
    assert (folder / "notes.txt").read_text() == "keep me"
