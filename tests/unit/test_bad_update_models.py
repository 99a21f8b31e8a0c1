"""The mutation fuzzer's last findings (issue 19, point 2): each refused with an mlupdate.Error naming the field.

The earlier bad files are in ``test_bad_models.py``.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import mlupdate
from tests.unit.test_bad_models import _regressor_with_target_shape


def _optimizer_field(spec, key):
    opt = spec.neuralNetworkClassifier.updateParams.optimizer
    return getattr(getattr(opt, opt.WhichOneof("OptimizerType")), key)


# (optimizer, proto key, snake key, a default no optimizer runs with): torch.optim refuses each of them, or takes
# it and turns the weights into NaN, or (an infinite epsilon) takes it and never changes a weight.
OPTIMIZER_VALUES = [
    ("sgd", "momentum", "momentum", -1.0),  # found by the fuzzer: "ValueError: Invalid momentum value: -1.0"
    ("sgd", "momentum", "momentum", float("nan")),
    ("sgd", "learningRate", "learning_rate", -0.1),
    ("sgd", "learningRate", "learning_rate", float("inf")),
    ("adam", "learningRate", "learning_rate", -1.0),
    ("adam", "beta1", "beta1", 1.0),
    ("adam", "beta1", "beta1", -0.5),
    ("adam", "beta2", "beta2", 1.5),
    ("adam", "beta2", "beta2", float("nan")),
    ("adam", "eps", "eps", -1e-8),
    ("adam", "eps", "eps", float("inf")),
]
_OPT_IDS = [f"{o} {k}={v}" for o, k, _, v in OPTIMIZER_VALUES]


def _torch_cannot_train_with(opt, snake, value):
    import torch

    weight = torch.nn.Parameter(torch.ones(2))
    args = {"lr": 0.1, "momentum": 0.0} if opt == "sgd" else {"lr": 0.1, "betas": (0.9, 0.999), "eps": 1e-8}
    if snake == "beta1" or snake == "beta2":
        betas = list(args["betas"])
        betas[snake == "beta2"] = value
        args["betas"] = tuple(betas)
    else:
        args[{"learning_rate": "lr"}.get(snake, snake)] = value
    try:
        optimizer = (torch.optim.SGD if opt == "sgd" else torch.optim.Adam)([weight], **args)
    except ValueError:
        return True
    for _ in range(2):
        optimizer.zero_grad()
        (weight ** 2).sum().backward()
        optimizer.step()
    return not torch.isfinite(weight).all() or bool((weight == 1).all())


@pytest.mark.parametrize(("opt", "key", "snake", "value"), OPTIMIZER_VALUES, ids=_OPT_IDS)
def test_an_optimizer_default_no_optimizer_runs_with_is_refused_naming_the_field(opt, key, snake, value):
    from tests.unit import _update_models as M

    assert _torch_cannot_train_with(opt, snake, value)  # what must never reach torch
    spec = M.dense_classifier(opt=opt, updatable=("d2",))
    param = _optimizer_field(spec, key)
    param.defaultValue = value
    param.ClearField("range")  # Core ML's validator compares the default only with a declared range
    problems = [p for p in mlupdate.lint(spec) if p.severity == "error"]
    assert [p.rule for p in problems] == ["optimizer-value"]
    assert f"{key} default is {value}" in problems[0].message
    rows = [{"input": np.ones(4, np.float32), "label": "a"}, {"input": np.zeros(4, np.float32), "label": "b"}]
    with pytest.raises(mlupdate.NotUpdatableError, match=f"{key} default is {value}"):
        mlupdate.UpdateTask(spec, rows)


FINITE = [(i, v) for i, v in zip(_OPT_IDS, OPTIMIZER_VALUES, strict=True) if np.isfinite(v[3])]


@pytest.mark.parametrize(("opt", "key", "snake", "value"), [v for _, v in FINITE], ids=[i for i, _ in FINITE])
def test_an_override_inside_a_wide_range_but_outside_the_domain_is_refused(opt, key, snake, value):
    from tests.unit import _update_models as M

    spec = M.dense_classifier(opt=opt, updatable=("d2",))
    param = _optimizer_field(spec, key)
    param.range.minValue, param.range.maxValue = -2.0, 2.0  # Core ML accepts the range; the value cannot run
    rows = [{"input": np.ones(4, np.float32), "label": "a"}, {"input": np.zeros(4, np.float32), "label": "b"}]
    with pytest.raises(mlupdate.ParameterError, match=f"{snake}={value} cannot be used: {snake} must be"):
        mlupdate.UpdateTask(spec, rows, parameters={key: value})
    maker = mlupdate.SGD if opt == "sgd" else mlupdate.Adam
    with pytest.raises(mlupdate.ParameterError, match=f"{snake}={value}: {snake} must be"):
        maker(**{snake: value, f"{snake}_range": (-2.0, 2.0)})


def test_a_learning_rate_set_while_the_update_runs_is_checked_the_same_way():
    from tests.unit import _update_models as M

    spec = M.dense_classifier()
    lr = _optimizer_field(spec, "learningRate")
    lr.range.minValue = -1.0
    seen = []

    def handler(ctx):
        try:
            ctx.task.resume(parameters={"learningRate": -0.5})
        except mlupdate.ParameterError as exc:
            seen.append(str(exc))

    rows = [{"input": np.ones(4, np.float32), "label": "a"}, {"input": np.zeros(4, np.float32), "label": "b"}]
    mlupdate.UpdateTask(spec, rows, parameters={"epochs": 1},
                        progress_handlers=mlupdate.ProgressHandlers({"training_begin"}, handler)).run()
    assert len(seen) == 1 and "learning_rate=-0.5 cannot be used: learning_rate must be a finite number of 0" in seen[0]


@pytest.mark.parametrize(("key", "value"), [("epochs", 0), ("epochs", -3), ("miniBatchSize", -1)])
def test_a_count_parameter_that_is_not_positive_is_refused_naming_the_field(key, value):
    from tests.unit import _update_models as M

    spec = M.dense_classifier()
    up = spec.neuralNetworkClassifier.updateParams
    param = up.epochs if key == "epochs" else _optimizer_field(spec, key)
    param.defaultValue = value
    param.ClearField("set")
    rows = [{"input": np.ones(4, np.float32), "label": "a"}]
    with pytest.raises(mlupdate.NotUpdatableError, match=re.escape(f"Default value ({value}) of '{key}' must be "
                                                                   "positive")):
        mlupdate.UpdateTask(spec, rows)


def test_an_mse_loss_reading_an_output_that_is_not_an_array_is_refused():
    # found by the fuzzer: 'out' made a sequence, 'out_true' reshaped to [4]; the loss met a raw torch error
    spec = _regressor_with_target_shape([4])
    out = spec.description.output[0]
    out.type.ClearField("multiArrayType")
    out.type.sequenceType.int64Type.SetInParent()
    rows = [{"input": np.ones(4, np.float32), "out_true": np.ones(4, np.float32)}] * 2
    want = "MSE loss 'mse' reads 'out', which the model declares a sequenceType output"
    with pytest.raises(mlupdate.NotUpdatableError, match=want):
        mlupdate.UpdateTask(spec, rows)
    assert [p.rule for p in mlupdate.lint(spec) if p.severity == "error"] == ["loss-target-shape"]


@pytest.mark.parametrize("target", [4, 1], ids=["larger", "smaller (torch would broadcast it)"])
def test_an_mse_loss_on_an_inner_blob_of_another_size_fails_naming_both_shapes(target):
    """The loss reads a blob no output declares, so only the run knows its size: the loss itself refuses."""
    from coremltools.models import datatypes
    from coremltools.models.neural_network import NeuralNetworkBuilder, SgdParams

    rng = np.random.default_rng(0)
    b = NeuralNetworkBuilder([("input", datatypes.Array(4))], [("final", datatypes.Array(2))])
    b.add_inner_product("d", rng.standard_normal((2, 4)), rng.standard_normal(2), 4, 2, True, "input", "scores")
    b.add_activation("id", "LINEAR", "scores", "final", params=[1.0, 0.0])
    b.make_updatable(["d"])
    b.set_mean_squared_error_loss("mse", ("scores", datatypes.Array(target)))  # 'scores' holds 2 values
    b.set_sgd_optimizer(SgdParams(lr=0.01, batch=2))
    b.set_epochs(1)
    assert not [p for p in mlupdate.lint(b.spec) if p.severity == "error"]
    rows = [{"input": rng.standard_normal(4).astype(np.float32),
             "scores_true": rng.standard_normal(target).astype(np.float32)} for _ in range(2)]
    task = mlupdate.UpdateTask(b.spec, rows)
    with pytest.raises(mlupdate.TrainingDataError, match=re.escape(
            f"MSE loss 'mse' compares 'scores', 2 values per example (shape [2, 1, 1]), with 'scores_true', {target} "
            f"value(s) per example (shape [{target}])")):
        task.run()


def _classifier_description(how):
    from tests.unit import _update_models as M

    spec = M.dense_classifier()
    d = spec.description
    probs = next(o for o in d.output if o.name == d.predictedProbabilitiesName)
    if how == "probabilities renamed":
        probs.name = "labelProbs"
        return spec, "predictedProbabilitiesName is 'probs', which is not one of its outputs (labelProbs, label)"
    if how == "probabilities pointing nowhere":
        d.predictedProbabilitiesName = "labelProbs"
        return spec, "predictedProbabilitiesName is 'labelProbs', which is not one of its outputs (probs, label)"
    if how == "probabilities retyped":
        probs.type.Clear()
        probs.type.multiArrayType.shape.append(3)
        return spec, "predictedProbabilitiesName names output 'probs', declared a multiArrayType"
    d.predictedFeatureName = "labelProbs"
    return spec, "predictedFeatureName is 'labelProbs', which is not one of its outputs (probs, label)"


@pytest.mark.parametrize("how", ["probabilities renamed", "probabilities pointing nowhere", "probabilities retyped",
                                 "label pointing nowhere"])
def test_a_classifier_whose_names_do_not_match_its_outputs_is_refused_at_load(how):
    # the fuzzer saw "KeyError: 'labelProbs'" once inside an update of a mutated classifier
    spec, want = _classifier_description(how)
    with pytest.raises(mlupdate.SpecError, match=re.escape(want)):
        mlupdate.Model(spec)
    # lint names the label's problem as Core ML's validator does (the training inputs lack the classifier's target)
    said = "target 'labelProbs'" if how == "label pointing nowhere" else want
    assert any(p.severity == "error" and said in p.message for p in mlupdate.lint(spec))
    with pytest.raises(mlupdate.NotUpdatableError, match=re.escape(said)):
        mlupdate.UpdateTask(spec, [{"input": np.ones(4, np.float32), "label": "a"}])
