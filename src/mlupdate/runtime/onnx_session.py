"""The lean half of the CPU path: a compiled (ONNX-exported) network on onnxruntime, without torch.

A model compiled once (by ``mlupdate compile`` or a first load) is an ONNX artifact in the
on-disk cache (:mod:`mlupdate.runtime.cache`), named by :func:`artifact_name`. Loading it again
in a fresh process needs only onnxruntime, numpy and Pillow: torch is imported to compile, to
update, for CUDA, or to name the layer when onnxruntime fails on an input.
"""

from __future__ import annotations

import functools
import glob
import hashlib
import importlib.util
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mlupdate.errors import ExportError, LayerError
from mlupdate.version import __version__

_ORT_TYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(int32)": np.int32,
              "tensor(int64)": np.int64, "tensor(int8)": np.int8, "tensor(uint8)": np.uint8,
              "tensor(int16)": np.int16, "tensor(bool)": np.bool_}

#: Bumped whenever the export (graph, rewrite pass, held layouts) changes what an artifact holds.
EXPORT_VERSION = "5"  # 5: the layer semantics of issue 19 (interleave, log epsilon, tile, splitND, ...)


@functools.cache
def torch_version() -> str:
    """The installed torch's version, read from ``torch/version.py`` without importing torch (or "none").

    ``importlib.metadata`` would do too, at the cost of importing it (tens of ms of a warm start).
    """
    found = importlib.util.find_spec("torch")
    if found is None or not found.submodule_search_locations:
        return "none"
    text = Path(next(iter(found.submodule_search_locations)), "version.py")
    match = re.search(r"^__version__\s*=\s*['\"]([^'\"]+)['\"]", text.read_text() if text.is_file() else "", re.M)
    if match:
        return match.group(1)
    from importlib.metadata import version

    return version("torch")


def artifact_name(key: str, batched: bool, dynamic_hw: tuple[int, ...] = ()) -> str:
    """The cache file of a model's export: its content key, the exporting versions and the export's shape.

    Args:
        key: The model's content key (a hash of its deterministic serialisation).
        batched: Whether the export has a dynamic examples axis.
        dynamic_hw: Inputs (by index) with flexible image sizes.
    """
    text = f"{key}|{__version__}|{torch_version()}|{EXPORT_VERSION}|{batched}|{list(dynamic_hw)}"
    return hashlib.sha256(text.encode()).hexdigest()[:32] + ".onnx"


def cuda_possible() -> bool:
    """False when torch certainly sees no CUDA device, decided without importing torch.

    On Linux and macOS a CUDA device needs the NVIDIA driver (``/proc/driver/nvidia`` or
    ``/dev/nvidia*``) and a torch build with CUDA; a hidden device (``CUDA_VISIBLE_DEVICES`` empty
    or ``-1``) counts as none. Elsewhere (Windows) only torch can tell, so this says True.
    """
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    if sys.platform == "darwin":
        return False
    if sys.platform.startswith("linux"):
        if "+cpu" in torch_version():
            return False
        return os.path.exists("/proc/driver/nvidia/version") or bool(glob.glob("/dev/nvidia[0-9]*"))
    return True


class OnnxExecutor:
    """Runs a network's ONNX export with onnxruntime on the CPU.

    Args:
        data: The ONNX model bytes, or its file (onnxruntime reads it; no copy held in Python).
        threads: Intra-op threads (None: onnxruntime's default, one per core).
        diagnose: Called with the inputs when onnxruntime fails on them; re-runs the network in torch
            so that the failing layer is named (raises its ``LayerError``).

    Raises:
        ExportError: If onnxruntime cannot load the bytes.
    """

    name = "onnxruntime"
    device = "cpu"

    def __init__(self, data: bytes | Path, threads: int | None, diagnose: Callable[[list[np.ndarray]], None]) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        try:
            source = str(data) if isinstance(data, Path) else data
            self.session = ort.InferenceSession(source, sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - an unloadable export means "fall back"
            raise ExportError(f"onnxruntime cannot load the exported graph: {exc}") from exc
        self.input_names = [i.name for i in self.session.get_inputs()]
        # each input in the type the export declares (float for networks; ML Programs also take integers)
        self.input_dtypes = {i.name: _ORT_TYPES.get(i.type, np.float32) for i in self.session.get_inputs()}
        self.source = data
        self.diagnose = diagnose

    @property
    def onnx_bytes(self) -> bytes:
        """The ONNX model this executor runs."""
        return self.source.read_bytes() if isinstance(self.source, Path) else self.source

    def run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        """Run on numpy inputs; returns numpy outputs.

        Raises:
            LayerError: If onnxruntime fails; the network is re-run in torch to name the failing layer.
        """
        # the exporter drops inputs the graph reads only for their (static) shape, e.g. crop's reference
        wanted = set(self.input_names)
        feeds = {f"in{i}": np.ascontiguousarray(a, dtype=self.input_dtypes[f"in{i}"]) for i, a in enumerate(arrays)
                 if f"in{i}" in wanted}
        try:
            return self.session.run(None, feeds)
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
            failure = exc
        self.diagnose(arrays)
        shapes = ", ".join(str(list(a.shape[1:])) for a in arrays)
        raise LayerError(
            f"onnxruntime could not run the network on inputs of shapes (per example) {shapes}: {failure}. "
            "Check the inputs against the model's description, or load with executor='torch'."
        ) from failure
