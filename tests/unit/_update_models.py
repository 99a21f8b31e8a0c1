"""Small updatable models built with coremltools' NeuralNetworkBuilder, and plain-torch twins."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import torch
import torch.nn.functional as F

logging.getLogger("coremltools").setLevel(logging.ERROR)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from coremltools.models import datatypes
    from coremltools.models.neural_network import AdamParams, NeuralNetworkBuilder, SgdParams

LABELS = ["a", "b", "c"]


def _optimizer(b: NeuralNetworkBuilder, opt: str, lr: float, batch: int, momentum: float) -> None:
    if opt == "sgd":
        p = SgdParams(lr=lr, batch=batch, momentum=momentum)
        p.set_batch(batch, [1, 2, 3, 4, 5, 8, batch] if batch not in (1, 2, 3, 4, 5, 8) else [1, 2, 3, 4, 5, 8])
        b.set_sgd_optimizer(p)
    else:
        p = AdamParams(lr=lr, batch=batch, beta1=0.8, beta2=0.99, eps=1e-7)
        p.set_batch(batch, [1, 2, 3, 4, 5, 8])
        b.set_adam_optimizer(p)


def dense_classifier(updatable=("d2",), opt="sgd", lr=0.1, batch=4, momentum=0.9, epochs=3, seed=None,
                     shuffle=False):
    """input[4] -> d1 -> relu -> d2 -> softmax, classifier over a/b/c with CCE on the softmax."""
    rng = np.random.default_rng(0)
    b = NeuralNetworkBuilder([("input", datatypes.Array(4))], [("probs", datatypes.Array(3))], mode="classifier")
    b.add_inner_product("d1", rng.standard_normal((8, 4)).astype(np.float32), rng.standard_normal(8).astype(np.float32),
                        4, 8, True, "input", "h1")
    b.add_activation("r1", "RELU", "h1", "h1r")
    b.add_inner_product("d2", rng.standard_normal((3, 8)).astype(np.float32), rng.standard_normal(3).astype(np.float32),
                        8, 3, True, "h1r", "logits")
    b.add_softmax("sm", "logits", "probs")
    b.set_class_labels(LABELS, predicted_feature_name="label", prediction_blob="probs")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        b.make_updatable(list(updatable))
        b.set_categorical_cross_entropy_loss(name="lossLayer", input="probs")
    _optimizer(b, opt, lr, batch, momentum)
    b.set_epochs(epochs, [1, 2, 3, 4, 5, 20, 50, epochs])
    if shuffle:
        b.set_shuffle(seed=seed)
    else:
        b.spec.neuralNetworkClassifier.updateParams.shuffle.defaultValue = False
    return b.spec


def mse_regressor(lr=0.05, batch=4, epochs=2):
    """input[4] -> d1 (frozen) -> relu -> d2 (updatable) -> out[2], MSE against "out_true"."""
    rng = np.random.default_rng(1)
    b = NeuralNetworkBuilder([("input", datatypes.Array(4))], [("out", datatypes.Array(2))])
    b.add_inner_product("d1", rng.standard_normal((8, 4)).astype(np.float32), rng.standard_normal(8).astype(np.float32),
                        4, 8, True, "input", "h1")
    b.add_activation("r1", "RELU", "h1", "h1r")
    b.add_inner_product("d2", rng.standard_normal((2, 8)).astype(np.float32), rng.standard_normal(2).astype(np.float32),
                        8, 2, True, "h1r", "out")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        b.make_updatable(["d2"])
        b.set_mean_squared_error_loss(name="mse", input_feature=("out", datatypes.Array(2)))
    _optimizer(b, "sgd", lr, batch, 0.5)
    b.set_epochs(epochs, [1, 2, 3, epochs])
    b.spec.neuralNetwork.updateParams.shuffle.defaultValue = False
    return b.spec


def conv_classifier(lr=0.05, batch=3, epochs=2, image=False):
    """[1,6,6] -> conv0 (frozen) -> relu -> conv1 (updatable) -> relu -> flatten -> fc (updatable) -> softmax."""
    rng = np.random.default_rng(2)
    b = NeuralNetworkBuilder([("input", datatypes.Array(1, 6, 6))], [("probs", datatypes.Array(3))],
                             mode="classifier")
    w0 = rng.standard_normal((3, 3, 1, 2)).astype(np.float32) * 0.5  # HWIO as the builder wants
    b.add_convolution("conv0", 1, 2, 3, 3, 1, 1, "same", 1, w0, rng.standard_normal(2).astype(np.float32), True,
                      input_name="input", output_name="c0")
    b.add_activation("r0", "RELU", "c0", "c0r")
    w1 = rng.standard_normal((3, 3, 2, 2)).astype(np.float32) * 0.5
    b.add_convolution("conv1", 2, 2, 3, 3, 1, 1, "valid", 1, w1, rng.standard_normal(2).astype(np.float32), True,
                      input_name="c0r", output_name="c1")
    b.add_activation("r1", "RELU", "c1", "c1r")
    b.add_flatten("flat", 0, "c1r", "f")
    b.add_inner_product("fc", rng.standard_normal((3, 32)).astype(np.float32) * 0.3,
                        rng.standard_normal(3).astype(np.float32), 32, 3, True, "f", "logits")
    b.add_softmax("sm", "logits", "probs")
    b.set_class_labels(LABELS, predicted_feature_name="label", prediction_blob="probs")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        b.make_updatable(["conv1", "fc"])
        b.set_categorical_cross_entropy_loss(name="lossLayer", input="probs")
    _optimizer(b, "sgd", lr, batch, 0.9)
    b.set_epochs(epochs, [1, 2, 3, epochs])
    spec = b.spec
    spec.neuralNetworkClassifier.updateParams.shuffle.defaultValue = False
    if image:
        for fd in (spec.description.input[0], spec.description.trainingInput[0]):
            fd.type.imageType.width = 6
            fd.type.imageType.height = 6
            fd.type.imageType.colorSpace = 10  # GRAYSCALE
    return spec


def layer(spec, name):
    nn = getattr(spec, spec.WhichOneof("Type"))
    return next(lay for lay in nn.layers if lay.name == name)


def weights(spec, name):
    """(weight, bias) of a layer as torch tensors, in torch's layout."""
    lay = layer(spec, name)
    kind = lay.WhichOneof("layer")
    p = getattr(lay, kind)
    w = torch.tensor(np.asarray(p.weights.floatValue, np.float32))
    bias = torch.tensor(np.asarray(p.bias.floatValue, np.float32))
    if kind == "innerProduct":
        return w.reshape(p.outputChannels, p.inputChannels), bias
    return w.reshape(p.outputChannels, p.kernelChannels, *p.kernelSize), bias


