"""ML Programs (``mlProgram``, ``.mlpackage``) as a runnable program, mirroring :mod:`mlupdate.runtime.network`.

The program's function compiles to torch once (:class:`mlupdate.ops.program.ProgramModule`). On the CPU that
module is exported to ONNX and runs on onnxruntime; the export is cached on disk under a key that covers the spec,
the function and the bytes of every weights file, so a later load runs it without importing torch. Programs that
ONNX cannot express (control flow, states) and flexible input shapes run the torch module; CUDA runs the torch
module too. ML Programs carry their own batch axis, so ``predict_batch`` runs one example at a time: stacking
examples along a leading axis is only right for programs proven not to mix them, which mlupdate does not prove.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mlupdate.errors import ExportError, FeatureError, SpecError
from mlupdate.features.arrays import check_array
from mlupdate.runtime.execution import Execution
from mlupdate.spec.description import Description, FeatureDescription
from mlupdate.spec.limits import MAX_ARRAY_ELEMENTS_ENV, max_array_elements
from mlupdate.spec.mil import TensorType, classifier_of, function_of, value_type
from mlupdate.spec.package import Weights

#: Declared MIL dtype -> numpy dtype of the arrays fed to the compiled program (fp16 held in float32).
_FEED = {"float16": np.float32, "float32": np.float32, "float64": np.float64, "int32": np.int32, "int8": np.int8,
         "int16": np.int16, "int64": np.int64, "uint8": np.uint8, "bool": np.bool_}
#: Multiarray output dtypes as Core ML returns them.
_OUT = {"float16": np.float16, "float32": np.float32, "float64": np.float64, "int32": np.int32, "int8": np.int8}


def weights_digest(folder: Path | None) -> str:
    """A hash of every file of the model's ``weights`` folder (part of the compiled model's cache key)."""
    h = hashlib.sha256()
    root = folder / "weights" if folder is not None else None
    if root is not None and root.is_dir():
        for f in sorted(p for p in root.rglob("*") if p.is_file()):
            h.update(str(f.relative_to(root)).encode() + b"\0")
            with open(f, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 22), b""):
                    h.update(chunk)
    return h.hexdigest()


class ProgramState:
    """The states of a stateful ML Program between predictions (coremltools' ``MLState``): zeros at first.

    ``read_state(name)`` and ``write_state(name, value)`` read and set one state, as in coremltools.
    """

    def __init__(self, declared: dict[str, TensorType]) -> None:
        self.declared = declared
        self.values = {n: np.zeros(tuple(t.shape or ()), _FEED.get(t.dtype, np.float32)) for n, t in declared.items()}

    def read_state(self, name: str) -> np.ndarray:
        """A copy of state ``name``, in its declared dtype."""
        self._check(name)
        return self.values[name].astype(_OUT.get(self.declared[name].dtype, self.values[name].dtype))

    def write_state(self, name: str, value: Any) -> None:
        """Set state ``name`` (rounded to fp16 where declared so)."""
        self._check(name)
        arr = np.asarray(value)
        if arr.shape != self.values[name].shape:
            raise FeatureError(f"State '{name}' has shape {list(self.values[name].shape)}; got {list(arr.shape)}.")
        if self.declared[name].dtype == "float16":
            arr = arr.astype(np.float16)
        self.values[name] = arr.astype(self.values[name].dtype)

    def _check(self, name: str) -> None:
        if name not in self.values:
            raise FeatureError(f"The model has no state '{name}'; its states are {sorted(self.values)}.")


class MLProgram:
    """A compiled ML Program function: inputs in, Core ML results out.

    Args:
        spec: A ``Model_pb2.Model`` of type ``mlProgram`` (validated by the caller).
        compute_units: ``cpu_only``, ``cpu_and_gpu`` or ``all``.
        cache_key: The spec's content key (None: no disk cache); the weights' digest is added to it.
        executor: ``auto``, ``onnxruntime`` or ``torch``.
        threads: CPU threads of the executor (None: one per core).
        folder: What ``@model_path`` means (the folder of the spec file), where the weights are read from.

    Raises:
        SpecError, UnsupportedModelError, ModelFileError: For a program or weights mlupdate cannot run.
    """

    def __init__(self, spec: Any, execution: Execution, cache_key: str | None = None,
                 folder: Path | None = None) -> None:
        from mlupdate.runtime.onnx_session import OnnxExecutor, artifact_name

        self.execution = execution
        self.spec = spec
        self.desc = Description.from_spec(spec)
        self.folder = folder
        self.function = function_of(spec)
        fn = spec.mlProgram.functions.get(self.function)
        if fn is None:
            raise SpecError(f"The ML Program has no function '{self.function}'; it has "
                            f"{sorted(spec.mlProgram.functions)}.")
        self.mil_inputs = {i.name: value_type(i.type, f"Input '{i.name}'") for i in fn.inputs}
        self.inputs = [self.desc.inputs[n] for n in self.mil_inputs if n in self.desc.inputs
                       and self.desc.inputs[n].type != "state"]
        if len(self.inputs) != len([f for f in self.desc.inputs.values() if f.type != "state"]):
            raise SpecError(f"The model's description names inputs that function '{self.function}' does not take "
                            f"(it takes {list(self.mil_inputs)}).")
        self.state_types = {n: t.inner for n, t in self.mil_inputs.items()
                            if not isinstance(t, TensorType) and t.inner is not None}
        for name, t in self.mil_inputs.items():  # sample inputs and states are allocated at these sizes
            t = t if isinstance(t, TensorType) else t.inner
            size = math.prod(d or 1 for d in (t.shape or ())) if t is not None else 0
            if size > max_array_elements():
                raise SpecError(f"Input '{name}' of function '{self.function}' declares {size} values, more than the "
                                f"limit of {max_array_elements()} (set {MAX_ARRAY_ELEMENTS_ENV} to allow more).")
        for f in self.inputs:
            if not isinstance(self.mil_inputs.get(f.name), TensorType):
                raise SpecError(f"Input '{f.name}' of the description is not a tensor input of function "
                                f"'{self.function}'.")
        self.flexible = any(f.flexible or (f.image_constraint and f.image_constraint.flexible) for f in self.inputs)
        self.key = None if cache_key is None else hashlib.sha256(
            f"{cache_key}|{self.function}|{weights_digest(folder)}".encode()).hexdigest()
        self._module: Any = None
        self.classifier = classifier_of(spec, self.function)
        block = fn.block_specializations.get(fn.opset)
        self.output_names = list(block.outputs) if block is not None else []
        warm = (self.key is not None and execution.executor != "torch" and not self.flexible and not self.state_types
                and not (execution.executor == "auto" and execution.cuda))
        if warm:
            from mlupdate.runtime import cache

            path = cache.path_of(artifact_name(self.key, False))
            if path is not None:
                try:
                    self.executor: Any = OnnxExecutor(path, execution.threads, self._diagnose)
                    return
                except ExportError:
                    pass
        self._compile()

    # -- compiling -----------------------------------------------------------------------------
    @property
    def module(self) -> Any:
        """The function compiled to torch (:class:`~mlupdate.ops.program.ProgramModule`), built on first use."""
        if self._module is None:
            from mlupdate.ops.program import ProgramModule

            weights = Weights(self.folder)
            try:
                self._module = ProgramModule(self.spec.mlProgram, self.function, weights).eval()
            finally:
                weights.close()
        return self._module

    def _compile(self) -> None:
        from mlupdate.runtime.executors import make_executor

        module = self.module
        exportable = module.exportable and not (module.has_blocks or module.states or self.flexible)
        samples = self.sample_inputs()
        execution = self.execution
        if self.state_types:
            from mlupdate.runtime.executors import TorchExecutor

            self.executor = TorchExecutor(_stateful(module), "cuda" if execution.cuda else "cpu", execution.threads)
            samples += list(self.make_state().values.values())
        else:
            self.executor = make_executor(_graph(module), samples, execution, False, self.key, (), exportable)
        # a dry run: ops that do not fit their inputs fail at load; not with loops (they may not end), nor with
        # integer inputs, which may be shapes or indexes that zeros do not stand for
        if self.executor.name == "torch" and not module.has_blocks and all(s.dtype.kind == "f" for s in samples):
            self.executor.run(samples)
        elif self.executor.name == "onnxruntime":
            self._module = None  # onnxruntime holds the weights now; a failure to diagnose compiles it again

    def _diagnose(self, arrays: list[np.ndarray]) -> None:
        """Re-run the inputs onnxruntime failed on in torch, which names the failing op."""
        from mlupdate.runtime.executors import TorchExecutor

        TorchExecutor(_graph(self.module)).run(arrays)

    def sample_inputs(self) -> list[np.ndarray]:
        """Zero inputs of the declared shapes and feed dtypes (for the export and its dry run)."""
        out = []
        for f in self.inputs:
            t = self.mil_inputs[f.name]
            assert isinstance(t, TensorType)
            shape = tuple(d if d is not None else 1 for d in (t.shape or f.shape))
            out.append(np.zeros(shape, _FEED.get(t.dtype, np.float32)))
        return out

    # -- predicting ----------------------------------------------------------------------------
    def make_state(self) -> ProgramState:
        """Fresh states for :meth:`predict_batch` (zeros of each state's declared shape and dtype)."""
        if not self.state_types:
            raise FeatureError("This model has no states; call predict without state=.")
        return ProgramState(dict(self.state_types))

    def encode(self, example: dict[str, Any], crop_and_scale: str) -> list[np.ndarray]:
        """One example's inputs as the compiled program takes them."""
        arrays = []
        for f in self.inputs:
            if f.name not in example:
                raise FeatureError(f"Missing input '{f.name}' ({f}). The model's inputs are: "
                                   f"{', '.join(str(x) for x in self.inputs)}.")
            t = self.mil_inputs[f.name]
            assert isinstance(t, TensorType)
            value = example[f.name]
            if f.type == "image":
                c = f.image_constraint
                arr = c.to_array(c.prepare(value, crop_and_scale))[None]
            elif f.type == "multiArray":
                check_array(value, f)
                arr = np.asarray(value)
            else:
                raise FeatureError(f"Input '{f.name}' is of type {f.type}, which ML Programs do not take.")
            if t.dtype == "float16":
                arr = arr.astype(np.float16)
            arrays.append(np.ascontiguousarray(arr, dtype=_FEED.get(t.dtype, np.float32)))  # no copy if it fits
        return arrays

    def predict_batch(self, examples: Sequence[dict[str, Any]], crop_and_scale: str,
                      state: ProgramState | None = None) -> list[dict[str, Any]]:
        """Predict every example, one at a time (in order, updating ``state`` for stateful programs)."""
        if self.state_types and state is None:
            raise FeatureError("This model has states: pass state=model.make_state() (kept between predictions).")
        results = []
        for ex in examples:
            arrays = self.encode(ex, crop_and_scale)
            if self.state_types:
                assert state is not None
                arrays += [state.values[n] for n in self.state_types]
            outs = self.executor.run(arrays)
            if self.state_types:
                assert state is not None
                state.values.update(zip(self.state_types, outs[len(self.output_names):], strict=True))
            results.append(self.decode(dict(zip(self.output_names, outs, strict=False))))
        return results

    def decode(self, blobs: dict[str, np.ndarray]) -> dict[str, Any]:
        """Core ML results from the program's outputs: declared dtypes, images, classifier label and probabilities."""
        result: dict[str, Any] = {}
        label_name, probs_name, classes = self.classifier or ("", "", [])
        for name, value in blobs.items():
            if self.classifier and name in (label_name, probs_name):
                probs = value.reshape(-1).astype(np.float64)
                if probs.size != len(classes):
                    raise SpecError(f"The classifier has {len(classes)} classes but its probabilities hold "
                                    f"{probs.size} values.")
                if name == label_name:
                    result[name] = classes[int(np.argmax(probs))]
                else:
                    result[name] = {c: float(p) for c, p in zip(classes, probs, strict=True)}
                continue
            fd = self.desc.outputs.get(name)
            result[name] = _declared(value, fd) if fd is not None else value
        return result


def _declared(arr: np.ndarray, fd: FeatureDescription) -> Any:
    if fd.type == "image" and fd.image_constraint is not None:
        from PIL import Image

        pixels = np.clip(np.rint(arr.reshape(arr.shape[-3:])), 0, 255).astype(np.uint8)
        if pixels.shape[0] == 1:
            return Image.fromarray(pixels[0], "L")
        hwc = pixels.transpose(1, 2, 0)
        return Image.fromarray(np.ascontiguousarray(hwc[:, :, ::-1] if fd.image_constraint.color_space == "BGR"
                                                    else hwc), "RGB")
    dtype = _OUT.get(fd.dtype or "")
    return arr.astype(dtype) if dtype is not None and fd.type == "multiArray" else arr


def _graph(module: Any) -> Any:
    """The stateless torch wrapper of a compiled function (imported here: torch stays off the warm path)."""
    from mlupdate.runtime.program_graph import ProgramGraph

    return ProgramGraph(module)


def _stateful(module: Any) -> Any:
    """The stateful torch wrapper of a compiled function."""
    from mlupdate.runtime.program_graph import StatefulGraph

    return StatefulGraph(module)
