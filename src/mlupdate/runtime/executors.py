"""Executors run a compiled :class:`~mlupdate.graph.Graph`: torch (truth, CUDA) or onnxruntime (CPU).

On the CPU the graph is exported to ONNX once per model (cached in memory and on disk, keyed
by the model's bytes) and run with onnxruntime; graphs that do not export fall back to torch
with a warning.
"""

from __future__ import annotations

import hashlib
import io
import warnings

import numpy as np
import torch

from mlupdate.errors import Error, ExportError, LayerError, ParameterError
from mlupdate.graph import Graph
from mlupdate.runtime import cache

COMPUTE_UNITS = ("cpu_only", "cpu_and_gpu", "all")
EXECUTORS = ("auto", "onnxruntime", "torch")
_EXPORT_VERSION = "3"


class TorchExecutor:
    """Runs the graph with PyTorch on ``device``."""

    name = "torch"

    def __init__(self, graph: Graph, device: str = "cpu", threads: int | None = None) -> None:
        self.graph = graph.to(device)
        self.device = device
        self.threads = threads

    def run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        """Run on numpy inputs; returns numpy outputs (with ``threads`` CPU threads, when given)."""
        before = torch.get_num_threads()
        if self.threads:
            torch.set_num_threads(self.threads)
        try:
            with torch.inference_mode():
                outs = self.graph(*[torch.from_numpy(np.ascontiguousarray(a)).to(self.device) for a in arrays])
        finally:
            if self.threads:
                torch.set_num_threads(before)
        return [o.detach().cpu().numpy() for o in outs]


