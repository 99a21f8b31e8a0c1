"""pytest plugin: coremltools' own neural-network tests, predicting through mlupdate instead of Core ML.

coremltools ships its tests in the installed package (``coremltools/test/neural_network``). They build models
with its builder and compare Core ML's predictions with numpy; on Linux they skip (no Core ML). This plugin
makes them run: it reports macOS 15 to the tests and replaces ``MLModel.predict`` with ``mlupdate.load`` of the
model's spec. Their expected values are numpy in the tests, and the tests run against Core ML in coremltools'
CI, so where they carry no xfail a failure here is a difference from Core ML (or a model mlupdate refuses).

Run from the repository root (MLUPDATE_SUITE_EXECUTOR=torch is faster than the default ``auto``)::

    PYTHONPATH=scripts:src python -m pytest -p coremltools_nn_suite -p no:cacheprovider -q -rfE --tb=line \\
        .venv/lib/python3.11/site-packages/coremltools/test/neural_network/

Expected leftovers: the ``test_compiled_model.py`` tests (they need a compiled ``.mlmodelc``), ML Program
tests (mlupdate refuses ML Programs), the top-k tests whose inputs tie, and the tests whose arrays exceed
``MLUPDATE_MAX_ARRAY_ELEMENTS`` (``test_random_normal_like``, the conv2d stress tests with batch 512).
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import coremltools.models.model as _model
import coremltools.models.neural_network.quantization_utils as _quantization
import coremltools.models.utils as _utils


def _macos_version() -> tuple[int, int]:
    return (15, 0)


def _predict(self: Any, data: Any, **_: Any) -> Any:
    """``MLModel.predict`` through mlupdate (one load per MLModel)."""
    import mlupdate

    model = getattr(self, "_mlupdate_model", None)
    if model is None:
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "model.mlmodel")
            _utils.save_spec(self._spec, path)
            model = mlupdate.load(path, executor=os.environ.get("MLUPDATE_SUITE_EXECUTOR", "auto"))
        self._mlupdate_model = model
    if isinstance(data, list):
        return [model.predict(x) for x in data]
    return model.predict(data)


# the tests import these names when collected, after this plugin is loaded
_utils._is_macos = lambda: True
_utils._macos_version = _macos_version
_quantization._macos_version = _macos_version  # bound at coremltools' import, before this plugin
_model.MLModel.predict = _predict
