"""Updating a pipeline whose last model is updatable (e.g. a feature extractor feeding a k-NN).

The earlier models only predict: they run once on the training examples (batched) to produce
the last model's inputs; the last model is then updated as it would be alone, and written back
into the pipeline.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mlupdate.errors import NotUpdatableError


class PipelineUpdate:
    """One update of a ``pipeline``/``pipelineClassifier``/``pipelineRegressor`` spec.

    Raises:
        NotUpdatableError: The pipeline or its last model is not updatable.
    """

    def __init__(self, spec: Any, values: Mapping[str, Any], compute_units: str, crop_and_scale: str,
                 examples: Sequence[Mapping[str, Any]], frozen_cache: bool = True) -> None:
        from mlupdate.update.trainer import not_updatable

        not_updatable(spec)
        kind = spec.WhichOneof("Type")
        self.pipe = spec.pipeline if kind == "pipeline" else getattr(spec, kind).pipeline
        last = self.pipe.models[-1]
        if not last.isUpdatable:
            raise NotUpdatableError("The pipeline's last model is not updatable; only the last model of a pipeline "
                                    "can be updated (as in Core ML).")
        self.spec, self.values, self.examples = spec, dict(values), examples
        self.units, self.crop = compute_units, crop_and_scale
        self._features: list[dict[str, Any]] | None = None
        sub_kind = last.WhichOneof("Type")
        if sub_kind == "kNearestNeighborsClassifier":
            from mlupdate.update.knn import KNNUpdate

            name = last.description.input[0].name
            self.job: Any = KNNUpdate(last, values, examples, lambda: [f[name] for f in self._stage_outputs()])
        else:
            raise NotUpdatableError(f"Updating a pipeline that ends in a {sub_kind} is not supported; mlupdate "
                                    "updates pipelines that end in a k-NN classifier.")
        self.last_metrics: dict[str, Any] = {}

    def _stage_outputs(self) -> list[dict[str, Any]]:
        """Run every model but the last on the examples (once); returns the accumulated features."""
        if self._features is None:
            from mlupdate.runtime.model import build_program

            state = [dict(ex) for ex in self.examples]
            for sub in self.pipe.models[:-1]:
                program = build_program(sub, self.units, None)
                for s, out in zip(state, program.predict_batch(state, self.crop), strict=True):
                    s.update(out)
            self._features = state
        return self._features

    def validate(self) -> None:
        """Run the earlier models on every example and check the last model's inputs."""
        self.job.validate()

    def snapshot(self) -> Any:
        """The whole pipeline as it is now (handlers see the pipeline, not its last model)."""
        from mlupdate.spec.io import copy_spec

        frozen = copy_spec(self.spec)
        return lambda: frozen

    def train(self, control: Any) -> Any:
        """Update the last model; returns the whole pipeline spec."""
        outer = self

        class _Control:
            def emit(self, event: str, metrics: dict[str, Any], snapshot: Any) -> None:
                control.emit(event, metrics, outer.snapshot)

            def check_cancel(self) -> None:
                control.check_cancel()

            def take_learning_rate(self) -> float | None:
                return control.take_learning_rate()

        self.job.train(_Control())
        self.last_metrics = self.job.last_metrics
        return self.spec
