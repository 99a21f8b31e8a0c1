"""Updating a pipeline whose last model is an updatable neural network (Core ML allows it).

The extractor (frozen) and the head are built with coremltools' NeuralNetworkBuilder; the head is made
updatable with coremltools' own builder calls. Ground truth: a plain PyTorch loop on the same weights.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from coremltools.models import datatypes
from coremltools.models.neural_network import NeuralNetworkBuilder, SgdParams
from coremltools.proto import Model_pb2

import mlupdate

LABELS = ["a", "b", "c"]


def _pipeline(rng: np.random.Generator) -> tuple[object, dict[str, np.ndarray]]:
    w = {"w1": rng.normal(size=(5, 4)).astype(np.float32), "b1": rng.normal(size=5).astype(np.float32),
         "w2": rng.normal(size=(3, 5)).astype(np.float32), "b2": rng.normal(size=3).astype(np.float32)}
    ex = NeuralNetworkBuilder([("x", datatypes.Array(4))], [("emb", datatypes.Array(5))])
    ex.add_inner_product("extract", w["w1"], w["b1"], 4, 5, True, "x", "emb")
    head = NeuralNetworkBuilder([("emb", datatypes.Array(5))], [("probs", datatypes.Array(3))],
                                mode="classifier")
    head.add_inner_product("dense", w["w2"], w["b2"], 5, 3, True, "emb", "logits")
    head.add_softmax("softmax", "logits", "probs")
    head.set_class_labels(LABELS, predicted_feature_name="label", prediction_blob="probs")
    head.make_updatable(["dense"])
    head.set_categorical_cross_entropy_loss(name="loss", input="probs")
    head.set_sgd_optimizer(SgdParams(lr=0.1, batch=2))
    head.set_epochs(3)

    spec = Model_pb2.Model()
    spec.specificationVersion = 4
    spec.isUpdatable = True
    pipe = spec.pipelineClassifier.pipeline
    pipe.models.add().CopyFrom(ex.spec)
    pipe.models.add().CopyFrom(head.spec)
    pipe.models[0].specificationVersion = 4
    d = spec.description
    d.input.add().CopyFrom(ex.spec.description.input[0])
    for out in head.spec.description.output:
        d.output.add().CopyFrom(out)
    d.predictedFeatureName = head.spec.description.predictedFeatureName
    d.predictedProbabilitiesName = head.spec.description.predictedProbabilitiesName
    d.trainingInput.add().CopyFrom(ex.spec.description.input[0])
    label_in = [t for t in head.spec.description.trainingInput if t.name == "label"][0]
    d.trainingInput.add().CopyFrom(label_in)
    return spec, w


def test_pipeline_ending_in_a_network_trains_like_torch(tmp_path):
    rng = np.random.default_rng(0)
    spec, w = _pipeline(rng)
    xs = rng.normal(size=(7, 4)).astype(np.float32)
    ys = [LABELS[i % 3] for i in range(7)]
    src = tmp_path / "pipe.mlmodel"
    mlupdate.spec.io.write_spec(spec, src)
    before = src.read_bytes()
    events = []
    handlers = mlupdate.ProgressHandlers(events={"epoch_end"}, handler=lambda ctx: events.append(ctx.model))
    ctx = mlupdate.UpdateTask(src, [{"x": x, "label": y} for x, y in zip(xs, ys, strict=True)],
                              parameters={"shuffle": False}, progress_handlers=handlers).run()

    # plain torch: the frozen extractor, then SGD on the head, batches of 2 in order (last one partial)
    emb = torch.from_numpy(xs @ w["w1"].T + w["b1"])
    target = torch.tensor([LABELS.index(y) for y in ys])
    w2 = torch.tensor(w["w2"], requires_grad=True)
    b2 = torch.tensor(w["b2"], requires_grad=True)
    opt = torch.optim.SGD([w2, b2], lr=0.1)
    for _ in range(3):
        for s in range(0, 7, 2):
            opt.zero_grad()
            F.cross_entropy(emb[s:s + 2] @ w2.T + b2, target[s:s + 2]).backward()
            opt.step()

    out = ctx.model.spec.pipelineClassifier.pipeline.models[1].neuralNetworkClassifier.layers[0].innerProduct
    np.testing.assert_allclose(np.array(out.weights.floatValue).reshape(3, 5), w2.detach().numpy(), atol=1e-5)
    np.testing.assert_allclose(np.array(out.bias.floatValue), b2.detach().numpy(), atol=1e-5)
    extractor = ctx.model.spec.pipelineClassifier.pipeline.models[0]
    assert extractor == spec.pipelineClassifier.pipeline.models[0]  # frozen
    assert src.read_bytes() == before  # the source is never modified

    probs = torch.softmax(emb @ w2.T + b2, dim=1).detach().numpy()
    got = ctx.model.predict_batch([{"x": x} for x in xs])
    for p, g in zip(probs, got, strict=True):
        np.testing.assert_allclose([g["probs"][k] for k in LABELS], p, atol=1e-5)
        assert g["label"] == LABELS[int(np.argmax(p))]
    assert len(events) == 3 and events[-1].description.model_type == "pipelineClassifier"
