"""The neural-network update: frozen part once on the inference executor, trainable rest in autograd.

Layers that no updatable layer influences are computed once per training example per task (on
onnxruntime on the CPU, in chunks); only the layers from the first updatable layer to the loss
input run in torch autograd, over the cached boundary tensors, for every epoch.
"""

from __future__ import annotations

import copy
import hashlib
import os
import secrets
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import numpy as np
import torch

from mlupdate.errors import NotUpdatableError, UpdateError
from mlupdate.layers.weights import set_weights, weight_array
from mlupdate.runtime.execution import TORCH_CPU, Execution
from mlupdate.runtime.executors import make_executor
from mlupdate.runtime.network import CHUNK, DECODE_THREADS, NetworkProgram
from mlupdate.spec.io import copy_spec
from mlupdate.spec.model_types import UPDATABLE_LAYERS, network_of, not_updatable
from mlupdate.spec.params import optimizer_of
from mlupdate.update.data import annotate, require_features
from mlupdate.update.losses import as_rows, loss_of, set_classes


class Control(Protocol):
    """What the task gives a trainer: events, cancellation and mid-run learning-rate changes."""

    def emit(self, event: str, metrics: dict[str, Any], snapshot: Callable[[], Callable[[], Any]]) -> None:
        """Report an event (calls the handler if registered; may raise to stop the run)."""
        ...

    def take_learning_rate(self) -> float | None:
        """A learning rate set by ``resume(parameters=...)`` since the last call, if any."""
        ...

    def check_cancel(self) -> None:
        """Raise if the task was cancelled."""
        ...


