"""Pipelines (pipeline, pipelineClassifier, pipelineRegressor): models run in sequence."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mlupdate.models.columns import Columns, given_column, on_columns, rows, to_columns
from mlupdate.models.linked import LinkContext
from mlupdate.models.values import inputs_of


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
        self.inputs = inputs_of(spec)
        # stages that all compute on columns pass whole columns from one to the next
        self.columnar = all(on_columns(p) for p in self.programs)
        self.stage_inputs = [inputs_of(m) for m in pipe.models]

    def predict_columns(self, cols: Columns, n: int) -> Columns:
        """Predict a batch given as input columns, stage by stage (every stage computes on columns)."""
        state = dict(cols)
        for prog, fds in zip(self.programs, self.stage_inputs, strict=True):
            state.update(prog.predict_columns({fd.name: given_column(state.get(fd.name), fd, n) for fd in fds}, n))
        return {k: state[k] for k in self.outputs if k in state}

    def predict_batch(self, examples: Sequence[dict[str, Any]], crop_and_scale: str) -> list[dict[str, Any]]:
        """Predict each example through every stage (as columns when every stage computes on them)."""
        if self.columnar and all(ex.get(fd.name) is not None for ex in examples for fd in self.inputs):
            return rows(self.predict_columns(to_columns(examples, self.inputs), len(examples)), len(examples))
        state = [dict(ex) for ex in examples]
        for prog in self.programs:
            for s, out in zip(state, prog.predict_batch(state, crop_and_scale), strict=True):
                s.update(out)
        return [{k: s[k] for k in self.outputs if k in s} for s in state]
