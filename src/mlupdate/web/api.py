"""The JSON API under ``/api`` (documented at ``/docs``)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Header, Request, UploadFile
from fastapi.responses import FileResponse
from fastapi.sse import EventSourceResponse, ServerSentEvent
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

import mlupdate
from mlupdate.web.schemas import (
    ErrorOut,
    ExampleList,
    ExampleOut,
    ModelInfo,
    Prediction,
    ResetOut,
    TrainingStatus,
    TrainParameters,
)
from mlupdate.web.service import AppError, AppService, shown
from mlupdate.web.store import Example

router = APIRouter(prefix="/api", tags=["api"])

E400 = {400: {"model": ErrorOut, "description": "Not an image, a truncated or too large image, an unknown label."}}
E404 = {404: {"model": ErrorOut, "description": "No such example or sample."}}
E409 = {409: {"model": ErrorOut, "description": "A training is running."}}
E413 = {413: {"model": ErrorOut, "description": "The upload is larger than the server's limit."}}
E422 = {422: {"model": ErrorOut, "description": "A field or parameter of the wrong type or out of range."}}
E403 = {403: {"model": ErrorOut, "description": "Refused: sent from another site's page, or without a JSON body "
                                                "or the `X-Requested-With` header."}}


def service(request: Request) -> AppService:
    """The app's :class:`AppService`."""
    return request.app.state.service


async def _image_bytes(svc: AppService, image: UploadFile | None, sample: str | None) -> tuple[bytes, str]:
    if image is not None and sample:
        raise AppError(400, "Send either an image file or a sample name, not both.")
    if image is not None:
        return await image.read(), image.filename or "the uploaded file"
    if sample:
        return await run_in_threadpool(svc.read_sample, sample), sample
    raise AppError(400, "No photo: send an image file in the 'image' field (multipart) or a 'sample' name.")


def example_out(e: Example) -> ExampleOut:
    """The API's view of a pending example."""
    return ExampleOut(id=e.id, label=e.label, name=e.name, added=e.added, image_url=f"/api/examples/{e.id}/image")


def _status(svc: AppService) -> TrainingStatus:
    job = svc.job
    if job is None:
        return TrainingStatus(state="idle", personalized=svc.personalized)
    return TrainingStatus(**job.status(), personalized=svc.personalized)


@router.get("/model", response_model=ModelInfo, summary="The model being served")
def model_info(request: Request) -> Any:
    """Labels, whether the personalised model is in use, the default update parameters."""
    return service(request).model_info()


@router.post("/predict", response_model=Prediction, responses={**E400, **E403, **E404, **E413, **E422},
             summary="Classify a photo")
async def predict(request: Request,
                  image: Annotated[UploadFile | None, File(description="The photo (JPEG, PNG, ...).")] = None,
                  sample: Annotated[str | None, Form(description="Or: the name of a sample photo.")] = None) -> Any:
    """Classify an uploaded photo (multipart field `image`) or a sample photo (form field `sample`)."""
    svc = service(request)
    data, name = await _image_bytes(svc, image, sample)
    img, _ = await run_in_threadpool(svc.decode, data, name)
    return await run_in_threadpool(svc.predict, img, name)


@router.get("/examples", response_model=ExampleList, summary="List the pending training examples")
def list_examples(request: Request) -> Any:
    """The labelled photos that the next Train will use."""
    svc = service(request)
    items = svc.store.list()
    counts = {lab: sum(e.label == lab for e in items) for lab in svc.labels}
    return ExampleList(count=len(items), counts=counts, examples=[example_out(e) for e in items])


@router.post("/examples", response_model=ExampleOut, status_code=201,
             responses={**E400, **E403, **E404, **E413, **E422},
             summary="Add a labelled photo to the training set")
async def add_example(request: Request,
                      label: Annotated[str, Form(description="The correct label, e.g. `Cat` or `Dog`.")],
                      image: Annotated[UploadFile | None, File(description="The photo.")] = None,
                      sample: Annotated[str | None, Form(description="Or: a sample photo's name.")] = None) -> Any:
    """Store the photo with its label (it is kept on disk until a Train uses it or it is removed)."""
    svc = service(request)
    svc.check_label(label)
    data, name = await _image_bytes(svc, image, sample)
    return example_out(await run_in_threadpool(svc.add_example, data, label, name))


@router.delete("/examples/{example_id}", status_code=204, responses={**E403, **E404, **E409, **E422},
               summary="Remove a pending example")
def remove_example(request: Request, example_id: str) -> None:
    """Delete the photo and its label."""
    service(request).remove_example(example_id)