def cce(logits, target):
    """-log softmax(logits)[target], averaged over the batch (written out, not F.cross_entropy)."""
    p = torch.softmax(logits, dim=1)
    return -(torch.log(p[torch.arange(len(target)), target])).mean()


def train_reference(params, forward, loss_fn, x, y, make_opt, batch, epochs, order=None, lr_after_epoch=None):
    """A plain PyTorch loop: consecutive mini-batches (last one smaller), one step each."""
    for p in params:
        p.requires_grad_(True)
    opt = make_opt(params)
    n = len(x)
    for epoch in range(epochs):
        idx_all = order[epoch] if order is not None else torch.arange(n)
        for s in range(0, n, batch):
            idx = idx_all[s:s + batch]
            opt.zero_grad()
            loss = loss_fn(forward(x[idx]), y[idx])
            loss.backward()
            opt.step()
        if lr_after_epoch is not None and epoch == lr_after_epoch[0]:
            for g in opt.param_groups:
                g["lr"] = lr_after_epoch[1]
    return [p.detach() for p in params]


def dense_forward(spec):
    """Torch forward of dense_classifier/mse_regressor from the spec's weights: returns (params, fn)."""
    w1, b1 = weights(spec, "d1")
    w2, b2 = weights(spec, "d2")

    def fwd(x):
        return F.linear(torch.relu(F.linear(x, w1, b1)), w2, b2)
    return [w1, b1, w2, b2], fwd


def conv_forward(spec):
    w0, b0 = weights(spec, "conv0")
    w1, b1 = weights(spec, "conv1")
    wf, bf = weights(spec, "fc")

    def fwd(x):
        h = torch.relu(F.conv2d(x, w0, b0, padding=1))
        h = torch.relu(F.conv2d(h, w1, b1))
        return F.linear(h.flatten(1), wf, bf)
    return [w0, b0, w1, b1, wf, bf], fwd
