"""lint's warnings for Core ML's update failures that its validator misses (issue 19, point 7).

Each model is built with coremltools' NeuralNetworkBuilder the way the reporter of the coremltools issue
built theirs, and its twin without the problem is checked to be clean.
"""

from __future__ import annotations

import contextlib
import io
import warnings

import numpy as np
import pytest

import mlupdate
from mlupdate.authoring.lint_device import DEVICE_RULES
from mlupdate.cli import main
from mlupdate.spec.io import write_spec
from tests.unit import _update_models as M

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from coremltools.models import datatypes
    from coremltools.models.neural_network import NeuralNetworkBuilder, SgdParams

RNG = np.random.default_rng(0)


def _w(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def _finish(b, updatable, loss="cce", loss_input="probs", mse_shape=None, labels=("a", "b")):
    """Updatable layers, loss, SGD, epochs: as the coremltools issues' scripts set them up."""
    if loss == "cce" and labels:
        b.set_class_labels(list(labels), predicted_feature_name="label", prediction_blob=loss_input)
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        b.make_updatable(list(updatable))
        if loss == "cce":
            b.set_categorical_cross_entropy_loss("lossLayer", input=loss_input)
        else:
            b.set_mean_squared_error_loss("lossLayer", input_feature=(loss_input, datatypes.Array(*mse_shape)))
        b.set_sgd_optimizer(SgdParams(lr=0.1, batch=2))
        b.set_epochs(2)
    return b.spec


def _codes(spec):
    problems = mlupdate.lint(spec)
    assert not [p for p in problems if p.severity == "error"], problems  # Core ML's validator accepts all of them
    return [p.rule for p in problems if p.rule in DEVICE_RULES]


# -- the models -----------------------------------------------------------------------------------------------
def linear_regressor(activation=None):
    """#1983: Dense(2) -> Dense(4) -> Dense(2), the last one linear and updatable, MSE on its output."""
    b = NeuralNetworkBuilder([("xy", datatypes.Array(2))], [("out", datatypes.Array(2))])
    b.add_inner_product("d0", _w(4, 2), _w(4), 2, 4, True, "xy", "h")
    b.add_inner_product("d1", _w(2, 4), _w(2), 4, 2, True, "h", "z" if activation else "out")
    if activation:
        b.add_activation("act", activation, "z", "out")
    return _finish(b, ["d1"], loss="mse", loss_input="out", mse_shape=(2,))


def batchnorm_classifier(where="between"):
    """#492: a (Turi activity-classifier style) batchnorm after the first dense layer; both dense layers train."""
    b = NeuralNetworkBuilder([("x", datatypes.Array(4))], [("probs", None)], mode="classifier")
    src = "x"
    if where == "before":
        b.add_batchnorm("bn", 4, _w(4), _w(4), _w(4), np.abs(_w(4)) + 0.5, input_name="x", output_name="xn")
        src = "xn"
    b.add_inner_product("d1", _w(6, 4), _w(6), 4, 6, True, src, "h")
    if where == "between":
        b.add_batchnorm("bn", 6, _w(6), _w(6), _w(6), np.abs(_w(6)) + 0.5, input_name="h", output_name="hn")
    b.add_activation("relu", "RELU", "hn" if where == "between" else "h", "hr")
    b.add_inner_product("d2", _w(2, 6), _w(2), 6, 2, True, "hr", "z")
    b.add_softmax("sm", "z", "probs")
    return _finish(b, ["d1", "d2"])


def lstm_classifier(with_lstm=True):
    """#2074: an LSTM, then a dense layer that is the only one updatable."""
    b = NeuralNetworkBuilder([("x", datatypes.Array(3))], [("probs", None)], mode="classifier")
    src = "x"
    if with_lstm:
        b.add_unilstm("lstm", [_w(5, 5)] * 4, [_w(5, 3)] * 4, [_w(5)] * 4, 5, 3, ["x"], ["h"])
        src = "h"
    b.add_inner_product("dense", _w(2, 5 if with_lstm else 3), _w(2), 5 if with_lstm else 3, 2, True, src, "z")
    b.add_softmax("sm", "z", "probs")
    return _finish(b, ["dense"])


def image_regressor():
    """#557: an image in (grayscale), an updatable convolution out, MSE against a map of the same size."""
    b = NeuralNetworkBuilder([("image", datatypes.Array(1, 6, 6))], [("depth", None)])
    b.add_convolution("conv", 1, 1, 3, 3, 1, 1, "same", 1, _w(3, 3, 1, 1) * 0.3, _w(1), True,
                      input_name="image", output_name="c")
    b.add_activation("act", "SIGMOID", "c", "depth")
    b.set_pre_processing_parameters(image_input_names=["image"], image_scale=1 / 255)
    b.spec.description.input[0].type.imageType.colorSpace = 10  # GRAYSCALE
    return _finish(b, ["conv"], loss="mse", loss_input="depth", mse_shape=(1, 6, 6))


def single_unit_classifier(units=1):
    """A binary classifier written as one unit + softmax: the softmax is always 1, the loss always 0."""
    b = NeuralNetworkBuilder([("x", datatypes.Array(4))], [("probs", None)], mode="classifier")
    b.add_inner_product("dense", _w(units, 4), _w(units), 4, units, True, "x", "z")
    b.add_softmax("sm", "z", "probs")
    return _finish(b, ["dense"], labels=("spam", "ham")[:units])


CASES = {
    "device-linear-last-inner-product": (linear_regressor, lambda: linear_regressor("SIGMOID")),
    "device-inference-batchnorm": (batchnorm_classifier, lambda: batchnorm_classifier("before")),
    "device-lstm": (lstm_classifier, lambda: lstm_classifier(False)),
    "device-mse-image": (image_regressor, lambda: M.conv_classifier(image=True)),  # an image with cross-entropy
    "device-single-unit-softmax": (single_unit_classifier, lambda: single_unit_classifier(2)),
}


def test_every_rule_has_a_case_and_its_documentation():
    assert set(CASES) == set(DEVICE_RULES)
    for code, rule in DEVICE_RULES.items():
        assert rule.code == code and rule.symptom and rule.fix and rule.mlupdate.startswith("mlupdate's update runs")
        assert rule.issue.startswith(("apple/coremltools#", "no coremltools issue"))


@pytest.mark.parametrize("code", list(CASES))
def test_the_reported_model_warns_with_symptom_issue_fix_and_what_mlupdate_does(code):
    bad, good = CASES[code]
    problems = [p for p in mlupdate.lint(bad()) if p.rule == code]
    assert len(problems) == 1 and problems[0].severity == "warning"
    rule = DEVICE_RULES[code]
    for part in (rule.symptom, rule.issue, rule.fix, rule.mlupdate):
        assert part in problems[0].message
    assert _codes(bad()) == [code]
    assert _codes(good()) == []


def test_the_warnings_do_not_stop_an_update_or_a_clean_lint_of_a_plain_classifier():
    assert mlupdate.lint(M.dense_classifier()) == []
    spec = linear_regressor()
    rows = [{"xy": _w(2), "out_true": _w(2)} for _ in range(4)]
    before = mlupdate.Model(spec)
    after = mlupdate.UpdateTask(spec, rows).run().model
    assert before.spec.SerializeToString() != after.spec.SerializeToString()


def test_a_single_unit_softmax_update_computes_exactly_nothing():
    spec = single_unit_classifier()
    rows = [{"x": _w(4), "label": "spam"} for _ in range(6)]
    losses = []
    handlers = mlupdate.ProgressHandlers({"epoch_end"}, lambda ctx: losses.append(ctx.metrics["loss"]))
    ctx = mlupdate.UpdateTask(spec, rows, progress_handlers=handlers).run()
    assert losses and all(loss == 0.0 for loss in losses)  # -log(softmax of one unit) = -log(1)
    old, new = (M.layer(s, "dense").innerProduct for s in (spec, ctx.model.spec))
    assert list(new.weights.floatValue) == list(old.weights.floatValue)
    assert list(new.bias.floatValue) == list(old.bias.floatValue)


def test_the_batchnorm_model_updates_through_the_batchnorm_which_stays_fixed():
    spec = batchnorm_classifier()
    rows = [{"x": _w(4), "label": "ab"[i % 2]} for i in range(6)]
    new = mlupdate.UpdateTask(spec, rows).run().model.spec
    assert M.layer(new, "bn").batchnorm == M.layer(spec, "bn").batchnorm
    assert list(M.layer(new, "d1").innerProduct.weights.floatValue) != \
        list(M.layer(spec, "d1").innerProduct.weights.floatValue)


@pytest.mark.parametrize("code", ["device-lstm", "device-mse-image"])
def test_mlupdate_runs_the_models_the_device_cannot_update(code):
    spec = CASES[code][0]()
    if code == "device-lstm":
        rows = [{"x": _w(3), "label": "ab"[i % 2]} for i in range(4)]
        name = "dense"
    else:
        rows = [{"image": RNG.integers(0, 255, (6, 6), dtype=np.uint8), "depth_true": RNG.random((1, 6, 6))}
                for _ in range(4)]
        name = "conv"
    new = mlupdate.UpdateTask(spec, rows).run().model.spec
    kind = M.layer(spec, name).WhichOneof("layer")
    assert list(getattr(M.layer(new, name), kind).weights.floatValue) != \
        list(getattr(M.layer(spec, name), kind).weights.floatValue)


def test_mlupdate_update_prints_the_warnings_before_training(tmp_path, capsys):
    model = write_spec(single_unit_classifier(), tmp_path / "m.mlmodel")
    for i in range(2):
        (tmp_path / "data" / "spam").mkdir(parents=True, exist_ok=True)
        np.save(tmp_path / "data" / "spam" / f"{i}.npy", _w(4))
    assert main(["update", str(model), str(tmp_path / "data"), "--out", str(tmp_path / "out.mlmodel"),
                 "--dry-run"]) == 0
    err = capsys.readouterr().err
    assert "warning: [device-single-unit-softmax]" in err and "changes nothing" in err


def test_the_lint_docs_list_every_code_with_its_issue():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "lint.md").read_text()
    for code, rule in DEVICE_RULES.items():
        row = next((line for line in text.splitlines() if line.startswith(f"| `{code}` |")), "")
        assert row and (rule.issue in row or "no coremltools issue" in row), code
