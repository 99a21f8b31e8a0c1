"""UpdateTask's semantics against plain PyTorch loops on the same weights (docs/update-semantics.md)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mlupdate
from tests.unit import _update_models as M


def _data(n=10, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 4)).astype(np.float32)
    y = [i % 3 for i in range(n)]
    return x, y, [{"input": x[i], "label": M.LABELS[y[i]]} for i in range(n)]


def _close(a, b, tol=1e-5):
    assert torch.allclose(a, b, atol=tol, rtol=0), float((a - b).abs().max())


@pytest.mark.parametrize("opt,updatable", [("sgd", ("d2",)), ("adam", ("d1", "d2"))])
def test_dense_cce_matches_torch(opt, updatable):
    spec = M.dense_classifier(updatable=updatable, opt=opt, batch=4, epochs=3)
    x, y, data = _data(10)  # 10 examples, batches of 4: the last mini-batch holds 2
    new = mlupdate.UpdateTask(spec, data).run().spec
    params, fwd = M.dense_forward(spec)
    if opt == "sgd":
        def make(ps):
            return torch.optim.SGD(ps[2:], lr=0.1, momentum=0.9)
    else:
        def make(ps):
            return torch.optim.Adam(ps, lr=0.1, betas=(0.8, 0.99), eps=1e-7)
    M.train_reference(params, fwd, M.cce, torch.tensor(x), torch.tensor(y), make, 4, 3)
    w1, b1, w2, b2 = params
    _close(M.weights(new, "d2")[0], w2)
    _close(M.weights(new, "d2")[1], b2)
    if "d1" in updatable:
        _close(M.weights(new, "d1")[0], w1)
    else:  # frozen layers are bit-for-bit unchanged
        assert M.layer(new, "d1").SerializeToString() == M.layer(spec, "d1").SerializeToString()
    assert not torch.allclose(M.weights(new, "d2")[0], M.weights(spec, "d2")[0])


def test_mse_matches_torch():
    spec = M.mse_regressor(lr=0.05, batch=4, epochs=2)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((9, 4)).astype(np.float32)
    t = rng.standard_normal((9, 2)).astype(np.float32)
    new = mlupdate.UpdateTask(spec, [{"input": x[i], "out_true": t[i]} for i in range(9)]).run().spec
    params, fwd = M.dense_forward(spec)

    def mse(out, target):  # mean over the batch of each example's mean squared error
        return ((out - target) ** 2).mean(dim=1).mean()
    M.train_reference(params, fwd, mse, torch.tensor(x), torch.tensor(t),
                      lambda ps: torch.optim.SGD(ps[2:], lr=0.05, momentum=0.5), 4, 2)
    _close(M.weights(new, "d2")[0], params[2])
    _close(M.weights(new, "d2")[1], params[3])


def _conv_data(n=7):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((n, 1, 6, 6)).astype(np.float32)
    y = [(i * 2) % 3 for i in range(n)]
    return x, y, [{"input": x[i], "label": M.LABELS[y[i]]} for i in range(n)]


def test_conv_and_dense_match_torch_and_frozen_conv_unchanged():
    spec = M.conv_classifier(lr=0.05, batch=3, epochs=2)
    x, y, data = _conv_data(7)
    new = mlupdate.UpdateTask(spec, data).run().spec
    params, fwd = M.conv_forward(spec)
    M.train_reference(params, fwd, M.cce, torch.tensor(x), torch.tensor(y),
                      lambda ps: torch.optim.SGD(ps[2:], lr=0.05, momentum=0.9), 3, 2)
    for name, (w, b) in {"conv1": params[2:4], "fc": params[4:6]}.items():
        _close(M.weights(new, name)[0], w)
        _close(M.weights(new, name)[1], b)
    assert M.layer(new, "conv0").SerializeToString() == M.layer(spec, "conv0").SerializeToString()


def test_frozen_cache_equals_full_recompute():
    spec = M.conv_classifier(lr=0.05, batch=2, epochs=3)
    _, _, data = _conv_data(7)
    cached = mlupdate.UpdateTask(spec, data).run().spec
    full = mlupdate.UpdateTask(spec, data, _frozen_cache=False).run().spec
    for name in ("conv1", "fc"):
        for a, b in zip(M.weights(cached, name), M.weights(full, name), strict=True):
            _close(a, b)


def test_learning_rate_change_in_handler_matches_torch():
    spec = M.dense_classifier(opt="sgd", batch=4, epochs=3, momentum=0.0)
    x, y, data = _data(8)

    def handler(ctx):
        if ctx.event == "epoch_end" and ctx.metrics["epoch_index"] == 0:
            ctx.task.resume(parameters={"learning_rate": 0.01})
    seen = []
    task = mlupdate.UpdateTask(spec, data, progress_handlers=mlupdate.ProgressHandlers(
        {"epoch_end"}, lambda c: (handler(c), seen.append(c.parameters["learning_rate"]))))
    new = task.run().spec
    params, fwd = M.dense_forward(spec)
    M.train_reference(params, fwd, M.cce, torch.tensor(x), torch.tensor(y),
                      lambda ps: torch.optim.SGD(ps[2:], lr=0.1), 4, 3, lr_after_epoch=(0, 0.01))
    _close(M.weights(new, "d2")[0], params[2])
    assert seen == [0.1, 0.01, 0.01]


def test_shuffle_follows_seeded_generator_and_is_reproducible():
    spec = M.dense_classifier(opt="sgd", batch=3, epochs=3, shuffle=True, seed=7, momentum=0.0)
    x, y, data = _data(8)
    a = mlupdate.UpdateTask(spec, data).run().spec
    b = mlupdate.UpdateTask(spec, data).run().spec
    c = mlupdate.UpdateTask(spec, data, parameters={"seed": 8}).run().spec
    _close(M.weights(a, "d2")[0], M.weights(b, "d2")[0], 0)
    assert not torch.allclose(M.weights(a, "d2")[0], M.weights(c, "d2")[0])
    gen = torch.Generator()
    gen.manual_seed(7)
    order = [torch.randperm(8, generator=gen) for _ in range(3)]  # a new permutation each epoch
    params, fwd = M.dense_forward(spec)
    M.train_reference(params, fwd, M.cce, torch.tensor(x), torch.tensor(y),
                      lambda ps: torch.optim.SGD(ps[2:], lr=0.1), 3, 3, order=order)
    _close(M.weights(a, "d2")[0], params[2])


def test_int_label_targets_and_overrides():
    spec = M.dense_classifier(opt="sgd", batch=4, epochs=3)
    x, y, _ = _data(6)
    # a classifier target given as the label; overriding epochs and batch from the allowed sets
    data = [{"input": x[i], "label": M.LABELS[y[i]]} for i in range(6)]
    new = mlupdate.UpdateTask(spec, data, configuration={"parameters": {"epochs": 1}},
                              parameters={"miniBatchSize": 2}).run()
    assert new.parameters["epochs"] == 1 and new.parameters["mini_batch_size"] == 2
    assert new.metrics["epoch_index"] == 0 and new.metrics["mini_batch_index"] == 2
    params, fwd = M.dense_forward(spec)
    M.train_reference(params, fwd, M.cce, torch.tensor(x), torch.tensor(y),
                      lambda ps: torch.optim.SGD(ps[2:], lr=0.1, momentum=0.9), 2, 1)
    _close(M.weights(new.spec, "d2")[0], params[2])


def test_evaluate_is_the_loss_and_accuracy_of_plain_pytorch_on_the_same_weights():
    spec = M.dense_classifier(updatable=("d2",), batch=4, epochs=3)
    x, y, data = _data(10)
    task = mlupdate.UpdateTask(spec, data)
    _, fwd = M.dense_forward(spec)
    with torch.no_grad():
        logits = fwd(torch.tensor(x))
    got = task.evaluate()
    assert got["loss"] == pytest.approx(float(M.cce(logits, torch.tensor(y))), rel=1e-5)
    assert got["accuracy"] == pytest.approx(float((logits.argmax(1) == torch.tensor(y)).float().mean()))


def test_handed_frozen_features_skip_the_frozen_pass_and_train_the_same():
    spec = M.dense_classifier(updatable=("d2",), batch=4, epochs=3)
    _, _, data = _data(10)
    first = mlupdate.UpdateTask(spec, data)
    first.precompute()
    second = mlupdate.UpdateTask(spec, data)
    assert second.frozen_key == first.frozen_key
    second.frozen_features = first.frozen_features
    second._job.precompute = None  # the run must not need it any more
    _close(M.weights(second.run().spec, "d2")[0], M.weights(mlupdate.UpdateTask(spec, data).run().spec, "d2")[0])
    with pytest.raises(mlupdate.ParameterError, match="frozen_features must hold"):
        mlupdate.UpdateTask(spec, data[:5]).frozen_features = first.frozen_features