class NetworkUpdate:
    """One update of a neural network (``neuralNetwork*`` spec).

    Args:
        spec: A private copy of the model's spec; updated in place at the end of ``train``.
        values: Resolved update parameters.
        execution: Where the frozen part runs (``cpu_only``: onnxruntime).
        crop_and_scale: How images of another size are fitted.
        examples: Training examples (feature dicts), checked here.
        frozen_cache: False recomputes the whole network in torch every step (the reference path).

    Raises:
        NotUpdatableError: The model is not updatable or has no loss, optimizer or updatable layer.
        TrainingDataError: Missing training inputs or bad labels.
    """

    def __init__(self, spec: Any, values: Mapping[str, Any], execution: Execution, crop_and_scale: str,
                 examples: Sequence[Mapping[str, Any]], frozen_cache: bool = True) -> None:
        not_updatable(spec)
        self.spec, self.values, self.execution, self.crop = spec, dict(values), execution, crop_and_scale
        self.examples, self.frozen_cache = examples, frozen_cache
        self.nn = network_of(spec)
        self.opt_kind, _ = optimizer_of(self.nn.updateParams)
        if self.opt_kind is None:
            raise NotUpdatableError("The model declares no optimizer; set SGD or Adam (mlupdate make-updatable).")
        if self.values.get("epochs") is None:
            raise NotUpdatableError("The model declares no epochs parameter; set one (mlupdate make-updatable).")
        # refuse_invalid's lint loaded this spec (compile and dry run) just before: the graph is enough here
        self.program = NetworkProgram(spec, TORCH_CPU, graph_only=True)
        if not self.program.batched:
            raise NotUpdatableError("mlupdate updates networks whose inputs carry a batch axis (images, or "
                                    "arrays whose first dimension is 1); this model's inputs do not.")
        desc = self.program.desc
        self.trainable = [(f"l{i}", layer) for i, layer in enumerate(self.nn.layers) if layer.isUpdatable]
        if not self.trainable:
            raise NotUpdatableError("The model is marked updatable but none of its layers is; mark a "
                                    "convolution or innerProduct layer updatable.")
        for _, layer in self.trainable:
            if layer.WhichOneof("layer") not in UPDATABLE_LAYERS:
                raise NotUpdatableError(f"Layer '{layer.name}' is marked updatable but is a "
                                        f"{layer.WhichOneof('layer')}; Core ML updates only {UPDATABLE_LAYERS}.")
        training = dict(desc.training_inputs)
        if not training:
            raise NotUpdatableError("The model declares no training inputs; re-author it (mlupdate make-updatable).")
        graph = self.program.graph
        self.loss = loss_of(self.nn, graph, desc, training)
        self.inputs = list(self.program.inputs)
        require_features(examples, [*self.inputs, training[self.loss.target.name]], list(training))
        self.targets = self.loss.target.tensor(examples)
        names = [f.name for f in self.inputs]
        self.full = graph.subgraph(names, [self.loss.blob])
        self.boundary, _ = self.full.frozen_boundary([layer.name for _, layer in self.trainable])
        self.frozen = graph.subgraph(names, self.boundary)
        self.head = graph.subgraph(self.boundary, [self.loss.blob], with_preprocess=False)
        self.params = []
        for key, layer in self.trainable:
            module, p = graph.layers[key], getattr(layer, layer.WhichOneof("layer"))
            # each WeightParams' own isUpdatable flag decides whether it learns (Core ML's validator
            # requires the weights' flag on an updatable layer; lint reports it)
            if p.weights.isUpdatable:
                self.params.append(module.weight)
            if module.bias is not None and p.bias.isUpdatable:
                self.params.append(module.bias)
        if not self.params:
            raise NotUpdatableError("No weights of the updatable layers are marked isUpdatable; mark the weights "
                                    "(mlupdate make-updatable does).")
        self.cache: list[torch.Tensor] = []
        self.last_metrics: dict[str, Any] = {}

    def validate(self) -> None:
        """Decode and check every example's inputs (images included) without running anything."""
        for start in range(0, len(self.examples), CHUNK):
            self._encode(start, self.examples[start:start + CHUNK])

    # -- the frozen part ------------------------------------------------------------------------
    def _encode(self, start: int, chunk: Sequence[Mapping[str, Any]], control: Control | None = None) \
            -> list[np.ndarray]:
        def one(j: int) -> list[np.ndarray]:
            if control is not None:  # a cancel stops the decoding pool within one image
                control.check_cancel()
            ex = chunk[j]
            return [annotate(start + j, lambda f=f: self.program.encode_one(f, ex[f.name], self.crop))
                    for f in self.inputs]
        with ThreadPoolExecutor(max_workers=min(DECODE_THREADS, os.cpu_count() or 1)) as pool:
            rows = list(pool.map(one, range(len(chunk))))
        return [np.stack([r[k] for r in rows]) for k in range(len(self.inputs))]

    def frozen_key(self) -> str:
        """Identifies the frozen part (its layers, preprocessing, inputs and boundary): equal keys, equal features."""
        h = hashlib.sha256()
        keys = {n.key for n in self.frozen.nodes}
        for i, layer in enumerate(self.nn.layers):
            if f"l{i}" in keys:
                h.update(layer.SerializeToString())
        for pp in self.nn.preprocessing:
            h.update(pp.SerializeToString())
        for f in self.spec.description.input:
            h.update(f.SerializeToString())
        h.update("|".join(self.boundary).encode())
        return "frozen/" + h.hexdigest()

    def precompute(self, control: Control | None = None) -> None:
        """Decode every example and run the frozen part once (chunks of ``CHUNK``), caching its outputs."""
        trivial = not self.frozen.nodes and not any(self.frozen.preprocessed(b) for b in self.boundary)
        executor = None
        if self.frozen_cache and not trivial:
            # the frozen part runs on its own copy of the modules: moving it to a device never moves
            # the trainable head's parameters behind the optimizer's back
            executor = make_executor(copy.deepcopy(self.frozen), self.program.sample_inputs(1), self.execution, True,
                                     self.frozen_key())
        parts: list[list[np.ndarray]] = []
        for start in range(0, len(self.examples), CHUNK):
            if control is not None:
                control.check_cancel()
            arrays = self._encode(start, self.examples[start:start + CHUNK], control)
            if not self.frozen_cache:
                parts.append(arrays)
            elif trivial:
                names = [f.name for f in self.inputs]
                parts.append([arrays[names.index(b)] for b in self.boundary])
            else:
                parts.append(executor.run(arrays))
        self.cache = [torch.from_numpy(np.ascontiguousarray(np.concatenate([p[k] for p in parts]), np.float32))
                      for k in range(len(parts[0]))]

    def scores(self) -> dict[str, float]:
        """Loss (and, for categorical cross-entropy, accuracy) of the current weights on every example."""
        if not self.cache:
            self.precompute()
        with torch.no_grad():
            out = self._forward(torch.arange(len(self.examples)))
            result = {"loss": float(self.loss(out, self.targets))}
            if self.loss.kind == "cce":
                pred = as_rows(out, self.loss.axis).argmax(1)
                result["accuracy"] = float((pred == self.targets).float().mean())
        return result

    def _forward(self, idx: torch.Tensor) -> torch.Tensor:
        graph = self.head if self.frozen_cache else self.full
        # index_select: one gather along the examples axis (advanced indexing costs more per step)
        return graph(*[c.index_select(0, idx) for c in self.cache])[0]

    # -- training -------------------------------------------------------------------------------
    def _optimizer(self) -> torch.optim.Optimizer:
        v = self.values
        if self.opt_kind == "sgd":
            return torch.optim.SGD(self.params, lr=v["learning_rate"], momentum=v.get("momentum") or 0.0)
        return torch.optim.Adam(self.params, lr=v["learning_rate"], betas=(v["beta1"], v["beta2"]), eps=v["eps"])

    def snapshot(self) -> Callable[[], Any]:
        """Capture the current weights; the returned function builds a spec holding them (thread-safe)."""
        captured = self._weights()
        return lambda: self._spec_with(captured)

    def _weights(self) -> list[tuple[int, str, np.ndarray, np.ndarray | None]]:
        out = []
        for key, layer in self.trainable:
            module = self.program.graph.layers[key]
            bias = None if module.bias is None else module.bias.detach().cpu().numpy().copy()
            out.append((int(key[1:]), layer.WhichOneof("layer"), module.weight.detach().cpu().numpy().copy(), bias))
        return out

    def load_weights(self, spec: Any) -> None:
        """Start from ``spec``'s updatable layers' weights (``spec``: this job's model, other weights there)."""
        layers = network_of(spec).layers
        with torch.no_grad():
            for key, layer in self.trainable:
                p = getattr(layers[int(key[1:])], layer.WhichOneof("layer"))
                module = self.program.graph.layers[key]
                w = weight_array(p.weights, None, f"Layer '{layer.name}' weights")
                module.weight.copy_(torch.from_numpy(w).reshape(module.weight.shape))
                if module.bias is not None:
                    module.bias.copy_(torch.from_numpy(weight_array(p.bias, None, f"Layer '{layer.name}' bias")))
        self._spec_with(self._weights(), self.spec)

    def _spec_with(self, weights: list[tuple[int, str, np.ndarray, np.ndarray | None]], spec: Any = None) -> Any:
        spec = copy_spec(self.spec) if spec is None else spec
        layers = network_of(spec).layers
        for index, kind, w, b in weights:
            p = getattr(layers[index], kind)
            set_weights(p.weights, w)
            if b is not None:
                set_weights(p.bias, b)
        return spec

    def train(self, control: Control) -> Any:
        """Run every epoch; returns the updated spec (``self.spec``, weights written back).

        Raises:
            UpdateError: If the loss becomes NaN or infinite.
        """
        if not self.cache:  # not precomputed (or handed features) before the run
            self.precompute(control)
        if self.loss.kind == "cce":
            with torch.no_grad():
                classes = int(self._forward(torch.arange(1)).shape[self.loss.axis])
            self.loss = set_classes(self.loss, classes)
            if self.loss.target.kind == "index" and int(self.targets.max()) >= classes:
                raise UpdateError(f"A class index in '{self.loss.target.name}' is >= {classes}, the number of "
                                  "classes the softmax outputs.")
        for p in self.params:
            p.requires_grad_(True)
        opt = self._optimizer()
        v = self.values
        n, bs, epochs = len(self.examples), int(v["mini_batch_size"]), int(v["epochs"])
        gen = torch.Generator()
        # a generator of the task's own: the caller's torch and numpy random state stay as they were
        gen.manual_seed(int(v["seed"]) if v.get("seed") is not None else secrets.randbits(63))
        control.emit("training_begin", {"loss": None, "epoch_index": 0, "mini_batch_index": 0}, self.snapshot)
        loss_value = float("nan")
        for epoch in range(epochs):
            order = torch.randperm(n, generator=gen) if v.get("shuffle") else torch.arange(n)
            total = 0.0
            batch = 0
            for batch, start in enumerate(range(0, n, bs)):
                control.check_cancel()
                lr = control.take_learning_rate()
                if lr is not None:
                    for group in opt.param_groups:
                        group["lr"] = lr
                    self.values["learning_rate"] = lr
                idx = order[start:start + bs]
                opt.zero_grad(set_to_none=True)
                loss = self.loss(self._forward(idx), self.targets[idx])
                loss_value = float(loss.detach())
                if not np.isfinite(loss_value):
                    raise UpdateError(
                        f"The loss became {loss_value} at epoch {epoch}, mini-batch {batch}: training diverged. "
                        f"Lower the learning rate (now {opt.param_groups[0]['lr']})."
                    )
                loss.backward()
                opt.step()
                total += loss_value * len(idx)
                self.last_metrics = {"loss": loss_value, "epoch_index": epoch, "mini_batch_index": batch}
                control.emit("mini_batch_end", self.last_metrics, self.snapshot)
            loss_value = total / n
            self.last_metrics = {"loss": loss_value, "epoch_index": epoch, "mini_batch_index": batch}
            control.emit("epoch_end", self.last_metrics, self.snapshot)
        for p in self.params:
            p.requires_grad_(False)
            if not torch.isfinite(p).all():
                raise UpdateError("The updated weights hold NaN or infinity: lower the learning rate.")
        self._spec_with(self._weights(), self.spec)
        return self.spec
