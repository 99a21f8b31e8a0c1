"""Executors run a compiled :class:`~mlupdate.graph.Graph`: torch (truth, CUDA) or onnxruntime (CPU).

On the CPU the graph is exported to ONNX once per model (cached on disk, keyed by the model's
content) and run with onnxruntime (:mod:`mlupdate.runtime.onnx_session`, which a later process
loads without torch); graphs that do not export fall back to torch with a warning.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import torch

from mlupdate.errors import Error, ExportError
from mlupdate.graph import Graph
from mlupdate.runtime import cache
from mlupdate.runtime.execution import Execution
from mlupdate.runtime.onnx_session import OnnxExecutor, artifact_name


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
    import onnx  # onnx: only when a graph is exported (a compiled model loads without it)

    from mlupdate.runtime.onnx_rewrite import simplify  # onnx, likewise

    return simplify(onnx.load_from_string(buf.getvalue())).SerializeToString()


def onnx_executor(graph: Graph, samples: list[np.ndarray], batched: bool, cache_key: str | None = None,
                  dynamic_hw: tuple[int, ...] = (), threads: int | None = None) -> OnnxExecutor:
    """The graph's (cached) ONNX export on onnxruntime; torch re-runs it to name a failing layer.

    A cached artifact that onnxruntime cannot load (damaged on disk) is exported again and replaced.

    Raises:
        ExportError: If the graph does not export, or onnxruntime cannot load the export.
    """
    diagnose = TorchExecutor(graph).run
    name = artifact_name(cache_key, batched, dynamic_hw) if cache_key is not None else None
    cached = cache.read(name) if name is not None else None
    if cached is not None:
        try:
            return OnnxExecutor(cached, threads, diagnose)
        except ExportError:
            pass
    data = export_onnx(graph, samples, batched, dynamic_hw)
    if name is not None:
        cache.write(name, data)
    return OnnxExecutor(data, threads, diagnose)


def make_executor(graph: Graph, samples: list[np.ndarray], execution: Execution, batched: bool,
                  cache_key: str | None = None, dynamic_hw: tuple[int, ...] = (),
                  exportable: bool = True, dry_run: bool = True) -> TorchExecutor | OnnxExecutor:
    """Choose the executor that ``execution`` decided on.

    On CUDA (:attr:`Execution.cuda`) the torch graph runs there; otherwise the ONNX export runs on
    onnxruntime, falling back to torch with a warning for graphs that do not export.
    ``execution.executor`` ``torch`` or ``onnxruntime`` forces one (for comparisons and debugging).
    ``dynamic_hw``: inputs with flexible image sizes. ``exportable=False`` (a layer that ONNX cannot
    express: control flow, random, value-dependent shapes) runs the torch graph, also when onnxruntime
    was asked for. ``dry_run=False`` skips the torch graph's load-time run on ``samples`` (flexible input
    shapes: the declared default need not be a shape the layers accept).
    """
    executor, threads, cuda = execution.executor, execution.threads, execution.cuda
    if executor == "torch" or (executor == "auto" and cuda) or not exportable:
        torch_executor = TorchExecutor(graph, "cuda" if cuda else "cpu", threads)
        if batched and dry_run:  # a run on the sample inputs: layers that do not fit their inputs fail at load
            torch_executor.run(samples)
        return torch_executor
    if executor == "onnxruntime":
        return onnx_executor(graph, samples, batched, cache_key, dynamic_hw, threads)
    try:
        return onnx_executor(graph, samples, batched, cache_key, dynamic_hw, threads)
    except ExportError as exc:
        warnings.warn(f"{exc}. mlupdate runs this model with PyTorch instead (slower on the CPU).",
                      RuntimeWarning, stacklevel=3)
        fallback = TorchExecutor(graph, "cpu", threads)
        fallback.run(samples)
        return fallback
