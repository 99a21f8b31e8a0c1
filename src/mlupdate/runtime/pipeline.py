"""Pipelines (pipeline, pipelineClassifier, pipelineRegressor): models run in sequence."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mlupdate.models.linked import LinkContext


class PipelineProgram:
    """Runs each sub-model on the features so far, adding its outputs.

    ``links`` (see :mod:`mlupdate.models.linked`) is shared by every stage, so a file that several
    stages link to is built once.
    """

    def __init__(self, spec: Any, compute_units: str, cache_key: str | None, executor: str = "auto",
                 threads: int | None = None, links: LinkContext | None = None) -> None:
        from mlupdate.runtime.model import build_program

        kind = spec.WhichOneof("Type")
        pipe = spec.pipeline if kind == "pipeline" else getattr(spec, kind).pipeline
        self.spec = spec
        self.outputs = [o.name for o in spec.description.output]
        self.programs = [build_program(m, compute_units, f"{cache_key}/{i}" if cache_key else None, executor,
                                       threads, links)
                         for i, m in enumerate(pipe.models)]

    def predict_batch(self, examples: Sequence[dict[str, Any]], crop_and_scale: str) -> list[dict[str, Any]]:
        """Predict each example through every stage."""
        state = [dict(ex) for ex in examples]
        for prog in self.programs:
            for s, out in zip(state, prog.predict_batch(state, crop_and_scale), strict=True):
                s.update(out)
        return [{k: s[k] for k in self.outputs if k in s} for s in state]
