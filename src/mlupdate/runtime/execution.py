"""Where a model's networks run: ``compute_units``, the executor and its threads, decided once.

``mlupdate.load``/``Model`` and ``UpdateTask`` build one :class:`Execution` at the boundary (which
validates it); everything below receives it. Whether torch runs on CUDA is decided in one place,
:attr:`Execution.cuda`, with one probe (:func:`cuda_available`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from mlupdate.errors import ImageError, ParameterError
from mlupdate.features.images import CROP_AND_SCALE
from mlupdate.runtime.onnx_session import cuda_possible

COMPUTE_UNITS = ("cpu_only", "cpu_and_gpu", "all")
EXECUTORS = ("auto", "onnxruntime", "torch")


@functools.cache
def cuda_available() -> bool:
    """Whether torch sees a CUDA device (torch is imported only where one may exist: :func:`cuda_possible`)."""
    if not cuda_possible():
        return False
    import torch  # only on a machine where a CUDA device may exist

    return torch.cuda.is_available()


@dataclass(frozen=True)
class Execution:
    """How a model's networks run (as ``MLModelConfiguration``).

    Attributes:
        compute_units: ``cpu_only``, ``cpu_and_gpu`` or ``all``.
        executor: ``auto`` (onnxruntime on the CPU, torch on CUDA), or force ``onnxruntime`` / ``torch``.
        threads: CPU threads of the executor (None: one per core).

    Raises:
        ParameterError: For an unknown ``compute_units`` or ``executor``, or ``threads`` not a positive integer.
    """

    compute_units: str = "all"
    executor: str = "auto"
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.compute_units not in COMPUTE_UNITS:
            raise ParameterError(f"compute_units={self.compute_units!r} is not one of {', '.join(COMPUTE_UNITS)}.")
        if self.executor not in EXECUTORS:
            raise ParameterError(f"executor={self.executor!r} is not one of {', '.join(EXECUTORS)}.")
        t = self.threads
        if t is not None and (isinstance(t, bool) or not isinstance(t, int) or t < 1):
            raise ParameterError(f"threads={t!r} must be a positive integer (or None for one per core).")

    @property
    def cuda(self) -> bool:
        """Whether torch runs the networks on CUDA: the units allow a GPU, onnxruntime is not forced, torch sees one."""
        return self.compute_units != "cpu_only" and self.executor != "onnxruntime" and cuda_available()


#: How authoring and training compile a network: torch on the CPU.
TORCH_CPU = Execution("cpu_only", "torch")


def check_crop_and_scale(crop_and_scale: str) -> str:
    """Return ``crop_and_scale`` if it is one of Vision's options (``center_crop``, ``scale_fit``, ``scale_fill``).

    Raises:
        ImageError: For any other value.
    """
    if crop_and_scale not in CROP_AND_SCALE:
        raise ImageError(f"crop_and_scale must be one of {', '.join(CROP_AND_SCALE)}, got {crop_and_scale!r}.")
    return crop_and_scale
