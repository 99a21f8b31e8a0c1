"""The model-kind registry: one entry per type of ``Model.proto``, and the only place that dispatches on it.

Each entry (a :class:`~mlupdate.kinds.registry.Kind`) declares what its type compiles to (the program that
predicts), its update job if Core ML updates it, its lint rules, its ``inspect`` summary, or why mlupdate
refuses it. The entries live one family per module, imported here explicitly:

=========================  ===================================================================
module                     types
=========================  ===================================================================
:mod:`.network`            neuralNetwork, neuralNetworkClassifier, neuralNetworkRegressor
:mod:`.knn`                kNearestNeighborsClassifier
:mod:`.classic`            the numpy types (GLM, SVM, trees, encoders, transforms, ...)
:mod:`.linked`             linkedModel
:mod:`.pipeline`           pipeline, pipelineClassifier, pipelineRegressor
:mod:`.ml_program`         mlProgram (ML Programs, run; not updatable)
:mod:`.refused`            the types only Apple's frameworks or an app's code can run
=========================  ===================================================================

Adding a type is one module (or one entry in a family's module) and one import line below.
"""

from __future__ import annotations

from mlupdate.kinds import classic, knn, linked, ml_program, network, pipeline, refused  # noqa: F401 - registers
from mlupdate.kinds.lint import lint_model
from mlupdate.kinds.load import build_program, check, refused_reasons, runnable
from mlupdate.kinds.registry import KINDS, Build, Kind, UpdateRequest, kind_of, update_parameters
from mlupdate.kinds.summary import summarize
from mlupdate.kinds.update import update_job

__all__ = ["KINDS", "REFUSED", "RUNNABLE", "Build", "Kind", "UpdateRequest", "build_program", "check", "kind_of",
           "lint_model", "summarize", "update_job", "update_parameters"]

#: The types mlupdate runs, and why it refuses each other type.
RUNNABLE = runnable()
REFUSED = refused_reasons()
