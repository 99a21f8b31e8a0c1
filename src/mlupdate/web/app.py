"""The FastAPI application: the page, the JSON API, limits and error answers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import mlupdate
from mlupdate.web.api import _example_out, router
from mlupdate.web.service import DEFAULT_MAX_PIXELS, DEFAULT_MAX_UPLOAD_BYTES, AppError, AppService

HERE = Path(__file__).resolve().parent
CREDIT = ("Photos: Oxford-IIIT Pet Dataset (Parkhi, Vedaldi, Zisserman, Jawahar, CVPR 2012), CC BY-SA 4.0; "
          "copyright remains with the photos' owners.")


class _TooLarge(Exception):
    pass


class BodySizeLimit:
    """Answer 413 to requests whose body is larger than ``max_bytes`` (by header or as it streams in)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _message(self) -> bytes:
        mb = self.max_bytes / (1024 * 1024)
        return json.dumps({"detail": f"The upload is larger than this server's limit of {mb:g} MB: "
                                     "choose a smaller photo."}).encode()

    async def _send_413(self, send: Send) -> None:
        body = self._message()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await self._send_413(send)
            return
        seen = 0
        too_large = False
        started = False

        async def limited_receive() -> Message:
            nonlocal seen, too_large
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    too_large = True
                    raise _TooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if too_large:
                return  # whatever the app answers to the aborted body, the client gets the 413
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except _TooLarge:
            pass
        except Exception:
            if not too_large:
                raise
        if too_large and not started:
            await self._send_413(send)


def create_app(model_path: str | Path, data_dir: str | Path, samples_dir: str | Path | None = None, *,
               max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES, max_pixels: int = DEFAULT_MAX_PIXELS,
               title: str = "Cat or Dog?") -> FastAPI:
    """The retraining web app for an updatable image classifier.

    Args:
        model_path: The original ``.mlmodel`` (never modified).
        data_dir: Where the personalised model and the pending examples are kept.
        samples_dir: A folder of photos offered as a gallery (searched recursively), or None.
        max_upload_bytes: Larger request bodies are answered 413.
        max_pixels: Images with more pixels are refused (decompression bombs).
        title: The page's title.

    Returns:
        The FastAPI app; run it with uvicorn.

    Raises:
        mlupdate.Error: If the model cannot be loaded, is not an image classifier, or is not updatable.
    """
    svc = AppService(model_path, data_dir, samples_dir, max_pixels=max_pixels)
    app = FastAPI(title=f"mlupdate: {title}", version=mlupdate.__version__,
                  description="Classify photos, correct the model's mistakes, and retrain it on this machine "
                              "(Core ML's MLUpdateTask, via mlupdate). Errors answer `{\"detail\": message}`.")
    app.state.service = svc
    app.state.max_upload_bytes = max_upload_bytes
    templates = Jinja2Templates(directory=str(HERE / "templates"))

    @app.exception_handler(AppError)
    async def _app_error(request: Request, exc: AppError) -> JSONResponse:
        return JSONResponse({"detail": exc.message}, status_code=exc.status)

    @app.exception_handler(mlupdate.Error)
    async def _mlupdate_error(request: Request, exc: mlupdate.Error) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path"))
            parts.append(f"{where}: {err.get('msg')}" if where else str(err.get("msg")))
        return JSONResponse({"detail": "Invalid request: " + "; ".join(parts) + "."}, status_code=422)

    app.include_router(router)
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page(request: Request) -> Any:
        examples = svc.store.list()
        context = {"title": title, "labels": svc.labels, "info": svc.model_info(), "credit": CREDIT,
                   "examples": [_example_out(e).model_dump() for e in examples], "samples": svc.samples(),
                   "max_upload_mb": max_upload_bytes / (1024 * 1024), "status": svc.job.status() if svc.job else None}
        return templates.TemplateResponse(request, "index.html", context)

    @app.get("/samples/{name:path}", include_in_schema=False)
    def sample_file(name: str) -> FileResponse:
        return FileResponse(svc.sample_path(name))

    app.add_middleware(BodySizeLimit, max_bytes=max_upload_bytes)
    return app
