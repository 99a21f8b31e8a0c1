"""``mlupdate.Model`` and ``mlupdate.load``: a Core ML model you can predict with and write."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from mlupdate.errors import FeatureError, ImageError
from mlupdate.features.images import CROP_AND_SCALE
from mlupdate.models import PROGRAMS, program_for
from mlupdate.models.linked import LinkContext
from mlupdate.runtime.cache import content_key
from mlupdate.spec.description import Description
from mlupdate.spec.io import ModelSpec, copy_spec, folder_of, read_spec
from mlupdate.spec.layout import write_model
from mlupdate.spec.mil import select_function
from mlupdate.spec.package import model_dir
from mlupdate.spec.params import ParameterDescription, update_parameters
from mlupdate.spec.validate import check_model_type


class Program(Protocol):
    """What every model kind compiles to."""

    def predict_batch(self, examples: Sequence[dict[str, Any]], crop_and_scale: str) -> list[dict[str, Any]]:
        """Predict each example."""
        ...


def build_program(spec: ModelSpec, compute_units: str, cache_key: str | None, executor: str = "auto",
                  threads: int | None = None, links: LinkContext | None = None) -> Any:
    """Compile a validated spec into the program that runs it.

    Args:
        spec: The model's specification.
        compute_units: ``cpu_only``, ``cpu_and_gpu`` or ``all``.
        cache_key: Key of the compiled-network cache (None: no cache).
        executor: ``auto``, ``onnxruntime`` or ``torch``.
        threads: CPU threads the executor uses (None: one per core).
        links: Where linked models are looked for and the ones built so far in this load (see
            :mod:`mlupdate.models.linked`); None for a spec not read from a file.
    """
    kind = check_model_type(spec)
    if kind == "mlProgram":  # ML Programs (issue 17): one call, for the model-kind registry
        from mlupdate.runtime.mlprogram import MLProgram

        return MLProgram(spec, compute_units, cache_key, executor, threads, links.folder if links else None)
    if kind.startswith("neuralNetwork"):
        from mlupdate.runtime.network import NetworkProgram

        return NetworkProgram(spec, compute_units, cache_key, executor, threads)
    if kind == "kNearestNeighborsClassifier":
        from mlupdate.runtime.knn import KNNProgram

        return KNNProgram(spec)
    if kind in PROGRAMS:
        return program_for(spec)
    if kind == "linkedModel":
        from mlupdate.models.linked import LinkedProgram

        def build(linked: ModelSpec, key: str, context: LinkContext) -> Any:
            return build_program(linked, compute_units, key, executor, threads, context)

        return LinkedProgram(spec, links or LinkContext(None), build)
    from mlupdate.runtime.pipeline import PipelineProgram

    return PipelineProgram(spec, compute_units, cache_key, executor, threads, links)


class Model:
    """A loaded Core ML model: predict, describe, write.

    Args:
        spec: A ``Model_pb2.Model``; the model keeps its own copy.
        compute_units: ``cpu_only``, ``cpu_and_gpu`` or ``all`` (as ``MLModelConfiguration``).
        crop_and_scale: How images of another size are fitted (Vision's option):
            ``center_crop`` (Vision's default), ``scale_fit`` or ``scale_fill``.
        path: Where the model was read from, if anywhere; linked models are looked for from its folder.
        executor: ``auto`` (onnxruntime on the CPU, torch on CUDA), or force ``onnxruntime`` / ``torch``.
        threads: CPU threads the executor uses (None: one per core).
        copy: False hands ``spec`` over to the model without copying it (as ``load`` does with the spec
            it reads); the caller must not modify it afterwards.

    Raises:
        mlupdate.Error: Subclasses for every problem with the spec (see ``mlupdate.load``).
    """

    def __init__(self, spec: ModelSpec, *, compute_units: str = "all", crop_and_scale: str = "center_crop",
                 path: str | os.PathLike[str] | None = None, executor: str = "auto",
                 threads: int | None = None, copy: bool = True) -> None:
        if crop_and_scale not in CROP_AND_SCALE:
            raise ImageError(f"crop_and_scale must be one of {', '.join(CROP_AND_SCALE)}, got {crop_and_scale!r}.")
        self._spec = copy_spec(spec) if copy else spec
        self.compute_units = compute_units
        self.crop_and_scale = crop_and_scale
        self.path = Path(path) if path is not None else None
        key = content_key(self._spec)
        links = LinkContext(model_dir(self.path)) if self.path is not None else None
        self._program = build_program(self._spec, compute_units, key, executor, threads, links)
        self._description = Description.from_spec(self._spec)
        self.notes: list[str] = []  # what authoring (make_updatable, repairs, convert) changed, for the user

    # -- what it is ---------------------------------------------------------------------------
    @property
    def spec(self) -> ModelSpec:
        """A copy of the model's specification (``Model_pb2.Model``)."""
        return copy_spec(self._spec)

    def get_spec(self) -> ModelSpec:
        """A copy of the specification (same as ``spec``; coremltools' spelling)."""
        return self.spec

    @property
    def description(self) -> Description:
        """Inputs, outputs, training inputs, class labels, metadata and ``is_updatable``."""
        return self._description

    @property
    def is_updatable(self) -> bool:
        """Whether the model is marked updatable."""
        return bool(self._spec.isUpdatable)

    @property
    def parameter_descriptions(self) -> dict[str, ParameterDescription]:
        """Update parameters (``learning_rate``, ``epochs``, ...) with defaults and allowed values."""
        return update_parameters(self._spec)

    @property
    def executor(self) -> str:
        """``onnxruntime`` or ``torch`` (for pipelines, the executors of the neural networks)."""
        return _executor_attr(self._program, "name")

    @property
    def device(self) -> str:
        """``cpu`` or ``cuda``."""
        return _executor_attr(self._program, "device")

    # -- predicting ---------------------------------------------------------------------------
    def predict(self, features: dict[str, Any], state: Any = None) -> dict[str, Any]:
        """Predict one example.

        Args:
            features: Input name to value: images as PIL images, paths, bytes or ``HxWxC`` uint8
                arrays; multiarrays as numpy arrays. Extra keys are ignored, as in Core ML.
            state: For a stateful ML Program, the states from :meth:`make_state` (updated in place).

        Returns:
            Output name to value. A classifier returns its top label under
            ``predictedFeatureName`` and ``{label: probability}`` under ``predictedProbabilitiesName``.

        Raises:
            FeatureError: For a missing input or a value of the wrong type or shape.
        """
        if state is not None:  # stateful ML Programs
            return self._program.predict_batch([features], self.crop_and_scale, state)[0]
        return self.predict_batch([features])[0]

    def make_state(self) -> Any:
        """Fresh states of a stateful ML Program, for ``predict(..., state=)`` (coremltools' ``make_state``).

        Raises:
            FeatureError: For a model without states.
        """
        make = getattr(self._program, "make_state", None)
        if make is None:
            raise FeatureError("This model has no states; only stateful ML Programs do.")
        return make()

    def predict_batch(self, batch: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Predict many examples in one batched forward pass (where the network allows it)."""
        if isinstance(batch, dict):
            raise FeatureError("predict_batch takes a list of feature dictionaries; use predict for one.")
        if not batch:
            return []
        for i, ex in enumerate(batch):
            if not isinstance(ex, dict):
                raise FeatureError(f"Example {i} is a {type(ex).__name__}, not a dict of feature name to value.")
        return self._program.predict_batch(list(batch), self.crop_and_scale)

    # -- writing -------------------------------------------------------------------------------
    def write(self, path: str | os.PathLike[str]) -> Path:
        """Write the model atomically, as a ``.mlmodel`` file or an ``.mlpackage`` folder.

        A ``.mlmodel`` is written to a temp file, fsynced and renamed; a package (``path`` ends in
        ``.mlpackage`` or is one) is assembled in a temp folder beside it and swapped in. A model
        holding an ML Program (alone or as a pipeline stage) is written as a package only, with its weights
        copied byte for byte from the package it was read from.
        """
        return write_model(self._spec, path, folder_of(self))

    save = write

    def __repr__(self) -> str:
        d = self._description
        return (f"<mlupdate.Model {d.model_type} v{d.specification_version} inputs={list(d.inputs)} "
                f"outputs={list(d.outputs)} updatable={d.is_updatable} executor={self.executor}>")


def _executor_attr(program: Any, attr: str) -> str:
    ex = getattr(program, "executor", None)
    if ex is not None:
        return getattr(ex, attr)
    subs = getattr(program, "programs", None)
    if subs:
        vals = sorted({_executor_attr(p, attr) for p in subs} - {"none"})
        return "+".join(vals) if vals else "none"
    return "numpy" if attr == "name" else "cpu"


def load(path: str | os.PathLike[str], compute_units: str = "all", crop_and_scale: str = "center_crop",
         executor: str = "auto", threads: int | None = None, function_name: str | None = None) -> Model:
    """Load a ``.mlmodel`` file or ``.mlpackage`` folder, validate it once and compile it.

    Args:
        path: The ``.mlmodel`` file (neural network, NN classifier/regressor, k-NN, a classic type such as a
            GLM, SVM, tree ensemble, encoder or transform (see :mod:`mlupdate.models`), or a pipeline), or an
            ``.mlpackage`` (an ML Program). Linked models are looked for from the file's folder
            (:mod:`mlupdate.models.linked`).
        compute_units: ``cpu_only``, ``cpu_and_gpu`` or ``all``.
        crop_and_scale: How images of another size are fitted (``center_crop``, ``scale_fit``, ``scale_fill``).
        executor: ``auto``, or force ``onnxruntime`` / ``torch``.
        threads: CPU threads the executor uses (None: one per core).
        function_name: The function of a multifunction ML Program to run (None: its default function).

    Returns:
        The loaded model.

    Raises:
        ModelFileError: Not a model file, unreadable or truncated.
        UnsupportedModelError: A model type or ML Program op mlupdate cannot run.
        UnsupportedLayerError: A layer kind mlupdate does not implement.
        SpecError: An inconsistent spec (missing blobs, wrong weight counts).
    """
    spec = select_function(read_spec(path), function_name)
    return Model(spec, compute_units=compute_units, crop_and_scale=crop_and_scale, path=path, executor=executor,
                 threads=threads, copy=False)