class OnnxExecutor:
    """Runs the graph's ONNX export with onnxruntime on the CPU."""

    name = "onnxruntime"
    device = "cpu"

    def __init__(self, graph: Graph, samples: list[np.ndarray], batched: bool, cache_key: str | None = None,
                 dynamic_hw: tuple[int, ...] = (), threads: int | None = None) -> None:
        import onnxruntime as ort

        data = _cached_export(graph, samples, batched, cache_key, dynamic_hw)
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(data, sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - an unloadable export means "fall back"
            raise ExportError(f"onnxruntime cannot load the exported graph: {exc}") from exc
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.onnx_bytes = data
        self.graph = graph

    def run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        """Run on numpy inputs; returns numpy outputs.

        Raises:
            LayerError: If onnxruntime fails; the graph is re-run in torch to name the failing layer.
        """
        # the exporter drops inputs the graph reads only for their (static) shape, e.g. crop's reference
        wanted = set(self.input_names)
        feeds = {f"in{i}": np.ascontiguousarray(a, dtype=np.float32) for i, a in enumerate(arrays)
                 if f"in{i}" in wanted}
        try:
            return self.session.run(None, feeds)
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
            failure = exc
        try:
            TorchExecutor(self.graph).run(arrays)
        except Error:
            raise
        shapes = ", ".join(str(list(a.shape[1:])) for a in arrays)
        raise LayerError(
            f"onnxruntime could not run the network on inputs of shapes (per example) {shapes}: {failure}. "
            "Check the inputs against the model's description, or load with executor='torch'."
        ) from failure


def export_onnx(graph: Graph, samples: list[np.ndarray], batched: bool, dynamic_hw: tuple[int, ...] = ()) -> bytes:
    """Export a graph to ONNX bytes with a dynamic batch axis (when ``batched``).

    ``dynamic_hw`` lists the inputs (by index) whose last two axes (height, width) are dynamic too:
    image inputs with flexible sizes.

    Raises:
        ExportError: If torch cannot export the graph.
    """
    ins = [f"in{i}" for i in range(len(samples))]
    outs = [f"out{i}" for i in range(len(graph.output_names))]
    axes: dict[str, dict[int, str]] | None = {n: {0: "batch"} for n in ins + outs} if batched else None
    for i in dynamic_hw:
        nd = samples[i].ndim
        axes = axes or {}
        axes.setdefault(ins[i], {}).update({nd - 2: f"h{i}", nd - 1: f"w{i}"})
    buf = io.BytesIO()
    graph = graph.cpu().eval()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(graph, tuple(torch.from_numpy(s) for s in samples), buf, dynamo=False,
                              input_names=ins, output_names=outs, dynamic_axes=axes, opset_version=17,
                              do_constant_folding=True)
    except Error:
        raise  # a layer that does not fit its inputs (LayerError): the model is wrong, not the export
    except Exception as exc:  # noqa: BLE001 - any exporter failure means "fall back"
        raise ExportError(f"ONNX export failed: {exc}") from exc
    import onnx

    from mlupdate.runtime.onnx_rewrite import simplify

    return simplify(onnx.load_from_string(buf.getvalue())).SerializeToString()


def _cached_export(graph: Graph, samples: list[np.ndarray], batched: bool, key: str | None,
                   dynamic_hw: tuple[int, ...] = ()) -> bytes:
    if key is None:
        return export_onnx(graph, samples, batched, dynamic_hw)
    digest = hashlib.sha256(f"{key}|{torch.__version__}|{_EXPORT_VERSION}|{batched}|{dynamic_hw}".encode()
                            ).hexdigest()[:32]
    name = f"{digest}.onnx"
    data = cache.read(name)
    if data is None:
        data = export_onnx(graph, samples, batched, dynamic_hw)
        cache.write(name, data)
    return data


def make_executor(graph: Graph, samples: list[np.ndarray], compute_units: str, batched: bool,
                  cache_key: str | None = None, executor: str = "auto",
                  dynamic_hw: tuple[int, ...] = (), exportable: bool = True,
                  threads: int | None = None) -> TorchExecutor | OnnxExecutor:
    """Choose the executor for ``compute_units``.

    ``cpu_and_gpu`` and ``all`` run the torch graph on CUDA when torch sees a GPU; otherwise
    (and always for ``cpu_only``) the ONNX export runs on onnxruntime, falling back to torch
    with a warning for graphs that do not export. ``executor="torch"`` or ``"onnxruntime"``
    forces one (for comparisons and debugging). ``dynamic_hw``: inputs with flexible image sizes.
    ``exportable=False`` (a layer that ONNX cannot express: control flow, random, value-dependent
    shapes) runs the torch graph, also when onnxruntime was asked for. ``threads``: CPU threads of the
    executor (None: the library's default, one per core).

    Raises:
        ParameterError: For an unknown ``compute_units`` or ``executor``.
    """
    if compute_units not in COMPUTE_UNITS:
        raise ParameterError(f"compute_units={compute_units!r} is not one of {', '.join(COMPUTE_UNITS)}.")
    if executor not in EXECUTORS:
        raise ParameterError(f"executor={executor!r} is not one of {', '.join(EXECUTORS)}.")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ParameterError(f"threads={threads!r} must be a positive integer (or None for one per core).")
    gpu = compute_units != "cpu_only" and torch.cuda.is_available()
    if executor == "torch" or (executor == "auto" and gpu) or not exportable:
        torch_executor = TorchExecutor(graph, "cuda" if gpu and executor != "onnxruntime" else "cpu", threads)
        if batched:  # a dry run on the sample inputs: layers that do not fit their inputs fail at load
            torch_executor.run(samples)
        return torch_executor
    if executor == "onnxruntime":
        return OnnxExecutor(graph, samples, batched, cache_key, dynamic_hw, threads)
    try:
        return OnnxExecutor(graph, samples, batched, cache_key, dynamic_hw, threads)
    except ExportError as exc:
        warnings.warn(f"{exc}. mlupdate runs this model with PyTorch instead (slower on the CPU).",
                      RuntimeWarning, stacklevel=3)
        fallback = TorchExecutor(graph, "cpu", threads)
        fallback.run(samples)
        return fallback
