"""Updating a pipeline whose last model is updatable (e.g. a feature extractor feeding a k-NN).

The earlier models only predict: they run once on the training examples (batched) to produce
the last model's inputs; the last model is then updated as it would be alone, and written back
into the pipeline.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from mlupdate.errors import NotUpdatableError
from mlupdate.spec.io import copy_spec
from mlupdate.spec.model_types import not_updatable, pipeline_of


class PipelineUpdate:
    """One update of a ``pipeline``/``pipelineClassifier``/``pipelineRegressor`` spec.

    Args:
        spec: The pipeline.
        values: The update parameters in use.
        examples: The training examples (the pipeline's inputs and training targets).
        build_stage: ``build_stage(stage_spec)`` -> the program of an earlier stage (it only predicts).
        last_job: ``last_job(features)`` -> the update job of the last model, trained on ``features()``: the
            examples with every earlier stage's outputs added (run once, when the job first needs them).

    Raises:
        NotUpdatableError: The pipeline or its last model is not updatable.
    """

    def __init__(self, spec: Any, values: Mapping[str, Any], examples: Sequence[Mapping[str, Any]],
                 build_stage: Callable[[Any], Any], crop_and_scale: str,
                 last_job: Callable[[Callable[[], list[dict[str, Any]]]], Any]) -> None:
        not_updatable(spec)
        self.pipe = pipeline_of(spec)
        if not self.pipe.models[-1].isUpdatable:
            raise NotUpdatableError("The pipeline's last model is not updatable; only the last model of a pipeline "
                                    "can be updated (as in Core ML).")
        self.spec, self.values, self.examples = spec, dict(values), examples
        self.crop, self._build_stage = crop_and_scale, build_stage
        self._features: list[dict[str, Any]] | None = None
        self.job: Any = last_job(self._stage_outputs)
        self.last_metrics: dict[str, Any] = {}

    def _stage_outputs(self) -> list[dict[str, Any]]:
        """Run every model but the last on the examples (once); returns the accumulated features."""
        if self._features is None:
            state = [dict(ex) for ex in self.examples]
            for sub in self.pipe.models[:-1]:
                program = self._build_stage(sub)
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
            whole = copy_spec(self.spec)
            pipeline_of(whole).models[-1].CopyFrom(last_spec())
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


class LazyNetworkUpdate:
    """A ``NetworkUpdate`` of the pipeline's last network, built once the earlier models have run.

    The earlier models' outputs (the network's inputs) exist only after they predict on the examples,
    which happens in the task's thread, not when the task is created.
    """

    def __init__(self, spec: Any, values: Mapping[str, Any], execution: Any, crop: str, frozen_cache: bool,
                 features: Any) -> None:
        self._args = (spec, values, execution, crop)
        self._frozen_cache, self._features = frozen_cache, features
        self._job: Any = None
        self.last_metrics: dict[str, Any] = {}

    def _network(self) -> Any:
        if self._job is None:
            from mlupdate.update.trainer import NetworkUpdate  # torch: only when the update runs

            spec, values, execution, crop = self._args
            self._job = NetworkUpdate(spec, values, execution, crop, self._features(), self._frozen_cache)
        return self._job

    def validate(self) -> None:
        """Run the earlier models and check the network's training inputs."""
        self._network().validate()

    def train(self, control: Any) -> Any:
        """Update the network (its spec is the pipeline's last model, updated in place)."""
        result = self._network().train(control)
        self.last_metrics = self._job.last_metrics
        return result
