"""The FastAPI application: the page, the JSON API, the offline API docs, limits and error answers."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import swagger_ui_bundle
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException
from starlette.routing import Match

import mlupdate
from mlupdate.web.api import example_out, router
from mlupdate.web.guard import CLIENT_HEADER, BodySizeLimit, SiteGuard
from mlupdate.web.service import DEFAULT_MAX_PIXELS, DEFAULT_MAX_UPLOAD_BYTES, AppError, AppService

HERE = Path(__file__).resolve().parent
CREDIT = ("Photos: Oxford-IIIT Pet Dataset (Parkhi, Vedaldi, Zisserman, Jawahar, CVPR 2012), CC BY-SA 4.0; "
          "copyright remains with the photos' owners.")
DESCRIPTION = (
    "Classify photos, correct the model's mistakes, and retrain it on this machine (Core ML's MLUpdateTask, "
    "via mlupdate). Errors answer `{\"detail\": message}`.\n\n"
    f"Requests that change data need a JSON body or the header `{CLIENT_HEADER}` (any value), and are refused "
    "(403) from other sites' pages; e.g. `curl -H 'X-Requested-With: curl' -F image=@cat.jpg "
    "http://127.0.0.1:8000/api/predict`.")


def allowed_methods(app: FastAPI, scope: dict[str, Any]) -> list[str]:
    """Every method some route answers at the request's path."""
    return [m for m in ("GET", "POST", "PUT", "PATCH", "DELETE")
            if any(r.matches({**scope, "method": m})[0] is Match.FULL for r in app.router.routes)]


def create_app(model_path: str | Path, data_dir: str | Path, samples_dir: str | Path | None = None, *,
               max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES, max_pixels: int = DEFAULT_MAX_PIXELS,
               title: str = "Cat or Dog?", allowed_hosts: Iterable[str] = (), intro: str = "") -> FastAPI:
    """The retraining web app for an updatable image classifier.

    Args:
        model_path: The original ``.mlmodel`` (never modified).
        data_dir: Where the personalised model and the pending examples are kept.
        samples_dir: A folder of photos offered as a gallery (searched recursively), or None.
        max_upload_bytes: Larger request bodies are answered 413.
        max_pixels: Images with more pixels are refused (decompression bombs).
        title: The page's title.
        allowed_hosts: Host names the app answers besides 127.0.0.1, localhost and ::1 (``*``: any).
        intro: A line under the page's heading (the demo: which photos its model gets wrong).

    Returns:
        The FastAPI app; run it with uvicorn.

    Raises:
        mlupdate.Error: If the model cannot be loaded, is not an image classifier, or is not updatable.
    """
    svc = AppService(model_path, data_dir, samples_dir, max_pixels=max_pixels)
    app = FastAPI(title=f"mlupdate: {title}", version=mlupdate.__version__, description=DESCRIPTION,
                  docs_url=None, redoc_url=None)
    app.state.service = svc
    app.state.max_upload_bytes = max_upload_bytes
    templates = Jinja2Templates(directory=str(HERE / "templates"))

    @app.exception_handler(AppError)
    async def _app_error(request: Request, exc: AppError) -> JSONResponse:
        return JSONResponse({"detail": exc.message}, status_code=exc.status)

    @app.exception_handler(mlupdate.Error)
    async def _mlupdate_error(request: Request, exc: mlupdate.Error) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            allow = allowed_methods(app, request.scope)
            headers["Allow"] = ", ".join(allow)
            detail = f"{request.method} is not allowed here; use {' or '.join(allow)}."
        elif exc.status_code == 404:
            detail = f"Nothing at {request.url.path[:80]!r}: see /docs for the API."
        else:
            detail = str(exc.detail)
        return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path"))
            parts.append(f"{where}: {err.get('msg')}" if where else str(err.get("msg")))
        return JSONResponse({"detail": "Invalid request: " + "; ".join(parts) + "."}, status_code=422)

    app.include_router(router)
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    app.mount("/docs/assets", StaticFiles(directory=str(swagger_ui_bundle.swagger_ui_path)), name="docs-assets")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page(request: Request) -> Any:
        examples = svc.store.list()
        info = svc.model_info()
        boot = {"labels": svc.labels, "status": svc.job.status() if svc.job else None,
                "personalized": info["personalized"], "warning": info["warning"]}
        context = {"title": title, "intro": intro, "labels": svc.labels, "info": info, "credit": CREDIT, "boot": boot,
                   "examples": [example_out(e).model_dump() for e in examples], "samples": svc.samples(),
                   "max_upload_mb": max_upload_bytes / (1024 * 1024)}
        return templates.TemplateResponse(request, "index.html", context)

    @app.get("/docs", response_class=HTMLResponse, include_in_schema=False)
    def docs(request: Request) -> Any:
        return templates.TemplateResponse(request, "docs.html", {"title": app.title})

    @app.get("/samples/{name:path}", include_in_schema=False)
    def sample_file(name: str) -> FileResponse:
        return FileResponse(svc.sample_path(name))

    app.add_middleware(BodySizeLimit, max_bytes=max_upload_bytes)
    app.add_middleware(SiteGuard, allowed_hosts=allowed_hosts)
    return app
