"""ML Programs (``mlProgram``, ``.mlpackage``, spec 6+): refused today, with the way forward.

Core ML cannot update ML Programs on device. When mlupdate runs them, this module declares their program
(:mod:`mlupdate.ops`) and nothing else changes.
"""

from __future__ import annotations

from typing import Any

from mlupdate.kinds.registry import Kind, register


def _refusal_message(spec: Any, where: str) -> str:
    return (f"{where} is an ML Program (spec version {spec.specificationVersion}). Core ML cannot update ML "
            "Programs on device, and neither can mlupdate. Convert the source model with "
            "coremltools.convert(..., convert_to='neuralnetwork', minimum_deployment_target=ct.target.iOS13), "
            "or use mlupdate.convert(torch_module, ...).")


register(Kind("mlProgram", "refused",
              refusal="Core ML cannot update ML Programs on device; convert with convert_to='neuralnetwork'",
              refusal_message=_refusal_message,
              update_hint="ML Programs cannot be updated: convert with convert_to='neuralnetwork'."))
