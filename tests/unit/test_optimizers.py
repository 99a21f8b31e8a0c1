"""mlupdate.SGD / mlupdate.Adam against coremltools' SgdParams / AdamParams and the validator's rules."""

from __future__ import annotations

import contextlib
import dataclasses
import io

import numpy as np
import pytest

import mlupdate
from mlupdate.authoring.optimizers import summarize_optimizer

ct = pytest.importorskip("coremltools")
from coremltools.models import datatypes  # noqa: E402
from coremltools.models.neural_network import AdamParams, NeuralNetworkBuilder, SgdParams  # noqa: E402


def _builder() -> NeuralNetworkBuilder:
    b = NeuralNetworkBuilder([("x", datatypes.Array(2))], [("y", None)])
    b.add_inner_product("d", W=np.array([[1.0, 2.0]]), b=None, input_channels=2, output_channels=1, has_bias=False,
                        input_name="x", output_name="y")
    return b


def _written(opt):
    from coremltools.proto import NeuralNetwork_pb2

    msg = NeuralNetwork_pb2.Optimizer()
    opt.write(msg)
    return msg


def _coremltools(params):
    b = _builder()
    (b.set_sgd_optimizer if isinstance(params, SgdParams) else b.set_adam_optimizer)(params)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        b.inspect_optimizer()
    return b.spec.neuralNetwork.updateParams.optimizer, out.getvalue().splitlines()


def test_defaults_match_coremltools():
    for ours, theirs in ((mlupdate.SGD(), SgdParams()), (mlupdate.Adam(), AdamParams())):
        msg, printed = _coremltools(theirs)
        assert _written(ours) == msg
        assert ours.summary()[1:] == printed[1:]  # same numbers, same format as inspect_optimizer
        assert ours.mini_batch_sizes == (10,)


def test_custom_values_match_coremltools():
    theirs = SgdParams(lr=0.05, batch=8, momentum=0.9)
    theirs.set_lr(0.05, 0.001, 0.5)
    theirs.set_batch(8, [4, 8, 16])
    ours = mlupdate.SGD(0.05, 8, 0.9, learning_rate_range=(0.001, 0.5), mini_batch_sizes=[4, 8, 16])
    assert _written(ours) == _coremltools(theirs)[0]
    adam = AdamParams(lr=0.002, batch=4, beta1=0.8, beta2=0.95, eps=1e-6)
    adam.set_eps(1e-6, 1e-9, 1e-3)
    assert _written(mlupdate.Adam(0.002, 4, 0.8, 0.95, 1e-6, eps_range=(1e-9, 1e-3))) == _coremltools(adam)[0]


def test_summary_of_written_optimizer_matches_inspect_optimizer():
    from coremltools.proto import NeuralNetwork_pb2

    theirs = AdamParams(lr=0.003, batch=6)
    msg, printed = _coremltools(theirs)
    up = NeuralNetwork_pb2.NetworkUpdateParameters()
    up.optimizer.CopyFrom(msg)
    assert summarize_optimizer(up) == printed


@pytest.mark.parametrize("make, words", [
    (lambda: mlupdate.SGD(learning_rate=2.0), "outside its allowed range"),
    (lambda: mlupdate.SGD(momentum=-0.1), "outside its allowed range"),
    (lambda: mlupdate.SGD(learning_rate_range=(0.5, 0.5), learning_rate=0.5), "min must be less than max"),
    (lambda: mlupdate.Adam(beta1_range=(1.0, 0.0)), "min must be less than max"),
    (lambda: mlupdate.SGD(mini_batch_size=0), "positive integer"),
    (lambda: mlupdate.SGD(mini_batch_size=2.5), "positive integer"),
    (lambda: mlupdate.SGD(mini_batch_size=True), "positive integer"),
    (lambda: mlupdate.SGD(mini_batch_size=4, mini_batch_sizes=[4, 4]), "duplicates"),
    (lambda: mlupdate.SGD(mini_batch_size=4, mini_batch_sizes=[8, 16]), "not in mini_batch_sizes"),
    (lambda: mlupdate.Adam(mini_batch_size=4, mini_batch_sizes=[4, -1]), "positive integers"),
    (lambda: mlupdate.Adam(eps=float("nan")), "finite number"),
    (lambda: mlupdate.Adam(learning_rate="0.1"), "finite number"),
])
def test_invalid_settings_raise_parameter_error(make, words):
    with pytest.raises(mlupdate.ParameterError, match=words):
        make()


def test_valid_edges_and_frozen():
    sgd = mlupdate.SGD(1.0, 1, 1.0)  # range bounds are inclusive, as Core ML's validator
    assert (sgd.learning_rate, sgd.mini_batch_size, sgd.momentum) == (1.0, 1, 1.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        sgd.learning_rate = 0.5
    assert mlupdate.Adam(0.0, 3).mini_batch_sizes == (3,)
    assert mlupdate.SGD(mini_batch_size=8, mini_batch_sizes=(16, 8)).mini_batch_sizes == (16, 8)
