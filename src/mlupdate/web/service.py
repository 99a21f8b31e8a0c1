"""What the web app does, independent of HTTP: predict, keep examples, train, reset.

Only mlupdate's public API is used: :func:`mlupdate.load`, :class:`mlupdate.Model`,
:class:`mlupdate.UpdateTask`, :class:`mlupdate.ProgressHandlers`, :class:`mlupdate.ImageConstraint`.
The data directory (pending photos, the personalised model and its record) is kept by
:class:`mlupdate.web.store.Store`, which changes it atomically. Each action logs one line to the
``mlupdate.web`` logger (``mlupdate serve`` prints them).
"""

from __future__ import annotations

import errno
import hashlib
import io
import logging
import math
import os
import threading
import time
import warnings
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

import mlupdate
from mlupdate.web.jobs import TrainingJob
from mlupdate.web.store import Example, Store, remove_model_file

DEFAULT_MAX_PIXELS = 40_000_000
DEFAULT_MAX_UPLOAD_BYTES = 10 * 1024 * 1024
MAX_NAME = 1024  # longest sample name (path) accepted
log = logging.getLogger("mlupdate.web")


class AppError(Exception):
    """A request the app refuses, with the HTTP status and a message for the user."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def shown(name: str, limit: int = 60) -> str:
    """A user-given name, quoted and cut to ``limit`` characters, for messages."""
    return repr(name if len(name) <= limit else name[:limit] + "…")


def disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` says the disk is full (an ``OSError`` or mlupdate's message about one)."""
    return getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or os.strerror(errno.ENOSPC) in str(exc)


def full_message(folder: Path, what: str) -> str:
    """What to tell the user when the disk holding ``folder`` is full."""
    return (f"The disk holding {folder} is full, so {what}. Nothing was lost: free some disk space (or start "
            "the app with another --data-dir) and try again.")


def plural(n: int, word: str) -> str:
    """``1 photo``, ``2 photos``."""
    return f"{n} {word}{'' if n == 1 else 's'}"


def _sha256(path: Path) -> str:
    """The digest of a model file, or of every file of a package folder (names and bytes)."""
    if not path.is_dir():
        return hashlib.sha256(path.read_bytes()).hexdigest()
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(path)).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


