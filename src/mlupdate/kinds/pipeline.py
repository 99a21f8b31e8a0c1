"""Pipelines (``pipeline``, ``pipelineClassifier``, ``pipelineRegressor``): models run in sequence.

Program: :class:`PipelineProgram`; update: :class:`mlupdate.update.pipeline.PipelineUpdate` (the last model,
through its own entry's ``stage_update``); lint: Core ML's pipeline rules (only the last model updatable),
then each stage's own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mlupdate.errors import NotUpdatableError, SpecError
from mlupdate.kinds.linked import LinkContext
from mlupdate.kinds.lint import lint_model
from mlupdate.kinds.load import build_program, check
from mlupdate.kinds.registry import Build, Kind, UpdateRequest, kind_of, register, update_parameters
from mlupdate.kinds.summary import summarize
from mlupdate.models.columns import Columns, given_column, on_columns, rows, to_columns
from mlupdate.models.values import inputs_of
from mlupdate.spec.model_types import PIPELINE_TYPES, pipeline_of
from mlupdate.update.pipeline import PipelineUpdate


class PipelineProgram:
    """Runs each sub-model on the features so far, adding its outputs.

    ``build.links`` (see :mod:`mlupdate.kinds.linked`) is shared by every stage, so a file that several
    stages link to is built once.
    """

    def __init__(self, spec: Any, build: Build) -> None:
        self.spec = spec
        self.outputs = [o.name for o in spec.description.output]
        models = pipeline_of(spec).models
        self.programs = [build_program(m, build.stage(i)) for i, m in enumerate(models)]
        self.inputs = inputs_of(spec)
        # stages that all compute on columns pass whole columns from one to the next
        self.columnar = all(on_columns(p) for p in self.programs)
        self.stage_inputs = [inputs_of(m) for m in models]

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


def _check(spec: Any, where: str) -> None:
    pipe = pipeline_of(spec)
    if not pipe.models:
        raise SpecError(f"{where} is a pipeline with no models; add at least one model.")
    inside = "" if where == "The model" else f" in {where[0].lower()}{where[1:]}"
    for i, sub in enumerate(pipe.models):
        check(sub, f"Model {i} of the pipeline{inside}")


def _update(spec: Any, request: UpdateRequest) -> Any:
    stages = Build(request.execution, None, LinkContext(request.folder))

    def last_job(features: Callable[[], list[dict[str, Any]]]) -> Any:
        last = pipeline_of(spec).models[-1]
        kind = kind_of(last)
        if kind is None or kind.stage_update is None:
            raise NotUpdatableError(f"Updating a pipeline that ends in a {last.WhichOneof('Type')} is not supported; "
                                    "mlupdate updates pipelines that end in a k-NN classifier or a neural network.")
        return kind.stage_update(last, request, spec, features)

    return PipelineUpdate(spec, request.values, request.examples, lambda sub: build_program(sub, stages),
                          request.crop_and_scale, last_job)


def _lint(spec: Any, errors_only: bool, folder: Path | None) -> list[Any]:
    from mlupdate.authoring.lint_pipeline import interface_problems, program_stage_problems  # torch, as below
    from mlupdate.authoring.lint_rules import Problem  # torch: lint_rules runs networks

    pipe = pipeline_of(spec)
    models = list(pipe.models)
    out = interface_problems(spec, models) + program_stage_problems(spec, models, folder)
    if pipe.names:
        if len(pipe.names) != len(models):
            out.append(Problem("error", "pipeline-names", f"The pipeline names {len(pipe.names)} models but holds "
                                                          f"{len(models)}; give one name per model."))
        dup = sorted({n for n in pipe.names if list(pipe.names).count(n) > 1})
        if dup:
            out.append(Problem("error", "pipeline-names", f"Pipeline model names {dup} repeat; names must be unique."))
    if spec.isUpdatable:
        if not models:
            out.append(Problem("error", "pipeline-updatable", "The updatable pipeline has no models; add them."))
        for i, sub in enumerate(models[:-1]):
            if sub.isUpdatable:
                out.append(Problem("error", "pipeline-updatable", f"Model {i} of the pipeline is marked updatable; "
                                                                  "only the last model of an updatable pipeline may "
                                                                  "be. Clear its isUpdatable flag."))
        if models and not models[-1].isUpdatable:
            out.append(Problem("error", "pipeline-updatable", "The last model of the updatable pipeline is not "
                                                              "marked updatable; make it updatable (it is the one "
                                                              "Core ML trains)."))
    else:
        for i, sub in enumerate(models):
            if sub.isUpdatable:
                out.append(Problem("error", "pipeline-updatable", f"Model {i} is updatable inside a pipeline that is "
                                                                  "not; mark the pipeline updatable (with "
                                                                  "specification version 4) or clear the flag."))
    for i, sub in enumerate(models):
        found = lint_model(sub, f"pipeline model {i}", errors_only, folder)
        # A non-updatable feature extractor is expected in a pipeline: drop its "not updatable" notice.
        out += [p for p in found if not (p.rule == "not-updatable" and i < len(models) - 1)]
    return out


def _parameters(spec: Any) -> dict[str, Any]:
    models = pipeline_of(spec).models
    return update_parameters(models[-1]) if models else {}  # Core ML updates the last model


def _summary(spec: Any) -> dict[str, Any]:
    return {"models": [summarize(m) for m in pipeline_of(spec).models]}


for _name in PIPELINE_TYPES:
    register(Kind(_name, "pipeline", program=PipelineProgram, check=_check, update=_update, lint=_lint,
                  summary=_summary, parameters=_parameters))
