"""Updating a pipeline whose last model is updatable (e.g. a feature extractor feeding a k-NN).

The earlier models only predict: they run once on the training examples (batched) to produce
the last model's inputs; the last model is then updated as it would be alone, and written back
into the pipeline.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mlupdate.errors import NotUpdatableError


class PipelineUpdate:
    """One update of a ``pipeline``/``pipelineClassifier``/``pipelineRegressor`` spec.

    Raises:
        NotUpdatableError: The pipeline or its last model is not updatable.
    """

    def __init__(self, spec: Any, values: Mapping[str, Any], compute_units: str, crop_and_scale: str,
                 examples: Sequence[Mapping[str, Any]], frozen_cache: bool = True, folder: Path | None = None) -> None:
        from mlupdate.update.trainer import not_updatable

        not_updatable(spec)
        kind = spec.WhichOneof("Type")
        self.pipe = spec.pipeline if kind == "pipeline" else getattr(spec, kind).pipeline
        last = self.pipe.models[-1]
        if not last.isUpdatable:
            raise NotUpdatableError("The pipeline's last model is not updatable; only the last model of a pipeline "
                                    "can be updated (as in Core ML).")
        self.spec, self.values, self.examples = spec, dict(values), examples
        self.units, self.crop, self.folder = compute_units, crop_and_scale, folder
        self._features: list[dict[str, Any]] | None = None
        sub_kind = last.WhichOneof("Type")
        if sub_kind == "kNearestNeighborsClassifier":
            from mlupdate.update.knn import KNNUpdate

            name = last.description.input[0].name
            self.job: Any = KNNUpdate(last, values, examples, lambda: [f[name] for f in self._stage_outputs()])
        elif (sub_kind or "").startswith("neuralNetwork"):
            from mlupdate.spec.description import Description
            from mlupdate.update.data import require_features

            training = Description.from_spec(spec).training_inputs
            require_features(examples, [f for f in training.values() if f.type != "image"], list(training))
            self.job = _LazyNetworkUpdate(last, values, compute_units, crop_and_scale, frozen_cache,
                                          self._stage_outputs)
        else:
            raise NotUpdatableError(f"Updating a pipeline that ends in a {sub_kind} is not supported; mlupdate "
                                    "updates pipelines that end in a k-NN classifier or a neural network.")
        self.last_metrics: dict[str, Any] = {}

    def _stage_outputs(self) -> list[dict[str, Any]]:
        """Run every model but the last on the examples (once); returns the accumulated features."""
        if self._features is None:
            from mlupdate.models.linked import LinkContext
            from mlupdate.runtime.model import build_program

            state = [dict(ex) for ex in self.examples]
            links = LinkContext(self.folder)
            for sub in self.pipe.models[:-1]:
                program = build_program(sub, self.units, None, links=links)
                for s, out in zip(state, program.predict_batch(state, self.crop), strict=True):
                    s.update(out)
            self._features = state
        return self._features

    def validate(self) -> None:
        """Run the earlier models on every example and check the last model's inputs."""
        self.job.validate()

    def _with_last(self, last_spec: Any) -> Any:
        """A function building the whole pipeline around a captured last model (handlers see the pipeline)."""

        def build() -> Any:
            from mlupdate.spec.io import copy_spec

            whole = copy_spec(self.spec)
            kind = whole.WhichOneof("Type")
            pipe = whole.pipeline if kind == "pipeline" else getattr(whole, kind).pipeline
            pipe.models[-1].CopyFrom(last_spec())
            return whole

        return build

    def train(self, control: Any) -> Any:
        """Update the last model; returns the whole pipeline spec."""
        outer = self

        class _Control:
            def emit(self, event: str, metrics: dict[str, Any], snapshot: Any) -> None:
                control.emit(event, metrics, lambda: outer._with_last(snapshot()))

            def check_cancel(self) -> None:
                control.check_cancel()

            def take_learning_rate(self) -> float | None:
                return control.take_learning_rate()

        self.job.train(_Control())
        self.last_metrics = self.job.last_metrics
        return self.spec


class _LazyNetworkUpdate:
    """A ``NetworkUpdate`` of the pipeline's last network, built once the earlier models have run.

    The earlier models' outputs (the network's inputs) exist only after they predict on the examples,
    which happens in the task's thread, not when the task is created.
    """

    def __init__(self, spec: Any, values: Mapping[str, Any], units: str, crop: str, frozen_cache: bool,
                 features: Any) -> None:
        self._args = (spec, values, units, crop)
        self._frozen_cache, self._features = frozen_cache, features
        self._job: Any = None
        self.last_metrics: dict[str, Any] = {}

    def _network(self) -> Any:
        if self._job is None:
            from mlupdate.update.trainer import NetworkUpdate

            spec, values, units, crop = self._args
            self._job = NetworkUpdate(spec, values, units, crop, self._features(), self._frozen_cache)
        return self._job

    def validate(self) -> None:
        """Run the earlier models and check the network's training inputs."""
        self._network().validate()

    def train(self, control: Any) -> Any:
        """Update the network (its spec is the pipeline's last model, updated in place)."""
        result = self._network().train(control)
        self.last_metrics = self._job.last_metrics
        return result
