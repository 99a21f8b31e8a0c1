"""The model-kind registry: one entry per type of Model.proto, and Core ML's rules about which types update.

Truth from outside our code: the ``Type`` oneof of coremltools' compiled ``Model.proto``, and the list of
updatable types in Core ML's validator (facts file: ``validateCanModelBeUpdatable``).
"""

from __future__ import annotations

import pytest
from coremltools.proto import Model_pb2

import mlupdate
from mlupdate.kinds import KINDS, REFUSED, RUNNABLE, check

MODEL_TYPES = [f.name for f in Model_pb2.Model.DESCRIPTOR.oneofs_by_name["Type"].fields]
#: InterfaceValidators.cpp validateCanModelBeUpdatable (docs/coreml-updatable-facts.md).
CORE_ML_UPDATABLE = {"neuralNetwork", "neuralNetworkRegressor", "neuralNetworkClassifier",
                     "kNearestNeighborsClassifier", "pipeline", "pipelineRegressor", "pipelineClassifier"}


@pytest.mark.parametrize("name", MODEL_TYPES)
def test_every_model_type_has_an_entry(name):
    assert name in KINDS, f"Model.proto type {name!r} has no entry in mlupdate.kinds; add one"


def test_every_entry_is_a_model_type():
    assert sorted(set(KINDS) - set(MODEL_TYPES)) == []


@pytest.mark.parametrize("name", MODEL_TYPES)
def test_an_entry_runs_or_says_why_not(name):
    kind = KINDS[name]
    assert (kind.program is None) == bool(kind.refusal), name
    assert kind.program is not None or kind.update is None
    assert (name in RUNNABLE) != (name in REFUSED)


def test_exactly_core_mls_updatable_types_have_an_update_job():
    assert {name for name, kind in KINDS.items() if kind.update is not None} == CORE_ML_UPDATABLE


def _typed(name):
    spec = Model_pb2.Model(specificationVersion=6)
    getattr(spec, name).SetInParent()
    spec.description.input.add().name = "x"
    return spec


def test_ml_program_runs_but_core_ml_does_not_update_it():
    assert "mlProgram" in RUNNABLE and KINDS["mlProgram"].update is None  # Core ML updates no ML Program
    with pytest.raises(mlupdate.SpecError, match="ML Program without a function 'main'"):
        mlupdate.Model(_typed("mlProgram"))


@pytest.mark.parametrize("name", sorted(set(REFUSED) - {"mlProgram"}))
def test_a_refused_type_says_why(name):
    with pytest.raises(mlupdate.UnsupportedModelError, match=f"type '{name}', which mlupdate cannot run"):
        check(_typed(name))


def test_a_type_this_version_does_not_know_is_refused():
    with pytest.raises(mlupdate.UnsupportedModelError, match="type 'None'"):
        check(Model_pb2.Model(specificationVersion=4))