@router.get("/examples/{example_id}/image", responses={**E404, **E422}, summary="A pending example's photo",
            response_class=FileResponse)
def example_image(request: Request, example_id: str) -> Any:
    """The stored photo, as uploaded."""
    svc = service(request)
    ex = svc.store.get(example_id)
    if ex is None:
        raise AppError(404, f"No pending example with id {shown(example_id)}.")
    return FileResponse(svc.store.path(ex))


@router.get("/samples", response_model=list[str], summary="Sample photo names")
def samples(request: Request) -> Any:
    """Names of the sample photos (empty unless the server was started with `--samples`)."""
    return service(request).samples()


@router.post("/train", response_model=TrainingStatus, status_code=202,
             responses={400: {"model": ErrorOut, "description": "No examples, or parameters the model forbids."},
                        **E403, **E409, **E413, **E422}, summary="Start training on the pending examples")
def train(request: Request, parameters: TrainParameters | None = None) -> Any:
    """Start an update of the model in the background. Follow it with `/api/train/events` (SSE) or `/api/train`.

    When it finishes, the updated model is written atomically to the data directory and answers every
    later prediction (also after a restart); the examples it used are removed from the pending list.
    """
    svc = service(request)
    try:
        svc.start_training(parameters.overrides() if parameters else None)
    except mlupdate.Error as exc:
        raise AppError(400, str(exc)) from None
    return _status(svc)


@router.get("/train", response_model=TrainingStatus, summary="Status of the latest Train")
def train_status(request: Request) -> Any:
    """State, epochs done, losses and errors of the latest Train."""
    return _status(service(request))


EVENTS_DOC = ("Events, each as it happens: `preparing` {examples}, `training_begin` {examples, epochs, batches, "
              "learning_rate}, `mini_batch_end` {epoch, batch, batches, step, steps, loss} after every mini-batch, "
              "`epoch_end` {epoch, epochs, loss}, `saving` {}, then `completed` {loss, photos, duration_s} or "
              "`failed` {error}; `idle` {TrainingStatus} when nothing has run. The stream ends after the last event.")


@router.get("/train/events", response_class=EventSourceResponse, summary="Progress of the latest Train (SSE)",
            responses={200: {"description": EVENTS_DOC},
                       422: {"description": E422[422]["description"],  # JSON, not the route's event stream
                             "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}}}})
async def train_events(request: Request, last_event_id: Annotated[int | None, Header(
        description="Resume after this event id (browsers send it when they reconnect).")] = None,
                       ) -> AsyncIterator[ServerSentEvent]:
    """Stream the latest Train's events from the start (or after the `Last-Event-ID` header), pushed as they happen."""
    svc = service(request)
    job = svc.job
    if job is None:
        yield ServerSentEvent(id="0", event="idle", data=_status(svc).model_dump())
        return
    async for ev in job.follow(0 if last_event_id is None else max(last_event_id + 1, 0)):
        yield ServerSentEvent(id=str(ev["id"]), event=ev["event"], data=ev["data"])


@router.get("/model/download", response_class=FileResponse, responses={**E404, **E422},
            summary="Download the personalised model (.mlmodel, or a zipped .mlpackage)")
def download(request: Request, original: bool = False) -> Any:
    """The personalised model file (or the original with `?original=true`), to use in an app with Core ML."""
    svc = service(request)
    if original:
        return _model_file(svc.model_path, svc.model_path.name)
    if svc.personalized_path is None or not svc.personalized_path.exists():
        raise AppError(404, "There is no personalised model yet: add examples and Train first.")
    return _model_file(svc.personalized_path, f"{svc.model_path.stem}-personalized{svc.model_path.suffix}")


def _model_file(path: Path, name: str) -> Any:
    """A model file as a download; a package folder (``.mlpackage``) as a zip of it, removed once sent."""
    if not path.is_dir():
        return FileResponse(path, media_type="application/octet-stream", filename=name)
    tmp = Path(tempfile.mkdtemp(prefix="mlupdate-download-"))
    archive = shutil.make_archive(str(tmp / name), "zip", root_dir=path.parent, base_dir=path.name)
    return FileResponse(archive, media_type="application/zip", filename=f"{name}.zip",
                        background=BackgroundTask(shutil.rmtree, tmp, ignore_errors=True))


@router.post("/reset", response_model=ResetOut, responses={**E403, **E409}, summary="Go back to the original model")
def reset(request: Request) -> Any:
    """Delete the personalised model; predictions use the original model again. Pending examples are kept."""
    return ResetOut(reset=service(request).reset(), personalized=False)
