"""Neural networks (neuralNetwork, neuralNetworkClassifier, neuralNetworkRegressor) as a runnable program."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mlupdate.errors import ExportError, FeatureError, SpecError, UnsupportedModelError
from mlupdate.features.arrays import check_array, image_blob, to_blob
from mlupdate.runtime import cache
from mlupdate.runtime.execution import Execution
from mlupdate.runtime.onnx_session import OnnxExecutor, artifact_name
from mlupdate.spec.description import Description, FeatureDescription
from mlupdate.spec.model_types import network_of

if TYPE_CHECKING:  # torch is imported only to compile, update or run on CUDA
    import torch

    from mlupdate.graph import Graph

EXACT_ARRAY_MAPPING = 1
RANK4_IMAGE_MAPPING = 1
CHUNK = 32  # examples per forward pass of predict_batch and of an update's frozen part
DECODE_THREADS = 4  # threads decoding images in parallel
_OUTPUT_DTYPES = {"float64": np.float64, "int32": np.int32, "float16": np.float16}


def is_nd(nn_msg: Any) -> bool:
    """Whether a ``NeuralNetwork*`` message runs with ND (exact) tensor ranks rather than legacy rank 5.

    Core ML's validator reads a network as ND when its arrays map exactly or its images map to rank 4.
    """
    return (nn_msg.arrayInputShapeMapping == EXACT_ARRAY_MAPPING
            or nn_msg.imageInputShapeMapping == RANK4_IMAGE_MAPPING)


def is_compiled(spec: Any) -> bool:
    """Whether a neural network's ONNX export is in the cache: it loaded before, so it loads (no torch needed).

    False for a spec of another type.
    """
    if network_of(spec) is None:
        return False
    flexible = flexible_images(list(Description.from_spec(spec).inputs.values()))
    return cached_export(cache.content_key(spec), flexible) is not None


def cached_export(key: str, flexible: tuple[int, ...]) -> tuple[Path, bool] | None:
    """The cached ONNX export of the model with content ``key``, and whether it is batched; None when absent."""
    for batched in (True, False):  # a network exports batched unless a layer's shapes depend on values
        path = cache.path_of(artifact_name(key, batched, flexible))
        if path is not None:
            return path, batched
    return None


def flexible_images(inputs: Sequence[FeatureDescription]) -> tuple[int, ...]:
    """The indexes of the image inputs with flexible sizes (their export has dynamic height and width)."""
    return tuple(i for i, f in enumerate(inputs) if f.image_constraint and f.image_constraint.flexible)


class NetworkProgram:
    """A compiled neural network: inputs in, Core ML results out.

    Args:
        spec: A ``Model_pb2.Model`` of a neural-network type (validated by the caller).
        execution: Where it runs (units, executor, threads), validated by the caller.
        cache_key: Identifies the model's bytes for the on-disk ONNX cache (None: no disk cache).
        graph_only: Compile the torch graph but build no executor and run no dry pass (an update's
            graph, whose model ``mlupdate.lint`` has just loaded the same way); ``predict`` is unavailable.
    """

    def __init__(self, spec: Any, execution: Execution, cache_key: str | None = None, *,
                 graph_only: bool = False) -> None:
        self.spec = spec
        self.desc = Description.from_spec(spec)
        nn_msg = network_of(spec)
        self.nd = is_nd(nn_msg)
        self.rank4_images = nn_msg.imageInputShapeMapping == RANK4_IMAGE_MAPPING
        self.inputs = list(self.desc.inputs.values())
        self._check_input_ranks()
        self.prob_blob = self._probability_blob(nn_msg)
        self.output_blobs = self._output_blobs(nn_msg)
        self.flexible_images = flexible_images(self.inputs)
        self._graph: Graph | None = None
        self.batched = True
        compiled = None if graph_only else self._compiled(cache_key, execution)
        if compiled is not None:
            self.executor: Any = compiled
            return
        from mlupdate.runtime.executors import make_executor  # torch: only when the network is compiled

        graph = self.graph
        used = [graph.layers[n.key] for n in graph.nodes]
        # examples stack along the graph's own leading axis unless a layer's shapes depend on values
        self.batched = not any(getattr(m, "per_example", False) for m in used)
        if graph_only:
            self.executor = None
            return
        # flexible array shapes run on torch: an ONNX export fixes the shapes its layers compute with; they are
        # checked against the layers at predict (Core ML accepts a range whose default shape a layer refuses),
        # as are shapes that follow a legacy input's run-time sequence length (mlupdate.layers.shape.Permute)
        flexible = any(f.flexible for f in self.inputs) or any(getattr(m, "sequence_shapes", False) for m in used)
        exportable = all(getattr(m, "exportable", True) for m in used) and not flexible
        # two examples when batched: a layer that reaches into the examples axis fails at load, not later
        self.executor = make_executor(graph, self.sample_inputs(2 if self.batched else 1), execution,
                                      self.batched, cache_key, self.flexible_images, exportable,
                                      dry_run=not flexible)

    @property
    def graph(self) -> Graph:
        """The network compiled to a torch graph (built on first use when the load found it compiled)."""
        if self._graph is None:
            from mlupdate.graph import Graph, compile_layers  # torch: only when the network is compiled

            nn_msg = network_of(self.spec)
            nodes, modules = compile_layers(nn_msg.layers, [f.name for f in self.inputs], self.nd)
            self._graph = Graph(nodes, modules, [f.name for f in self.inputs], self.output_blobs,
                                self._preprocessing(nn_msg))
            self._graph.eval()
        return self._graph

    def _compiled(self, cache_key: str | None, execution: Execution) -> Any:
        """The model's ONNX export from the cache on onnxruntime, when that is what would run (no torch)."""
        if cache_key is None or execution.executor == "torch" or any(f.flexible for f in self.inputs):
            return None
        if execution.cuda:  # the torch graph runs on CUDA
            return None
        found = cached_export(cache_key, self.flexible_images)
        if found is None:
            return None
        path, batched = found
        try:
            session = OnnxExecutor(path, execution.threads, self._diagnose)
        except ExportError:  # evicted meanwhile, or unreadable: compile again
            return None
        self.batched = batched
        return session

    def _diagnose(self, arrays: list[np.ndarray]) -> None:
        """Re-run the inputs onnxruntime failed on in torch, which names the failing layer."""
        from mlupdate.runtime.executors import TorchExecutor  # torch: only to name a failing layer

        TorchExecutor(self.graph).run(arrays)

    def _output_blobs(self, nn_msg: Any) -> list[str]:
        """The blobs the network must produce: the declared outputs (the classifier's as its score blob)."""
        blobs = [o for o in self.desc.outputs
                 if o not in (self.desc.predicted_feature_name, self.desc.predicted_probabilities_name)]
        if self.prob_blob and self.prob_blob not in blobs:
            blobs.append(self.prob_blob)
        produced = _written(nn_msg.layers) | set(self.desc.inputs)
        for b in blobs:
            if b not in produced:
                raise SpecError(
                    f"Output '{b}' is not produced by any layer. Rename the output to the blob the last "
                    "layer writes, or add the missing layer."
                )
        return blobs

    # -- interface -----------------------------------------------------------------------------
    def _probability_blob(self, nn_msg: Any) -> str | None:
        if self.spec.WhichOneof("Type") != "neuralNetworkClassifier":
            return None
        if nn_msg.labelProbabilityLayerName:
            return nn_msg.labelProbabilityLayerName
        pname = self.desc.predicted_probabilities_name
        layer_outputs = {o for layer in nn_msg.layers for o in layer.output}
        if pname and pname in layer_outputs:
            return pname
        if not nn_msg.layers:
            raise SpecError("The classifier has no layers; add at least one layer producing class scores.")
        return nn_msg.layers[-1].output[0]

    def _check_input_ranks(self) -> None:
        if self.nd:
            return
        for f in self.inputs:
            if f.type == "multiArray" and len(f.shape) == 5 and f.shape[1] != 1:
                raise UnsupportedModelError(
                    f"Input '{f.name}' declares a rank-5 shape {list(f.shape)} with batch {f.shape[1]}; mlupdate "
                    "runs legacy networks with batch 1 per example. Declare the input with batch 1 and pass "
                    "examples to predict_batch instead."
                )

    def _preprocessing(self, nn_msg: Any) -> dict[str, torch.nn.Module]:
        from mlupdate.graph import Preprocess  # torch: only when the network is compiled

        images = [f for f in self.inputs if f.type == "image"]
        out: dict[str, torch.nn.Module] = {}
        for pp in nn_msg.preprocessing:
            target = pp.featureName or (images[0].name if len(images) == 1 else "")
            fd = self.desc.inputs.get(target)
            if fd is None or fd.image_constraint is None:
                raise SpecError(f"Preprocessing names input '{pp.featureName}', which is not an image input.")
            c = fd.image_constraint
            shape = (c.channels, c.height, c.width)
            kind = pp.WhichOneof("preprocessor")
            if kind == "scaler":
                s = pp.scaler
                bias = [s.grayBias] if c.channels == 1 else (
                    [s.blueBias, s.greenBias, s.redBias] if c.color_space == "BGR" else
                    [s.redBias, s.greenBias, s.blueBias])
                out[target] = Preprocess(s.channelScale if s.channelScale != 0 else 1.0, bias, None, shape)
            elif kind == "meanImage":
                out[target] = Preprocess(1.0, None, list(pp.meanImage.meanImage), shape)
        return out

    def sample_inputs(self, batch: int = 1) -> list[np.ndarray]:
        """Zero inputs of the right shapes, ``batch`` examples (for export and checks)."""
        arrays = []
        for f in self.inputs:
            if f.type == "image":
                c = f.image_constraint
                one = image_blob(np.zeros((c.channels, c.height, c.width), np.float32), self.nd, self.rank4_images)
            else:
                one = to_blob(np.zeros(f.shape or (1,), np.float32), self.nd)
            arrays.append(np.stack([one] * batch))
        return arrays

    # -- features ------------------------------------------------------------------------------
    def encode(self, examples: Sequence[dict[str, Any]], crop_and_scale: str) -> list[np.ndarray]:
        """Turn feature dictionaries into the graph's input arrays (batch first when batched)."""
        rows = [self.encode_row(ex, crop_and_scale) for ex in examples]
        return [np.stack([r[k] for r in rows]) for k in range(len(self.inputs))]

    def encode_row(self, example: dict[str, Any], crop_and_scale: str) -> list[np.ndarray]:
        """One example's input blobs, without the graph's leading example axis."""
        row = []
        for f in self.inputs:
            if f.name not in example:
                if f.optional:
                    raise FeatureError(f"Optional input '{f.name}' left out; mlupdate needs it: pass it.")
                raise FeatureError(
                    f"Missing input '{f.name}' ({f}). The model's inputs are: "
                    f"{', '.join(str(x) for x in self.inputs)}."
                )
            row.append(self.encode_one(f, example[f.name], crop_and_scale))
        return row

    def encode_one(self, f: FeatureDescription, value: Any, crop_and_scale: str) -> np.ndarray:
        """One feature value as the network holds it, without the graph's leading example axis."""
        if f.type == "image":
            c = f.image_constraint
            return image_blob(c.to_array(c.prepare(value, crop_and_scale)), self.nd, self.rank4_images)
        if f.type == "multiArray":
            return to_blob(check_array(value, f, sequence=not self.nd), self.nd)
        raise FeatureError(f"Input '{f.name}' is of type {f.type}, which neural networks do not take.")

    # -- running -------------------------------------------------------------------------------
    def run(self, arrays: list[np.ndarray]) -> dict[str, np.ndarray]:
        """Run the graph on encoded inputs; returns blob name -> array."""
        outs = self.executor.run(arrays)
        return dict(zip(self.output_blobs, outs, strict=True))

    def decode(self, blobs: dict[str, np.ndarray], index: int) -> dict[str, Any]:
        """Core ML results of example ``index`` of a run."""
        result: dict[str, Any] = {}
        for name, fd in self.desc.outputs.items():
            if name in (self.desc.predicted_feature_name, self.desc.predicted_probabilities_name):
                continue
            result[name] = self._declared(blobs[name][index], fd)
        if self.prob_blob:
            result.update(classifier_outputs(self.desc, blobs[self.prob_blob][index].reshape(-1)))
        return result

    def _declared(self, arr: np.ndarray, fd: FeatureDescription) -> np.ndarray:
        """One example's output blob as Core ML returns it: the declared shape and data type.

        ND blobs have their Core ML shape, except that one with more axes than the declared shape, the extra
        leading ones of size 1 (the batch axis of a rank-4 image mapping), takes the declared shape when its size
        matches: an image input added by coremltools' ``make_image_input`` to a network declared for ``(3, 1, 1)``
        arrays gives ``(3, 1, 1)`` on Core ML, not ``(1, 3, 1, 1)`` (coremltools' tests). A legacy blob
        ``[C, H, W]`` (or ``[Seq, C, H, W]``) takes the declared shape when its size matches, else
        ``[Seq, 1, C, H, W]`` for ``Seq > 1``.
        """
        fits = bool(fd.shape) and arr.size == int(np.prod(fd.shape))
        if fits and (not self.nd or (arr.ndim > len(fd.shape) and all(d == 1 for d in arr.shape[:-len(fd.shape)]))):
            arr = arr.reshape(fd.shape)
        elif not self.nd and arr.ndim == 4:
            arr = arr[:, None]
        dtype = _OUTPUT_DTYPES.get(fd.dtype or "")
        return arr.astype(dtype) if dtype is not None else arr

    def encode_rows(self, examples: Sequence[dict[str, Any]], crop_and_scale: str) -> list[list[np.ndarray]]:
        """Every example's input blobs, decoded in parallel threads (image decoding releases the GIL)."""
        if len(examples) < 2:
            return [self.encode_row(ex, crop_and_scale) for ex in examples]
        with ThreadPoolExecutor(max_workers=min(DECODE_THREADS, len(examples))) as pool:
            return list(pool.map(lambda ex: self.encode_row(ex, crop_and_scale), examples))

    def predict_batch(self, examples: Sequence[dict[str, Any]], crop_and_scale: str) -> list[dict[str, Any]]:
        """Predict every example, ``CHUNK`` at a time (memory stays bounded, whatever the count).

        Within a chunk, one forward pass per group of examples whose blobs share shapes; networks
        with a layer whose shapes depend on values run one example at a time.
        """
        results: list[dict[str, Any]] = []
        for start in range(0, len(examples), CHUNK):
            rows = self.encode_rows(examples[start:start + CHUNK], crop_and_scale)
            groups: dict[Any, list[int]] = {}
            for i, row in enumerate(rows):
                groups.setdefault(tuple(a.shape for a in row) if self.batched else i, []).append(i)
            chunk: list[dict[str, Any]] = [{} for _ in rows]
            for idx in groups.values():
                blobs = self.run([np.stack([rows[i][k] for i in idx]) for k in range(len(self.inputs))])
                for j, i in enumerate(idx):
                    chunk[i] = self.decode(blobs, j)
            results += chunk
        return results


