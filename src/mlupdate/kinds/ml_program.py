"""ML Programs (``mlProgram``, ``.mlpackage``, spec 6+).

Program: :class:`mlupdate.runtime.mlprogram.MLProgram` (the function compiled from MIL by :mod:`mlupdate.ops`);
checks: :func:`mlupdate.spec.mil.check_program`; summary: its functions and op counts. Core ML cannot update an
ML Program, so neither does mlupdate: Apple's updatable layout is a pipeline of an ML Program feature extractor
and an updatable neural-network head (:mod:`mlupdate.kinds.pipeline`; ``mlupdate.convert(..., format="mlpackage")``).
"""

from __future__ import annotations

from typing import Any

from mlupdate.kinds.registry import Build, Kind, register
from mlupdate.spec.mil import check_program, program_summary


def _program(spec: Any, build: Build) -> Any:
    from mlupdate.runtime.mlprogram import MLProgram  # torch only when the function is compiled

    return MLProgram(spec, build.execution, build.cache_key, build.links.folder if build.links else None)


def _summary(spec: Any) -> dict[str, Any]:
    return {"program": program_summary(spec)}


register(Kind("mlProgram", "ml_program", program=_program, check=check_program, summary=_summary,
              update_hint="Core ML cannot update an ML Program: ship a pipeline of the ML Program as a feature "
                          "extractor and an updatable neural-network head (mlupdate convert --format mlpackage)."))
