"""The FastAPI app behind ``vecface serve``: one collection, one page, its JSON API.

* ``GET /`` the search page (static HTML, JS and CSS under ``/static``; no build step).
* ``POST /api/search/image`` multipart upload (``image``, ``k``, ``tag``, ``face``).
* ``POST /api/search/text`` JSON ``{"text": ..., "k": 10, "tag": null}`` (CLIP collections).
* ``GET /api/search/id/{record_id}`` search with a stored record's own vector.
* ``GET /api/health`` backend, collection, embedder, record count.
* ``GET /api/thumb/{record_id}`` a JPEG thumbnail of a stored record's image.
* ``GET /api/people``, ``GET /api/people/{person}/face``, ``GET /api/people/{person}/photos``,
  ``PUT /api/people/{person}``: the People view (:mod:`.people`).
* The searches take the filters ``since``, ``until``, ``camera``, ``person``, ``near`` (LAT,LON),
  ``km`` and ``box`` (S,W,N,E), made into the same native filter as ``vecface search``'s (:class:`.schemas.FiltersIn`).
* ``GET /docs`` FastAPI's OpenAPI page.

Every error is JSON ``{"error": "..."}``: 400 bad input, 404 unknown record (or path), 413 too
large (bytes or pixels), 415 not an accepted image, 422 no face found or several faces, 503 the
backend failed.
"""

from __future__ import annotations

import logging
import os
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, Optional

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..embedders import Embedder
from ..errors import VecfaceError
from ..store import VectorStore
from .errors import WebError, as_web_error
from .guard import LOCAL_HOSTS, BodyTooLarge, RequestGuard
from .people import add_routes as add_people_routes
from .schemas import (ERRORS, IMAGE_BODY, IMAGE_ERRORS, MAX_K, MAX_TAG, ErrorOut, FiltersIn, HealthOut, SearchOut,
                      TextQuery)
from .service import DEFAULT_MAX_PIXELS, DEFAULT_MAX_UPLOAD, SearchService
from .uploads import read_image_form

log = logging.getLogger("vecface.web")

STATIC_DIR = Path(__file__).parent / "static"
MULTIPART_OVERHEAD = 64 * 1024  # headers and the small form fields around the file


def _json_error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


def create_app(backend: str, collection: str, *, store: VectorStore | None = None,
               embedder: Embedder | None = None, store_options: dict[str, Any] | None = None,
               data_dir: str | os.PathLike[str] | None = None, model: str | None = None,
               device: str | None = None, max_upload: int = DEFAULT_MAX_UPLOAD,
               max_pixels: int = DEFAULT_MAX_PIXELS, allowed_hosts: list[str] | None = None) -> FastAPI:
    """The web app for one ingested collection.

    The collection and its embedder are opened now (so a wrong name fails at start, not on the
    first search), from the ingest manifest in ``data_dir``; or pass an open ``store`` and
    ``embedder``. ``allowed_hosts``: Host header values served (default: 127.0.0.1, localhost,
    ::1); ``["*"]`` serves any. The store is closed when the app shuts down (if it opened it).
    """
    service = SearchService(backend, collection, store=store, embedder=embedder, store_options=store_options,
                            data_dir=data_dir, model=model, device=device, max_upload=max_upload,
                            max_pixels=max_pixels)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        service.close()

    from .. import __version__

    app = FastAPI(title="vecface", version=__version__, lifespan=lifespan,
                  description=f"Face and image similarity search over the {backend} collection {collection!r}. "
                              "Every error is JSON {\"error\": \"...\"}.")
    app.state.vecface = service
    hosts = list(allowed_hosts) if allowed_hosts is not None else list(LOCAL_HOSTS)
    max_body = max_upload + MULTIPART_OVERHEAD
    app.add_middleware(RequestGuard, max_body=max_body, allowed_hosts=hosts)
    _add_error_handlers(app, max_body)

    @app.get("/", include_in_schema=False)
    def index():
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/api/health", response_model=HealthOut, tags=["info"])
    def health():
        """Backend, collection, embedder and the number of records."""
        return service.health()

    @app.post("/api/search/image", response_model=SearchOut, tags=["search"], openapi_extra=IMAGE_BODY,
              responses=IMAGE_ERRORS)
    async def search_image(request: Request):
        """Search with an uploaded photo (multipart form: ``image``, ``k``, ``tag``, ``face``).

        In a face collection a photo with several faces answers 422 with ``faces`` (their boxes)
        and ``choose_face: true``: ask again with ``face=N``."""
        data, k, tag, face, fields = await read_image_form(request)
        try:
            filters = FiltersIn(**fields)
        except ValidationError as e:
            raise RequestValidationError(e.errors()) from None
        return await run_in_threadpool(service.search_image, data, 10 if k is None else k, tag, face, filters)

    @app.post("/api/search/text", response_model=SearchOut, tags=["search"], responses=ERRORS)
    def search_text(body: TextQuery):
        """Search with a sentence (CLIP collections only; face-dlib has no text model)."""
        return service.search_text(body.text, body.k, body.tag, body)

    @app.get("/api/search/id/{record_id}", response_model=SearchOut, tags=["search"], responses=ERRORS)
    def search_id(record_id: str, filters: Annotated[FiltersIn, Query()], k: int = Query(10, ge=1, le=MAX_K),
                  tag: Optional[str] = Query(None, max_length=MAX_TAG)):
        """Search with a stored record's own vector ("more like this"); the record itself is left out."""
        return service.search_id(record_id, k, tag, filters)

    @app.get("/api/thumb/{record_id}", tags=["images"], response_class=Response,
             responses={200: {"content": {"image/jpeg": {}}}, 404: {"model": ErrorOut}, 410: {"model": ErrorOut}})
    def thumb(record_id: str):
        """A JPEG thumbnail of a stored record's image (looked up by record id only)."""
        return Response(service.thumbnail(record_id), media_type="image/jpeg",
                        headers={"Cache-Control": "private, max-age=3600"})

    add_people_routes(app, service)
    return app


def _add_error_handlers(app: FastAPI, max_body: int) -> None:
    """Every error answers JSON ``{"error": ...}``; invalid parameters are bad input (400)."""

    @app.exception_handler(WebError)
    async def _web_error(request: Request, exc: WebError):
        return _json_error(exc.status, exc.message, **exc.extra)

    @app.exception_handler(VecfaceError)
    async def _vecface_error(request: Request, exc: VecfaceError):
        err = as_web_error(exc)
        return _json_error(err.status, err.message, **err.extra)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        if exc.status_code == 404 and exc.detail in (None, "Not Found"):
            message = f"not found: {request.url.path}"
        else:
            message = str(exc.detail) if exc.detail else "error"
        return _json_error(exc.status_code, message)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        parts = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path"))
            parts.append(f"{loc}: {err.get('msg')}" if loc else str(err.get("msg")))
        return _json_error(400, "invalid request: " + "; ".join(parts))

    @app.exception_handler(BodyTooLarge)
    async def _too_large(request: Request, exc: BodyTooLarge):
        return _json_error(413, f"the request body is over the limit of {max_body:,} bytes")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        log.exception("unexpected error on %s", request.url.path)
        return _json_error(500, f"internal error ({type(exc).__name__}): {exc}")
