"""What the web app does, independent of HTTP: predict, keep examples, train, reset.

Only mlupdate's public API is used: :func:`mlupdate.load`, :class:`mlupdate.Model`,
:class:`mlupdate.UpdateTask`, :class:`mlupdate.ProgressHandlers`, :class:`mlupdate.ImageConstraint`.

Data directory layout::

    personalized.mlmodel   the updated model (written atomically; used for every prediction)
    personalized.json      what it was trained from (base model hash, time, photos, losses)
    examples/              pending labelled photos (see :mod:`mlupdate.web.store`)
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

import mlupdate
from mlupdate.web.store import Example, ExampleStore, write_text_atomic

DEFAULT_MAX_PIXELS = 40_000_000
DEFAULT_MAX_UPLOAD_BYTES = 10 * 1024 * 1024


class AppError(Exception):
    """A request the app refuses, with the HTTP status and a message for the user."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class TrainingJob:
    """One Train: its state and the events the page shows (``training_begin``, ``epoch_end``, ``completed``...)."""

    id: int
    examples: list[str]
    epochs: int | None
    state: str = "running"  # running, completed, failed
    events: list[dict[str, Any]] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    error: str | None = None
    started: float = field(default_factory=time.time)
    finished: float | None = None
    task: Any = None
    cond: threading.Condition = field(default_factory=threading.Condition)

    def emit(self, event: str, **data: Any) -> None:
        with self.cond:
            self.events.append({"id": len(self.events), "event": event, "data": data})
            self.cond.notify_all()

    def events_since(self, index: int) -> tuple[list[dict[str, Any]], bool]:
        """Events from ``index`` on, and whether the job has finished."""
        with self.cond:
            return self.events[index:], self.state != "running"

    def status(self) -> dict[str, Any]:
        end = self.finished or time.time()
        return {"job": self.id, "state": self.state, "examples": len(self.examples), "epochs": self.epochs,
                "epoch": len(self.losses), "loss": self.losses[-1] if self.losses else None,
                "losses": list(self.losses), "error": self.error, "started": self.started,
                "finished": self.finished, "duration_s": round(end - self.started, 3)}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


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
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.samples_dir = Path(samples_dir).resolve() if samples_dir else None
        self.max_pixels = max_pixels
        self.personalized_path = self.data_dir / "personalized.mlmodel"
        self.personalized_info_path = self.data_dir / "personalized.json"
        self.base_model = mlupdate.load(self.model_path)
        self.base_sha = _sha256(self.model_path)
        self._inspect(self.base_model)
        self.store = ExampleStore(self.data_dir / "examples")
        self._lock = threading.Lock()
        self.job: TrainingJob | None = None
        self._jobs = 0
        self.model = self.base_model
        self.info: dict[str, Any] | None = None
        self.warning: str | None = None
        self._load_personalized()

    # -- setup ---------------------------------------------------------------------------------
    def _inspect(self, model: Any) -> None:
        d = model.description
        images = [f for f in d.inputs.values() if f.type == "image"]
        if len(images) != 1 or not d.class_labels:
            raise mlupdate.FeatureError(
                f"{self.model_path} is not an image classifier with one image input (inputs: "
                f"{', '.join(str(f) for f in d.inputs.values())}); the app needs one, like the demo model.")
        if not d.is_updatable:
            raise mlupdate.NotUpdatableError(
                f"{self.model_path} is not updatable, so the app could not retrain it. Make it updatable first "
                "(mlupdate make_updatable) or serve the demo model.")
        self.image_input = images[0].name
        self.constraint = images[0].image_constraint
        self.labels = [str(label) for label in d.class_labels]
        targets = [n for n, f in d.training_inputs.items() if n != self.image_input]
        self.label_input = targets[0] if targets else (d.predicted_feature_name or "classLabel")
        self.probabilities_output = d.predicted_probabilities_name
        self.label_output = d.predicted_feature_name

    def _load_personalized(self) -> None:
        if not self.personalized_path.is_file():
            return
        try:
            info = json.loads(self.personalized_info_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            info = {}
        if info.get("base_sha256") not in (None, self.base_sha):
            self.warning = (f"{self.personalized_path} was trained from another model than {self.model_path}; "
                            "using the original model. Reset to discard the old personalised model.")
            return
        try:
            self.model = mlupdate.load(self.personalized_path)
            self.info = info
        except mlupdate.Error as exc:
            self.warning = f"The personalised model could not be loaded ({exc}); using the original model."

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
        if not data:
            raise AppError(400, f"{name} is empty: choose a photo (JPEG or PNG).")
        try:
            with Image.open(io.BytesIO(data)) as probe:
                fmt = probe.format
        except Exception:  # noqa: BLE001 - Pillow raises many kinds; prepare() below gives the message
            fmt = None
        try:
            img = self.constraint.prepare(data, self.base_model.crop_and_scale, max_pixels=self.max_pixels)
        except mlupdate.ImageError as exc:
            raise AppError(400, str(exc).replace("uploaded image", name, 1)) from None
        return img, fmt

    def predict(self, image: Image.Image) -> dict[str, Any]:
        """The label and the probability of every class."""
        out = self.model.predict({self.image_input: image})
        probs = out.get(self.probabilities_output or "", {})
        probs = {str(k): float(v) for k, v in probs.items()} if isinstance(probs, dict) else {}
        label = str(out.get(self.label_output or "", max(probs, key=probs.get) if probs else ""))
        return {"label": label, "probabilities": {lab: probs.get(lab, 0.0) for lab in self.labels},
                "personalized": self.personalized}

    def check_label(self, label: str) -> str:
        """The label itself if the model has it (exact, else case-insensitive), else a 400 error."""
        if label in self.labels:
            return label
        for lab in self.labels:
            if lab.lower() == str(label).strip().lower():
                return lab
        raise AppError(400, f"Unknown label {label!r}: the model's labels are {', '.join(self.labels)}.")

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
        p = (self.samples_dir / name).resolve()
        if not p.is_relative_to(self.samples_dir) or not p.is_file():
            raise AppError(404, f"No sample photo named {name!r}.")
        return p

    # -- examples ----------------------------------------------------------------------------------
    def add_example(self, data: bytes, label: str, name: str) -> Example:
        label = self.check_label(label)
        _, fmt = self.decode(data, name)
        try:
            return self.store.add(data, label, name, fmt)
        except OSError as exc:
            raise AppError(507, f"Could not store the photo in {self.store.folder}: {exc.strerror or exc}. "
                                "Free some disk space or choose another --data-dir.") from None

    def remove_example(self, example_id: str) -> None:
        if self.store.get(example_id) is None:
            raise AppError(404, f"No pending example with id {example_id!r} (already trained or removed?).")
        if self.training and example_id in (self.job.examples if self.job else []):
            raise AppError(409, "That photo is being trained on right now; remove it when the training has finished.")
        try:
            self.store.remove([example_id])
        except OSError as exc:
            raise AppError(507, f"Could not update {self.store.folder}: {exc.strerror or exc}.") from None

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
            job = TrainingJob(self._jobs, [e.id for e in examples], None)
            handlers = mlupdate.ProgressHandlers(events={"training_begin", "epoch_end"},
                                                 handler=lambda ctx: self._progress(job, ctx))
            task = mlupdate.UpdateTask(self.model, data, parameters=parameters, progress_handlers=handlers,
                                       completion_handler=lambda ctx: self._completed(job, ctx))
            job.task = task
            job.epochs = task.parameters.get("epochs")
            self.job = job
            task.resume()
            return job

    def _progress(self, job: TrainingJob, ctx: Any) -> None:
        if ctx.event == "training_begin":
            job.emit("training_begin", examples=len(job.examples), epochs=job.epochs,
                     learning_rate=ctx.parameters.get("learning_rate"))
        elif ctx.event == "epoch_end":
            loss = float(ctx.metrics["loss"])
            job.losses.append(loss)
            job.emit("epoch_end", epoch=int(ctx.metrics["epoch_index"]) + 1, epochs=job.epochs, loss=loss)

    def _completed(self, job: TrainingJob, ctx: Any) -> None:
        error = ctx.task.error
        try:
            if error is not None:
                raise error
            model = ctx.model
            model.write(self.personalized_path)  # atomic: a crash leaves the old file
            info = {"base_sha256": self.base_sha, "trained": time.time(), "photos": len(job.examples),
                    "losses": job.losses, "trainings": (self.info or {}).get("trainings", 0) + 1}
            write_text_atomic(self.personalized_info_path, json.dumps(info, indent=1))
            self.model, self.info, self.warning = model, info, None
            self.store.remove(job.examples)
        except Exception as exc:  # noqa: BLE001 - reported to the page; the server keeps running
            job.error = str(exc) or type(exc).__name__
            job.finished = time.time()
            with job.cond:
                job.state = "failed"
            job.emit("failed", error=job.error)
            return
        job.finished = time.time()
        with job.cond:
            job.state = "completed"
        job.emit("completed", loss=job.losses[-1] if job.losses else None, photos=len(job.examples),
                 duration_s=round(job.finished - job.started, 3))

    # -- reset -------------------------------------------------------------------------------------
    def reset(self) -> bool:
        """Go back to the original model and delete the personalised one; returns whether there was one.

        Raises:
            AppError: 409 while a Train runs.
        """
        with self._lock:
            if self.training:
                raise AppError(409, "A training is running; reset after it has finished.")
            had = self.personalized_path.exists()
            self.model, self.info, self.warning = self.base_model, None, None
            self.personalized_path.unlink(missing_ok=True)
            self.personalized_info_path.unlink(missing_ok=True)
            return had