class AppService:
    """The app's model, examples and training.

    Args:
        model_path: The original ``.mlmodel`` (an updatable image classifier); never modified.
        data_dir: Where the personalised model and pending examples live (created if missing).
        samples_dir: A folder of photos to offer as a gallery, or None.
        max_pixels: Images with more pixels are refused (decompression bombs).

    Raises:
        mlupdate.Error: If the model cannot be loaded or is not an updatable image classifier.
    """

    def __init__(self, model_path: str | Path, data_dir: str | Path, samples_dir: str | Path | None = None,
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        self.model_path = Path(model_path)
        self.data_dir = Path(data_dir)
        self.samples_dir = Path(samples_dir).resolve() if samples_dir else None
        self.max_pixels = max_pixels
        self.base_model = mlupdate.load(self.model_path)
        self.base_sha = _sha256(self.model_path)
        self._inspect(self.base_model)
        self.data_dir.mkdir(parents=True, exist_ok=True)  # only for a model the app serves
        self.store = Store(self.data_dir)
        self._lock = threading.Lock()
        self.job: TrainingJob | None = None
        self._jobs = 0
        self.model = self.base_model
        self.personalized_path: Path | None = None
        self.info: dict[str, Any] | None = None
        self.warning: str | None = None
        self._load_personalized()

    # -- setup ---------------------------------------------------------------------------------
    def _inspect(self, model: Any) -> None:
        d = model.description
        images = [f for f in d.inputs.values() if f.type == "image"]
        inputs = ", ".join(str(f) for f in d.inputs.values())
        if len(images) != 1 or len(d.inputs) != 1:
            raise mlupdate.FeatureError(
                f"{self.model_path} has {len(images)} image input(s) among its inputs ({inputs}); the app serves "
                "models with exactly one input, an image, like the demo model. Predict it with mlupdate predict "
                "--input NAME=VALUE instead.")
        if not d.class_labels:
            knn = "k-NN" in d.model_type or _ends_in_knn(model.spec)
            fix = ("Update this model with mlupdate update MODEL DATA --out OUT, whose folder names are the labels."
                   if d.is_updatable else
                   "It is not updatable either (an embedding or a plain network?): to personalise it, build an "
                   "updatable classifier on it, e.g. a k-NN after it (mlupdate.pipeline_classifier), and update "
                   "that with mlupdate update.")
            raise mlupdate.FeatureError(
                f"{self.model_path} ({d.model_type}) has no fixed list of class labels"
                + (" (a k-NN learns its classes from the examples it is given)" if knn else "")
                + "; the app offers the model's labels for relabelling photos, so it serves classifiers that "
                f"declare them. {fix}")
        if not d.is_updatable:
            raise mlupdate.NotUpdatableError(
                f"{self.model_path} is not updatable, so the app could not retrain it. Make it updatable first "
                "(mlupdate make-updatable) or serve the demo model.")
        self.image_input = images[0].name
        self.constraint = images[0].image_constraint
        self.labels = [str(label) for label in d.class_labels]
        targets = [n for n, f in d.training_inputs.items() if n != self.image_input]
        self.label_input = targets[0] if targets else (d.predicted_feature_name or "classLabel")
        self.probabilities_output = d.predicted_probabilities_name
        self.label_output = d.predicted_feature_name

    def _load_personalized(self) -> None:
        current = self.store.model()
        if current is None:
            return
        path, info = current
        if info.get("base_sha256") != self.base_sha:
            self.warning = (f"The personalised model in {self.data_dir} was trained from another model than "
                            f"{self.model_path.name}, so the original model is used. Reset to discard it.")
            return
        try:
            self.model = mlupdate.load(path)
        except mlupdate.Error as exc:
            self.warning = f"The personalised model could not be loaded, so the original model is used: {exc}"
            return
        self.personalized_path, self.info = path, info

    # -- state -----------------------------------------------------------------------------------
    @property
    def personalized(self) -> bool:
        """Whether predictions use a personalised model."""
        return self.model is not self.base_model

    @property
    def training(self) -> bool:
        """Whether a Train is running."""
        job = self.job
        return job is not None and job.state == "running"

    def model_info(self) -> dict[str, Any]:
        d = self.model.description
        params = {k: getattr(v, "default", None) for k, v in self.model.parameter_descriptions.items()}
        return {"labels": self.labels, "personalized": self.personalized, "training": self.training,
                "source": str(self.model_path), "image_input": self.image_input, "label_input": self.label_input,
                "image_size": [self.constraint.width, self.constraint.height] if self.constraint else None,
                "update_parameters": params, "short_description": d.metadata.get("short_description", ""),
                "trained": self.info, "warning": self.warning}

    # -- images ------------------------------------------------------------------------------------
    def decode(self, data: bytes, name: str = "the uploaded file") -> tuple[Image.Image, str | None]:
        """Decode and fit an uploaded image for the model; returns the image and its format (JPEG, PNG...).

        Raises:
            AppError: 400 for an empty file, a file that is not an image, a truncated image or one over
                the pixel limit.
        """
        name = shown(name)
        if not data:
            raise AppError(400, f"{name} is empty: choose a photo (JPEG or PNG).")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(io.BytesIO(data)) as probe:
                    fmt, (w, h) = probe.format, probe.size
        except (Image.DecompressionBombWarning, Image.DecompressionBombError):
            fmt, w, h = None, self.max_pixels + 1, 1
        except (UnidentifiedImageError, OSError, ValueError):
            raise AppError(400, f"{name} is not an image file we can read: choose a photo (JPEG or PNG).") from None
        if w * h > self.max_pixels:
            raise AppError(400, f"{name} has {w * h:,} pixels, over the limit of {self.max_pixels:,} this app "
                                "accepts: choose a smaller photo.")
        try:
            img = self.constraint.prepare(data, self.base_model.crop_and_scale, max_pixels=self.max_pixels)
        except mlupdate.ImageError:
            raise AppError(400, f"{name} is truncated or damaged, so it cannot be read: choose another "
                                "photo.") from None
        return img, fmt

    def predict(self, image: Image.Image, name: str = "a photo") -> dict[str, Any]:
        """The label and the probability of every class."""
        out = self.model.predict({self.image_input: image})
        probs = out.get(self.probabilities_output or "", {})
        probs = {str(k): float(v) for k, v in probs.items()} if isinstance(probs, dict) else {}
        label = str(out.get(self.label_output or "", max(probs, key=probs.get) if probs else ""))
        which = "personalised" if self.personalized else "original"
        log.info("Predicted %s (%.0f%%) for %s with the %s model", label, 100 * probs.get(label, 0), name, which)
        return {"label": label, "probabilities": {lab: probs.get(lab, 0.0) for lab in self.labels},
                "personalized": self.personalized}

    def check_label(self, label: str) -> str:
        """The label itself if the model has it (exact, else case-insensitive), else a 400 error."""
        if label in self.labels:
            return label
        for lab in self.labels:
            if lab.lower() == str(label).strip().lower():
                return lab
        raise AppError(400, f"Unknown label {shown(label)}: the model's labels are {', '.join(self.labels)}.")

    # -- samples -----------------------------------------------------------------------------------
    def samples(self) -> list[str]:
        """Sample photo names (paths relative to the samples folder, with ``/``)."""
        if self.samples_dir is None:
            return []
        exts = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif"}
        return sorted(p.relative_to(self.samples_dir).as_posix() for p in self.samples_dir.rglob("*")
                      if p.suffix.lower() in exts and p.is_file())

    def sample_path(self, name: str) -> Path:
        """The file of a sample, refusing anything outside the samples folder (404)."""
        if self.samples_dir is None:
            raise AppError(404, "This server has no sample photos (start it with --samples DIR).")
        missing = AppError(404, f"No sample photo named {shown(name)}.")
        if not name or "\x00" in name or len(name) > MAX_NAME or any(len(part) > 255 for part in name.split("/")):
            raise missing
        try:
            p = (self.samples_dir / name).resolve()
            if not p.is_relative_to(self.samples_dir) or not p.is_file():
                raise missing
        except (OSError, ValueError):
            raise missing from None
        return p

    def read_sample(self, name: str) -> bytes:
        """The bytes of a sample photo (404 as :meth:`sample_path`)."""
        try:
            return self.sample_path(name).read_bytes()
        except OSError:
            raise AppError(404, f"The sample photo {shown(name)} cannot be read.") from None

    # -- examples ----------------------------------------------------------------------------------
    def add_example(self, data: bytes, label: str, name: str) -> Example:
        label = self.check_label(label)
        _, fmt = self.decode(data, name)
        try:
            ex = self.store.add(data, label, name, fmt)
        except OSError as exc:
            if disk_full(exc):
                raise AppError(507, full_message(self.data_dir, "the photo could not be stored")) from None
            raise AppError(507, f"Could not store the photo in {self.data_dir}: {exc.strerror or exc}. "
                                "Choose another --data-dir.") from None
        log.info("Added %s as %s (%d waiting to train on)", ex.name, label, len(self.store.list()))
        return ex

    def remove_example(self, example_id: str) -> None:
        ex = self.store.get(example_id)
        if ex is None:
            raise AppError(404, f"No pending example with id {shown(example_id)}: already trained on or removed.")
        if self.training and example_id in (self.job.examples if self.job else []):
            raise AppError(409, "That photo is being trained on right now; remove it when the training has finished.")
        self.store.remove([example_id])
        log.info("Removed %s (%s) from the training set", ex.name, ex.label)

    # -- training ----------------------------------------------------------------------------------
    def start_training(self, parameters: dict[str, Any] | None = None) -> TrainingJob:
        """Start an update on the pending examples in the background.

        Raises:
            AppError: 409 while a Train runs, 400 without examples or for a photo that no longer decodes.
            mlupdate.Error: For parameters the model does not allow (the API turns it into 400).
        """
        with self._lock:
            if self.training:
                raise AppError(409, "A training is already running; wait for it to finish (see its progress).")
            examples = self.store.list()
            if not examples:
                raise AppError(400, "There are no examples to train on: add photos with \"It's a "
                                    f"{self.labels[0]}!\" or \"It's a {self.labels[-1]}!\" first.")
            data = []
            for ex in examples:
                img, _ = self.decode(self.store.path(ex).read_bytes(), ex.name)
                data.append({self.image_input: img, self.label_input: ex.label})
            self._jobs += 1
            job = TrainingJob(self._jobs, [e.id for e in examples])
            handlers = mlupdate.ProgressHandlers(events={"training_begin", "mini_batch_end", "epoch_end"},
                                                 handler=lambda ctx: self._progress(job, ctx))
            task = mlupdate.UpdateTask(self.model, data, parameters=parameters, progress_handlers=handlers,
                                       completion_handler=lambda ctx: self._completed(job, ctx))
            job.task = task
            job.epochs = int(task.parameters.get("epochs") or 1)
            job.batches = math.ceil(len(examples) / int(task.parameters.get("mini_batch_size") or len(examples)))
            self.job = job
            job.emit("preparing", examples=len(examples))
            log.info("Training on %s, %s...", plural(len(examples), "photo"), plural(job.epochs, "epoch"))
            task.resume()
            return job

    def cancel_training(self, timeout: float | None = 0.0) -> None:
        """Cancel a running Train (it fails, writes nothing) and wait up to ``timeout`` seconds for it to stop."""
        job = self.job
        if job is not None and job.task is not None and job.state == "running":
            job.task.cancel()
            job.task.wait(timeout)

    def _progress(self, job: TrainingJob, ctx: Any) -> None:
        m = ctx.metrics
        if ctx.event == "training_begin":
            job.emit("training_begin", examples=len(job.examples), epochs=job.epochs, batches=job.batches,
                     learning_rate=ctx.parameters.get("learning_rate"))
        elif ctx.event == "mini_batch_end":
            epoch, batch = int(m["epoch_index"]), int(m["mini_batch_index"])
            job.emit("mini_batch_end", epoch=epoch + 1, batch=batch + 1, batches=job.batches,
                     step=epoch * job.batches + batch + 1, steps=(job.epochs or 1) * job.batches,
                     loss=float(m["loss"]))
        elif ctx.event == "epoch_end":
            loss = float(m["loss"])
            job.losses.append(loss)
            job.emit("epoch_end", epoch=int(m["epoch_index"]) + 1, epochs=job.epochs, loss=loss)

    def _completed(self, job: TrainingJob, ctx: Any) -> None:
        path = None
        try:
            if ctx.task.error is not None:
                raise ctx.task.error
            job.emit("saving")
            model = ctx.model
            path = self.store.new_model_path(".mlpackage" if self.model_path.is_dir() else ".mlmodel")
            model.write(path)  # a new, immutable file; the commit below makes it current
            info = {"base_sha256": self.base_sha, "trained": time.time(), "photos": len(job.examples),
                    "losses": job.losses, "trainings": (self.info or {}).get("trainings", 0) + 1}
            self.store.commit_training(path, info, job.examples)
            self.model, self.personalized_path, self.info, self.warning = model, path, info, None
        except Exception as exc:  # noqa: BLE001 - reported to the page; the server keeps running
            if path is not None and path != self.personalized_path:
                remove_model_file(path)
            job.error = (full_message(self.data_dir, "the trained model could not be saved")
                         if disk_full(exc) else str(exc) or type(exc).__name__)
            log.info("Training failed: %s", job.error)
            job.emit("failed", error=job.error)
            return
        duration = round(time.time() - job.started, 3)
        loss = job.losses[-1] if job.losses else None
        log.info("Trained on %s in %.1f s (loss %s): the personalised model is saved",
                 plural(len(job.examples), "photo"), duration, "?" if loss is None else f"{loss:.4f}")
        job.emit("completed", loss=loss, photos=len(job.examples), duration_s=duration)

    # -- reset -------------------------------------------------------------------------------------
    def reset(self) -> bool:
        """Go back to the original model and delete the personalised one; returns whether there was one.

        Raises:
            AppError: 409 while a Train runs.
        """
        with self._lock:
            if self.training:
                raise AppError(409, "A training is running; reset after it has finished.")
            had = self.store.reset()
            self.model, self.personalized_path, self.info, self.warning = self.base_model, None, None, None
            log.info("Reset to the original model")
            return had


def _ends_in_knn(spec: Any) -> bool:
    """Whether a model is, or is a pipeline ending in, a k-nearest-neighbours classifier."""
    kind = spec.WhichOneof("Type")
    if kind == "kNearestNeighborsClassifier":
        return True
    if kind and kind.startswith("pipeline"):
        pipe = spec.pipeline if kind == "pipeline" else getattr(spec, kind).pipeline
        return bool(pipe.models) and _ends_in_knn(pipe.models[-1])
    return False
