"""pytest plugin: coremltools' own MIL op tests, predicting ML Programs through mlupdate instead of Core ML.

coremltools ships its MIL op tests in the installed package (``converters/mil/mil/ops/tests/iOS14..iOS18``).
``run_compare_builder`` builds a program with ``mb``, converts it and compares Core ML's prediction with numpy;
on Linux they skip (``_IS_MACOS`` is false). This plugin makes them run on the ML Program backend only, in fp32
and fp16: it sets ``PYMIL_TEST_TARGETS=mlprogram`` and ``INCLUDE_MIL_FP32_UNIT_TESTS=1`` before the tests'
backend lists are built, reports macOS 15 and replaces ``MLModel.predict`` with ``mlupdate.load`` of the model
saved to a temporary ``.mlpackage``. The tests run against Core ML in coremltools' CI, so where they carry no
xfail a failure here is a difference from Core ML (or a model mlupdate refuses on purpose).

Run from the repository root, one test file or ``-k`` subset at a time::

    PYTHONPATH=scripts:src python -m pytest -p coremltools_mil_suite -p no:cacheprovider -q -rfE --tb=line \\
        .venv/lib/python3.11/site-packages/coremltools/converters/mil/mil/ops/tests/iOS14/test_activation.py

Counts per test file are in ``docs/differences.md`` ("coremltools' MIL op tests").
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

os.environ.setdefault("PYMIL_TEST_TARGETS", "mlprogram")
os.environ.setdefault("INCLUDE_MIL_FP32_UNIT_TESTS", "1")

import coremltools.converters.mil.testing_utils as _testing  # noqa: E402
import coremltools.models.model as _model  # noqa: E402
import coremltools.models.utils as _utils  # noqa: E402


def _macos_version() -> tuple[int, int]:
    return (15, 0)


def _load(mlmodel: Any) -> Any:
    """The mlupdate model of an MLModel (one load per MLModel)."""
    import mlupdate

    model = getattr(mlmodel, "_mlupdate_model", None)
    if model is None:
        executor = os.environ.get("MLUPDATE_SUITE_EXECUTOR", "auto")
        with tempfile.TemporaryDirectory() as folder:
            suffix = ".mlpackage" if mlmodel.is_package else ".mlmodel"
            path = os.path.join(folder, "model" + suffix)
            mlmodel.save(path)
            model = mlupdate.load(path, executor=executor)
        mlmodel._mlupdate_model = model
    return model


def _predict(self: Any, data: Any, state: Any = None, **_: Any) -> Any:
    """``MLModel.predict`` through mlupdate."""
    model = _load(self)
    if isinstance(data, list):
        return [model.predict(x) for x in data]
    if state is not None:
        return model.predict(data, state=state)
    return model.predict(data)


def _make_state(self: Any) -> Any:
    """``MLModel.make_state`` through mlupdate."""
    return _load(self).make_state()


# the tests import these names when collected, after this plugin is loaded
_utils._is_macos = lambda: True
_utils._macos_version = _macos_version
_testing._IS_MACOS = True
_model.MLModel.predict = _predict
_model.MLModel.make_state = _make_state
