"""``UpdateTask``, ``ProgressHandlers`` and ``UpdateContext``: Core ML's ``MLUpdateTask`` in Python.

    task = mlupdate.UpdateTask("CatDog.mlmodel", [{"image": "cat.jpg", "classLabel": "cat"}, ...],
                               progress_handlers=mlupdate.ProgressHandlers({"epoch_end"}, print_loss))
    ctx = task.run()            # or task.resume(); ...; task.wait()
    ctx.model.write("CatDog-personal.mlmodel")

The rules the update follows are in ``docs/update-semantics.md``.
"""

from __future__ import annotations

import copy
import os
import threading
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlupdate.authoring.lint import lint
from mlupdate.errors import Error, NotUpdatableError, ParameterError, UpdateError
from mlupdate.kinds import UpdateRequest, update_job
from mlupdate.runtime.model import Model
from mlupdate.spec.io import folder_of, resolve_spec
from mlupdate.spec.layout import program_stages, write_model
from mlupdate.update import parameters as params
from mlupdate.update.data import as_examples

EVENTS = ("training_begin", "epoch_end", "mini_batch_end")
Handler = Callable[["UpdateContext"], None]


@dataclass
class ProgressHandlers:
    """Which events to report and the function to call (Core ML's ``MLUpdateProgressHandlers``).

    Args:
        events: Any of ``training_begin``, ``epoch_end``, ``mini_batch_end``.
        handler: Called as ``handler(ctx)`` for the registered events only, on the task's thread;
            the task waits while it runs. If it raises, the task fails with an ``UpdateError``.
        completion_handler: Called once when the task ends (alternative to the task's own argument).

    Raises:
        ParameterError: For an unknown event name.
    """

    events: Iterable[str] = field(default_factory=lambda: set(EVENTS))
    handler: Handler | None = None
    completion_handler: Handler | None = None

    def __post_init__(self) -> None:
        self.events = {self.events} if isinstance(self.events, str) else set(self.events)
        unknown = sorted(self.events - set(EVENTS))
        if unknown:
            raise ParameterError(f"Unknown progress event(s) {unknown}; events are {', '.join(EVENTS)}.")


class UpdateContext:
    """What a handler sees (Core ML's ``MLUpdateContext``).

    Attributes:
        task: The task.
        event: ``training_begin``, ``epoch_end`` or ``mini_batch_end``; None in the completion handler.
        metrics: ``loss`` (None at ``training_begin``), ``epoch_index`` and ``mini_batch_index`` (0-based).
        parameters: The parameter values in use (a snapshot).
    """

    def __init__(self, task: UpdateTask, event: str | None, metrics: dict[str, Any], parameters: dict[str, Any],
                 spec_factory: Callable[[], Any] | None) -> None:
        self.task, self.event, self.metrics, self.parameters = task, event, metrics, parameters
        self._factory = spec_factory
        self._spec: Any = None
        self._model: Model | None = None
        self._lock = threading.Lock()

    @property
    def spec(self) -> Any:
        """The updated specification as of this event (None for a failed or cancelled task)."""
        with self._lock:
            if self._spec is None and self._factory is not None:
                self._spec = self._factory()
            return self._spec

    @property
    def model(self) -> Model | None:
        """The model with the weights as of this event, ready to predict and write (built on first access).

        None when the task failed or was cancelled.
        """
        spec = self.spec
        if spec is None:
            return None
        with self._lock:
            if self._model is None:
                t = self.task
                self._model = Model(spec, compute_units=t.compute_units, crop_and_scale=t.crop_and_scale,
                                    path=t.weights_path)
            return self._model

    @property
    def error(self) -> Error | None:
        """The task's error (None unless it failed or was cancelled)."""
        return self.task.error

    def write(self, path: str | os.PathLike[str]) -> Path:
        """Write the model as of this event atomically, without compiling it.

        A ``.mlmodel`` file, or an ``.mlpackage`` folder when ``path`` ends so or is one (a model with an ML
        Program stage is written as a package only; its weights are copied unchanged from the source package).

        Raises:
            UpdateError: If the task failed or was cancelled (there is no model).
        """
        spec = self.spec
        if spec is None:
            raise UpdateError("The update failed or was cancelled, so there is no updated model to write.")
        return write_model(spec, path, folder_of(self.task.weights_path))

    def __repr__(self) -> str:
        return f"<UpdateContext event={self.event} metrics={self.metrics}>"


