"""UpdateTask follows Core ML's validator and leaves the caller's state alone.

The rules come from the facts file (section on the updatable-model validator) and coremltools'
builder; the expected weights from plain numpy/torch arithmetic written here.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from coremltools.models import datatypes
from coremltools.models.neural_network import NeuralNetworkBuilder, SgdParams

import mlupdate
from tests.unit import _update_models as M


def _data(n=8):
    rng = np.random.default_rng(0)
    return [{"input": rng.standard_normal(4).astype(np.float32), "label": M.LABELS[i % 3]} for i in range(n)]


def _layer(spec, name):
    return next(layer for layer in spec.neuralNetworkClassifier.layers if layer.name == name)


def test_the_callers_random_state_is_unchanged():
    spec = M.dense_classifier(shuffle=True)  # shuffles without a seed
    torch.manual_seed(123)
    np.random.seed(7)
    want_torch, want_np = torch.rand(3), np.random.rand(3)
    torch.manual_seed(123)
    np.random.seed(7)
    mlupdate.UpdateTask(spec, _data()).run()
    assert torch.equal(torch.rand(3), want_torch)
    np.testing.assert_array_equal(np.random.rand(3), want_np)


@pytest.mark.parametrize("key", ["epochs", "mini_batch_size"])
def test_non_positive_epochs_and_batch_sizes_are_refused(key):
    spec = M.dense_classifier()
    params = spec.neuralNetworkClassifier.updateParams
    if key == "epochs":
        params.epochs.defaultValue = 0
        del params.epochs.set.values[:]
    else:
        params.optimizer.sgdOptimizer.miniBatchSize.defaultValue = 0
        params.optimizer.sgdOptimizer.miniBatchSize.set.values.append(0)
    with pytest.raises(mlupdate.Error):
        mlupdate.UpdateTask(spec, _data()).run()


def test_a_bias_marked_not_updatable_is_refused_as_core_ml_does():
    # Core ML's validator requires isUpdatable on both the weights and the bias of an updatable layer
    spec = M.dense_classifier()
    _layer(spec, "d2").innerProduct.bias.isUpdatable = False
    with pytest.raises(mlupdate.NotUpdatableError, match="bias"):
        mlupdate.UpdateTask(spec, _data())


def test_a_layer_without_backpropagation_before_the_loss_is_refused():
    rng = np.random.default_rng(0)
    b = NeuralNetworkBuilder([("input", datatypes.Array(4))], [("probs", datatypes.Array(3))], mode="classifier")
    b.add_inner_product("d", rng.standard_normal((3, 4)).astype(np.float32), None, 4, 3, False, "input", "h")
    b.add_activation("leaky", "LEAKYRELU", "h", "hl", params=[0.1])
    b.add_softmax("sm", "hl", "probs")
    b.set_class_labels(M.LABELS, predicted_feature_name="label", prediction_blob="probs")
    b.make_updatable(["d"])
    b.set_categorical_cross_entropy_loss(name="loss", input="probs")
    b.set_sgd_optimizer(SgdParams(lr=0.1, batch=2))
    b.set_epochs(1)
    with pytest.raises(mlupdate.NotUpdatableError, match="leaky"):
        mlupdate.UpdateTask(b.spec, _data())


def test_the_loss_softmax_need_not_feed_a_declared_output():
    # coremltools' own recipe: the loss reads a softmax that no declared output needs
    rng = np.random.default_rng(0)
    b = NeuralNetworkBuilder([("input", datatypes.Array(4))], [("out", datatypes.Array(3))])
    b.add_inner_product("d", rng.standard_normal((3, 4)).astype(np.float32), None, 4, 3, False, "input", "out")
    b.add_softmax("sm", "out", "output1")
    b.make_updatable(["d"])
    b.set_categorical_cross_entropy_loss(name="lossLayer", input="output1")
    b.set_sgd_optimizer(SgdParams(lr=0.5, batch=4))
    b.set_epochs(2)
    training = b.spec.description.trainingInput
    target = training[-1].name
    data = [{"input": np.eye(4, dtype=np.float32)[i % 4], target: np.array([i % 3], np.float32)} for i in range(8)]
    ctx = mlupdate.UpdateTask(b.spec, data).run()
    assert ctx.model.spec.neuralNetwork.layers[0].innerProduct.weights.floatValue != \
        b.spec.neuralNetwork.layers[0].innerProduct.weights.floatValue


def test_the_frozen_part_runs_on_its_own_modules(monkeypatch):
    import mlupdate.update.trainer as trainer
    from mlupdate.runtime.execution import Execution
    from mlupdate.update.parameters import resolve

    spec = M.dense_classifier(updatable=("d2",))
    values, _, _ = resolve(spec, None, None)
    job = trainer.NetworkUpdate(spec, values, Execution("cpu_only"), "center_crop", _data())
    captured = []
    real = trainer.make_executor
    monkeypatch.setattr(trainer, "make_executor", lambda graph, *a, **k: captured.append(graph) or real(graph, *a, **k))
    job.precompute()
    frozen = captured[0]
    assert not {id(p) for p in job.params} & {id(p) for p in frozen.parameters()}
    frozen.double()  # a simulated device move of the frozen part ...
    assert all(p.dtype == torch.float32 for p in job.params)  # ... leaves the head where the optimizer has it
    job.train(_Control())


class _Control:
    def emit(self, event, metrics, snapshot):
        pass

    def take_learning_rate(self):
        return None

    def check_cancel(self):
        pass


def test_batchnorm_statistics_do_not_depend_on_how_examples_are_grouped():
    # computeMeanVar without instance normalization: the frozen-features path (chunks of 32) and the
    # recompute path (mini-batches of 4) must train the same weights, and predictions must not mix examples
    from coremltools.models.neural_network import NeuralNetworkBuilder as B

    rng = np.random.default_rng(3)
    b = B([("input", datatypes.Array(3, 2, 2))], [("probs", datatypes.Array(3))], mode="classifier")
    b.add_batchnorm("bn", 3, np.ones(3, np.float32), np.zeros(3, np.float32), np.zeros(3, np.float32),
                    np.ones(3, np.float32), input_name="input", output_name="n")
    b.spec.neuralNetworkClassifier.layers[0].batchnorm.computeMeanVar = True  # the builder refuses; the proto allows
    b.add_flatten("flat", 0, "n", "f")
    b.add_inner_product("d", rng.standard_normal((3, 12)).astype(np.float32), None, 12, 3, False, "f", "logits")
    b.add_softmax("sm", "logits", "probs")
    b.set_class_labels(M.LABELS, predicted_feature_name="label", prediction_blob="probs")
    b.make_updatable(["d"])
    b.set_categorical_cross_entropy_loss(name="loss", input="probs")
    b.set_sgd_optimizer(SgdParams(lr=0.1, batch=4))
    b.set_epochs(3)
    b.spec.neuralNetworkClassifier.updateParams.shuffle.defaultValue = False
    data = [{"input": rng.standard_normal((3, 2, 2)).astype(np.float32), "label": M.LABELS[i % 3]} for i in range(8)]
    cached = mlupdate.UpdateTask(b.spec, data).run().model
    recomputed = mlupdate.UpdateTask(b.spec, data, _frozen_cache=False).run().model

    def dense(m):
        return np.asarray(m.spec.neuralNetworkClassifier.layers[2].innerProduct.weights.floatValue)

    np.testing.assert_allclose(dense(cached), dense(recomputed), atol=1e-5)
    probs = cached.description.predicted_probabilities_name
    alone = cached.predict(data[0])[probs]
    together = cached.predict_batch(data[:5])[0][probs]
    assert all(abs(alone[k] - together[k]) < 1e-6 for k in alone)
