"""``mlupdate.Model`` and ``mlupdate.load``: a Core ML model you can predict with and write."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mlupdate.errors import FeatureError
from mlupdate.kinds import Build, build_program, update_parameters
from mlupdate.kinds.linked import LinkContext
from mlupdate.models.columns import arrays_of, given_columns, on_columns, stack_values
from mlupdate.runtime.cache import content_key
from mlupdate.runtime.execution import Execution, check_crop_and_scale
from mlupdate.spec.description import Description
from mlupdate.spec.io import ModelSpec, copy_spec, folder_of, read_spec, resolve_spec
from mlupdate.spec.layout import write_model
from mlupdate.spec.mil import select_function
from mlupdate.spec.package import model_dir
from mlupdate.spec.params import ParameterDescription


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
        self.crop_and_scale = check_crop_and_scale(crop_and_scale)
        self.execution = Execution(compute_units, executor, threads)  # validated once, here
        self._spec = copy_spec(spec) if copy else spec
        self.compute_units = compute_units
        self.path = Path(path) if path is not None else None
        key = content_key(self._spec)
        links = LinkContext(model_dir(self.path)) if self.path is not None else None
        self._program = build_program(self._spec, Build(self.execution, key, links))
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

    def predict_arrays(self, arrays: dict[str, Any]) -> dict[str, Any]:
        """Predict a batch given as one array per input, the examples along its first axis.

        The fastest way to predict many rows with the classic model types (GLMs, SVMs, trees, encoders,
        transforms and pipelines of them), which compute on whole columns; other models run
        ``predict_batch`` on the rows and stack the results.

        Args:
            arrays: Input name to a batch: ``[N]`` numbers for double and int64 inputs, ``[N]`` strings for
                string inputs, ``[N, *shape]`` for multiarrays, a list of ``N`` dicts for dictionaries.

        Returns:
            Output name to a batch of the same layout; a classifier's ``{label: probability}`` output as an
            ``[N, K]`` array whose columns follow ``description.class_labels``.

        Raises:
            FeatureError: For a missing input, or one whose type or shape does not fit.
        """
        if not isinstance(arrays, dict):
            raise FeatureError("predict_arrays takes a dict of input name to a batch of values (one array per input).")
        program = self._program
        if on_columns(program):
            cols, n = given_columns(arrays, program.inputs)
            return arrays_of(program.predict_columns(cols, n))
        names = list(self._description.inputs)
        given = {k: arrays[k] for k in names if k in arrays}
        n = len(next(iter(given.values()))) if given else 0
        if any(len(v) != n for v in given.values()):
            raise FeatureError("predict_arrays needs the same number of examples in every input's batch.")
        results = self.predict_batch([{k: v[i] for k, v in given.items()} for i in range(n)])
        return {name: stack_values([r[name] for r in results]) for name in (results[0] if results else {})}

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


def load(model: str | os.PathLike[str] | ModelSpec | Any, compute_units: str = "all",
         crop_and_scale: str = "center_crop", executor: str = "auto", threads: int | None = None,
         function_name: str | None = None) -> Model:
    """Load a model, validate it once and compile it.

    Args:
        model: A ``.mlmodel`` file (neural network, NN classifier/regressor, k-NN, a classic type such as a
            GLM, SVM, tree ensemble, encoder or transform (see :mod:`mlupdate.kinds`), or a pipeline), an
            ``.mlpackage`` folder (an ML Program, or a pipeline with ML Program stages), a protobuf
            ``Model_pb2.Model`` spec, a coremltools ``MLModel`` or an :class:`mlupdate.Model` (each copied).
            Linked models are looked for from the file's folder.
        compute_units: ``cpu_only``, ``cpu_and_gpu`` or ``all``.
        crop_and_scale: How images of another size are fitted (``center_crop``, ``scale_fit``, ``scale_fill``).
        executor: ``auto``, or force ``onnxruntime`` / ``torch``.
        threads: CPU threads the executor uses (None: one per core).
        function_name: The function of a multifunction ML Program to run (None: its default function).

    Returns:
        The loaded model.

    Raises:
        ModelFileError: Not a model file, unreadable or truncated (``ModelNotFoundError`` for a missing file,
            ``ModelTypeError`` for an object that is no model).
        UnsupportedModelError: A model type or ML Program op mlupdate cannot run.
        UnsupportedLayerError: A layer kind mlupdate does not implement.
        SpecError: An inconsistent spec (missing blobs, wrong weight counts).
    """
    if isinstance(model, str | os.PathLike):
        spec, path = read_spec(model), model
    else:  # a coremltools MLModel of an .mlpackage keeps its weights in its package folder
        spec = resolve_spec(model)
        path = model.path if isinstance(model, Model) else getattr(model, "package_path", None)
    return Model(select_function(spec, function_name), compute_units=compute_units, crop_and_scale=crop_and_scale,
                 path=path, executor=executor, threads=threads, copy=False)