class _Cancelled(Exception):
    pass


def refuse_invalid(spec: Any, folder: Path | None = None) -> None:
    """Refuse a model that Core ML's validator would not compile as updatable (lint's errors).

    ``folder``: where its linked models are (the folder of its file).

    Raises:
        NotUpdatableError: Listing every error lint finds.
    """
    errors = [p for p in lint(spec, errors_only=True, folder=folder) if p.severity == "error"]
    if spec.isUpdatable and errors:
        listed = "\n".join(f"  - {p.message}" for p in errors)
        raise NotUpdatableError(
            f"Core ML would refuse to compile this model as updatable ({len(errors)} problem(s)):\n{listed}\n"
            "Fix them (mlupdate lint shows the same list; mlupdate make-updatable repairs most)."
        )


class UpdateTask:
    """Update (retrain) a Core ML model on examples, as Core ML's ``MLUpdateTask``.

    The task works on a private copy of the model: the source file and the original ``Model``
    object are never touched, and predictions on the original keep working during the update.

    Args:
        model_or_path: A ``.mlmodel`` path, an ``mlupdate.Model``, a coremltools ``MLModel`` or a spec.
        training_data: A list of feature dicts using the model's training input names, e.g.
            ``{"image": img, "classLabel": "dog"}``, or a dict of equally long lists.
        configuration: ``{"parameters": {...}, "compute_units": ..., "crop_and_scale": ...}``
            (``MLModelConfiguration``).
        parameters: Overrides of the model's update parameters (``learning_rate``, ``epochs``, ...),
            applied after the configuration's.
        progress_handlers: A :class:`ProgressHandlers`.
        completion_handler: Called once with the final :class:`UpdateContext` on success, failure or cancel.

    Raises:
        NotUpdatableError: The model is not updatable, or lacks a loss, optimizer or updatable layer.
        ParameterError: An unknown parameter, or a value outside the model's allowed range or set.
        TrainingDataError: Empty data, a missing training input, or a label not among the class labels.
        FeatureError: A multiarray of the wrong shape (images are checked when the task runs).
    """

    def __init__(self, model_or_path: Any, training_data: Any, *, configuration: Mapping[str, Any] | None = None,
                 parameters: Mapping[str, Any] | None = None, progress_handlers: ProgressHandlers | None = None,
                 completion_handler: Handler | None = None, _frozen_cache: bool = True) -> None:
        spec = resolve_spec(model_or_path)
        folder = folder_of(model_or_path)
        refuse_invalid(spec, folder)
        #: Where the model's ML Program stages keep their weights (the source package), or None.
        path = model_or_path if isinstance(model_or_path, str | os.PathLike) else getattr(model_or_path, "path", None)
        self.weights_path = Path(path) if program_stages(spec) and isinstance(path, str | os.PathLike) else None
        units = getattr(model_or_path, "compute_units", "all") if isinstance(model_or_path, Model) else "all"
        crop = getattr(model_or_path, "crop_and_scale", "center_crop") if isinstance(model_or_path, Model) \
            else "center_crop"
        values, self.execution, self.crop_and_scale = params.resolve(spec, configuration, parameters, units, crop)
        self.compute_units = self.execution.compute_units
        self.progress_handlers = progress_handlers or ProgressHandlers(set())
        if completion_handler is not None and self.progress_handlers.completion_handler is not None:
            raise ParameterError("Give the completion handler once: either completion_handler= or in ProgressHandlers.")
        self._completion = completion_handler or self.progress_handlers.completion_handler
        self._descs = params.descriptions(spec)
        self._job = update_job(spec, UpdateRequest(values, self.execution, self.crop_and_scale,
                                                   as_examples(training_data), _frozen_cache, folder))
        self._state = "suspended"
        self._error: Error | None = None
        self._cancel = False
        self._pending_lr: float | None = None
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self.context: UpdateContext | None = None

    # -- Core ML's MLTask ----------------------------------------------------------------------
    @property
    def state(self) -> str:
        """``suspended``, ``running``, ``cancelling``, ``completed`` or ``failed``."""
        return self._state

    @property
    def error(self) -> Error | None:
        """Why the task failed (an ``mlupdate.Error``), or None."""
        return self._error

    @property
    def cancelled(self) -> bool:
        """Whether ``cancel()`` ended the task."""
        return self._cancel and self._state == "failed"

    @property
    def parameters(self) -> dict[str, Any]:
        """The parameter values the task runs with (a copy)."""
        return dict(self._job.values)

    def resume(self, parameters: Mapping[str, Any] | None = None) -> None:
        """Start the update in a background thread, or (inside a handler) continue with a new learning rate.

        Raises:
            ParameterError: For a parameter other than ``learning_rate`` or a value out of range.
            UpdateError: If the task has already finished.
        """
        changes = params.in_progress(self._descs, parameters or {})
        with self._lock:
            if self._state in ("completed", "failed"):
                raise UpdateError(f"The task has already {self._state}; create a new UpdateTask to update again.")
            if "learning_rate" in changes:
                self._pending_lr = changes["learning_rate"]
            if self._state == "suspended":
                self._state = "running"
                self._thread = threading.Thread(target=self._main, name="mlupdate-update", daemon=True)
                self._thread.start()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the task ends (never raises the task's error). Returns False on timeout."""
        return self._done.wait(timeout)

    def run(self) -> UpdateContext:
        """``resume()`` then ``wait()``; returns the final context.

        Raises:
            mlupdate.Error: The task's error if it failed or was cancelled (also in ``task.error``).
        """
        self.resume()
        self.wait()
        if self._error is not None:
            raise self._error
        assert self.context is not None
        return self.context

    def cancel(self) -> None:
        """Stop the update at the next mini-batch; the task then fails with an ``UpdateError`` and writes nothing."""
        with self._lock:
            if self._state in ("completed", "failed", "cancelling"):
                return
            self._cancel = True
            if self._state == "running":
                self._state = "cancelling"
                return
        self._finish(None, UpdateError("The update was cancelled before it started."))

    @property
    def example_count(self) -> int:
        """How many training examples the task updates on (for progress bars: mini-batches per epoch)."""
        return len(self._job.examples)

    def validate(self) -> int:
        """Check every example fully (decoding images) without training; returns the example count.

        Raises:
            FeatureError: For an input of the wrong type, an undecodable image (``ImageError``), naming the example.
        """
        validate = getattr(self._job, "validate", None)
        if validate is not None:
            validate()
        return self.example_count

    # -- the frozen part, for callers that run many tasks on the same examples (federated nodes) ----
    def _network_job(self, what: str) -> Any:
        if not hasattr(self._job, "precompute"):
            raise NotUpdatableError(f"{what} is for neural networks (their frozen part and trainable layers); "
                                    "this task updates a k-NN or a pipeline.")
        return self._job

    @property
    def frozen_key(self) -> str:
        """Identifies the frozen part (layers before the trainable ones, preprocessing, inputs).

        Two tasks with equal keys on the same examples compute the same :attr:`frozen_features`.

        Raises:
            NotUpdatableError: For a task that is not a neural network's.
        """
        return self._network_job("frozen_key").frozen_key()

    @property
    def frozen_features(self) -> list[Any]:
        """The frozen part's outputs for every example (empty until :meth:`precompute` or a run)."""
        return list(self._network_job("frozen_features").cache)

    @frozen_features.setter
    def frozen_features(self, features: list[Any]) -> None:
        """Reuse the features of a task with the same :attr:`frozen_key` and examples: the run skips its frozen pass."""
        job = self._network_job("frozen_features")
        if len(features) != len(job.boundary) or any(len(f) != len(job.examples) for f in features):
            raise ParameterError(f"frozen_features must hold {len(job.boundary)} array(s) of {len(job.examples)} "
                                 "examples each: those of a task with the same frozen_key and examples.")
        job.cache = list(features)

    def precompute(self) -> None:
        """Decode every example and run the frozen part now (a run would start with it)."""
        self._network_job("precompute").precompute()

    def evaluate(self) -> dict[str, float]:
        """Loss and (categorical cross-entropy) accuracy of the current weights on the task's examples."""
        return self._network_job("evaluate").scores()

    def renewed(self, model: Any) -> UpdateTask:
        """A new task on the same examples, parameters and handlers, starting from ``model``'s updatable weights.

        For many updates of one model whose updatable layers alone change (a federated node's rounds): the
        new task shares this one's network and frozen features, so it skips their construction and the
        model's checks. This task's own result (``context.spec``) then holds the new task's weights.

        Args:
            model: This task's model (spec, path or ``Model``) with other weights in its updatable layers.

        Raises:
            NotUpdatableError: For a task that is not a neural network's.
            UpdateError: This task is still running.
        """
        job = self._network_job("renewed")
        if self._state in ("running", "cancelling"):
            raise UpdateError("The task is still running; wait for it before renewing it.")
        job.load_weights(resolve_spec(model))
        task = copy.copy(self)
        task._state, task._error, task._cancel, task._pending_lr = "suspended", None, False, None
        task._lock, task._done, task._thread, task.context = threading.Lock(), threading.Event(), None, None
        return task

    @property
    def trainable_parameters(self) -> list[Any]:
        """The torch tensors the optimizer updates (the updatable layers' weights and biases), in spec order."""
        return list(self._network_job("trainable_parameters").params)

    # -- the worker ----------------------------------------------------------------------------
    def emit(self, event: str, metrics: dict[str, Any], snapshot: Callable[[], Callable[[], Any]]) -> None:
        """Call the progress handler for a registered event (used by the trainers)."""
        ph = self.progress_handlers
        if ph.handler is not None and event in ph.events:
            ctx = UpdateContext(self, event, dict(metrics), self.parameters, snapshot())
            try:
                ph.handler(ctx)
            except Exception as exc:  # noqa: BLE001 - the user's handler; reported as the task's error
                raise UpdateError(f"The progress handler raised {type(exc).__name__}: {exc} (at {event}, epoch "
                                  f"{metrics.get('epoch_index')}). Fix the handler.") from exc
        self.check_cancel()

    def take_learning_rate(self) -> float | None:
        """The learning rate set by ``resume(parameters=...)`` since the last call (used by the trainers)."""
        with self._lock:
            lr, self._pending_lr = self._pending_lr, None
            return lr

    def check_cancel(self) -> None:
        """Raise inside the worker when ``cancel()`` was called."""
        if self._cancel:
            raise _Cancelled

    def _main(self) -> None:
        try:
            spec = self._job.train(self)
        except _Cancelled:
            self._finish(None, UpdateError("The update was cancelled; nothing was written."))
        except Error as exc:
            self._finish(None, exc)
        except Exception as exc:  # noqa: BLE001 - an internal failure still ends the task cleanly
            err = UpdateError(f"The update failed unexpectedly: {type(exc).__name__}: {exc}")
            err.__cause__ = exc
            self._finish(None, err)
        else:
            self._finish(spec, None)

    def _finish(self, spec: Any, error: Error | None) -> None:
        metrics = dict(getattr(self._job, "last_metrics", {}) or {})
        self.context = UpdateContext(self, None, metrics, self.parameters, (lambda: spec) if spec is not None else None)
        with self._lock:
            self._error = error
            self._state = "completed" if error is None else "failed"
        try:
            if self._completion is not None:
                try:
                    self._completion(self.context)
                except Exception as exc:  # noqa: BLE001 - nothing to fail any more; tell the user
                    warnings.warn(f"The completion handler raised {type(exc).__name__}: {exc}", RuntimeWarning,
                                  stacklevel=2)
        finally:
            self._done.set()

    def __repr__(self) -> str:
        return f"<mlupdate.UpdateTask state={self._state} examples={len(self._job.examples)}>"
