"""One harness over the whole layer registry.

Every registered layer kind must appear in at least one reference ``Case`` (the ``CASES`` lists of
the ``test_layers_*`` modules); every case must also hold the invariants Core ML's semantics imply:
an example's prediction does not depend on the other examples of its batch, and running twice
gives the same values. A failure inside a layer is an ``mlupdate.Error`` naming the layer.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pytest

import mlupdate
from mlupdate.layers import supported_layers
from tests.unit.test_layers_base import Case, builder, save

_MODULES = sorted(p.stem for p in Path(__file__).parent.glob("test_layers_*.py") if p.stem != "test_layers_base")


def _all_cases() -> list[Case]:
    cases: list[Case] = []
    for name in _MODULES:
        cases += getattr(importlib.import_module(f"tests.unit.{name}"), "CASES", [])
    return cases


CASES = _all_cases()


def test_every_registered_kind_has_a_reference_case():
    covered: set[str] = set()
    for case in CASES:
        covered |= case.kinds()
    missing = sorted(set(supported_layers()) - covered)
    assert not missing, f"registered layer kinds with no reference Case: {missing}"


def test_case_ids_are_unique():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids)), sorted({i for i in ids if ids.count(i) > 1})


def _other(case: Case, seed: int) -> dict[str, np.ndarray]:
    """Another valid example: the case's values shuffled (a case with ``batch=1`` has values that must not be)."""
    if case.batch == 1:
        return {k: v.copy() for k, v in case.inputs.items()}
    rng = np.random.default_rng(seed)
    return {k: rng.permutation(v.ravel()).reshape(v.shape) for k, v in case.inputs.items()}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_batch_independence_and_repeatability(tmp_path, case):
    model = mlupdate.load(save(case.builder(), tmp_path), executor=case.executors[0])
    x, y = dict(case.inputs), _other(case, 1)
    alone = model.predict(x)
    again = model.predict(x)
    batch = model.predict_batch([y, x, y])
    for name in case.outputs:
        np.testing.assert_array_equal(np.asarray(alone[name]), np.asarray(again[name]), err_msg=f"{name}: repeat")
        got = np.asarray(batch[1][name])
        assert got.shape == np.asarray(alone[name]).shape, name
        np.testing.assert_allclose(got, alone[name], rtol=1e-6, atol=1e-6, err_msg=f"{name}: depends on the batch")


@pytest.mark.parametrize("executor", ["torch", "onnxruntime", "auto"])
def test_a_layer_that_does_not_fit_its_input_fails_at_load_naming_it(tmp_path, executor):
    b = builder([("x", (2, 6))], ("out",), nd=True)
    b.add_activation("a", "RELU", "x", "h")
    b.add_inner_product("fc", np.ones((4, 5), np.float32), None, 5, 4, False, "h", "out")  # 5 inputs, x has 6
    with pytest.raises(mlupdate.LayerError) as err:
        mlupdate.load(save(b, tmp_path), executor=executor)
    msg = str(err.value)
    assert "'fc'" in msg and "innerProduct" in msg and "layer 1" in msg and "[2, 6]" in msg