def _written(layers: Any) -> set[str]:
    """Every blob the layers write, those of loop and branch bodies included (they write to the outer scope)."""
    out: set[str] = set()
    for layer in layers:
        out.update(layer.output)
        kind = layer.WhichOneof("layer")
        if kind == "loop":
            out |= _written(layer.loop.conditionNetwork.layers) | _written(layer.loop.bodyNetwork.layers)
        elif kind == "branch":
            out |= _written(layer.branch.ifBranch.layers) | _written(layer.branch.elseBranch.layers)
    return out


def classifier_outputs(desc: Description, probs: np.ndarray) -> dict[str, Any]:
    """``predictedFeatureName`` and ``predictedProbabilitiesName`` from a class-score vector."""
    labels = desc.class_labels or []
    if probs.size != len(labels):
        raise SpecError(
            f"The classifier has {len(labels)} labels but its probability blob holds {probs.size} values. "
            "Make the last layer output one score per label."
        )
    top = labels[int(np.argmax(probs))]
    out: dict[str, Any] = {}
    if desc.predicted_feature_name:
        out[desc.predicted_feature_name] = top
    if desc.predicted_probabilities_name:
        out[desc.predicted_probabilities_name] = {lab: float(p) for lab, p in zip(labels, probs, strict=True)}
    return out
