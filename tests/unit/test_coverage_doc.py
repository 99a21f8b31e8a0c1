"""docs/coverage.md is what scripts/coverage.py generates from the registry and the test cases."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _script():
    spec = importlib.util.spec_from_file_location("coverage_script", ROOT / "scripts" / "coverage.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_coverage_doc_is_in_step():
    text = _script().render()
    assert (ROOT / "docs" / "coverage.md").read_text() == text, "run: python scripts/coverage.py"


def test_every_proto_kind_is_supported_or_refused_with_a_reason():
    from coremltools.proto import NeuralNetwork_pb2

    from mlupdate.layers import REFUSED, supported_layers

    kinds = {f.name for f in NeuralNetwork_pb2.NeuralNetworkLayer.DESCRIPTOR.oneofs_by_name["layer"].fields}
    unexplained = sorted(kinds - set(supported_layers()) - set(REFUSED))
    assert not unexplained, f"kinds neither supported nor refused with a reason: {unexplained}"


def test_every_case_module_names_its_reference():
    from tests.unit import test_layer_registry as registry

    for name in registry._MODULES:
        module = importlib.import_module(f"tests.unit.{name}")
        if getattr(module, "CASES", None):
            assert getattr(module, "REFERENCE", ""), f"{name} has CASES but no REFERENCE string"


def test_every_mil_op_is_supported_or_refused_with_a_reason():
    from mlupdate.ops import REFUSED, supported_ops
    from mlupdate.spec.io import import_coremltools

    import_coremltools()
    from coremltools.converters.mil.mil.ops.registry import SSAOpRegistry

    handled = set(supported_ops()) | set(REFUSED) | set(_script().COMPILER_OPS)
    unexplained = sorted(set(SSAOpRegistry.core_ops) - handled)
    assert not unexplained, f"MIL ops neither supported nor refused with a reason: {unexplained}"
