"""The web page and JSON API behind ``vecface serve``.

One FastAPI app serves one collection:

* ``GET /`` the search page (static HTML, JS and CSS under ``/static``; no build step).
* ``POST /api/search/image`` multipart upload (``image``, ``k``, ``tag``, ``face``).
* ``POST /api/search/text`` JSON ``{"text": ..., "k": 10, "tag": null}`` (CLIP collections).
* ``GET /api/search/id/{record_id}`` search with a stored record's own vector.
* ``GET /api/health`` backend, collection, embedder, record count.
* ``GET /api/thumb/{record_id}`` a JPEG thumbnail of a stored record's image.
* ``GET /docs`` FastAPI's OpenAPI page.

Security: the only files read from disk are the ``path`` of records fetched from the collection by
id, and only when their content still has the SHA-256 recorded at ingest; they are decoded and
re-encoded as JPEG, never sent as they are. Request bodies are capped (``413``); uploads must be
JPEG/PNG/WebP/GIF/BMP/TIFF images within a pixel limit (``415``/``400``); uploads are parsed in
memory (never spooled to a temporary file), and thumbnails are cached under
``<data dir>/thumbs``. Requests whose Host header is not the address served are refused (DNS
rebinding). Every error is JSON ``{"error": "..."}``.
"""

from __future__ import annotations

import io
import logging
import os
import re
import sys
import threading
import time
import warnings
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Optional
from urllib.parse import quote


try:
    from fastapi import FastAPI, Query, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse, JSONResponse, Response
    from fastapi.staticfiles import StaticFiles
    from pydantic import BaseModel, Field
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException as StarletteHTTPException
    from starlette.formparsers import MultiPartException, MultiPartParser
except ImportError as e:  # pragma: no cover - depends on the environment
    from ..errors import MissingDependency

    raise MissingDependency(getattr(e, "name", None) or "fastapi", extra="web", purpose="vecface serve") from e

from ..config import data_dir as vecface_data_dir
from ..embedders import Embedder, l2_normalise
from ..errors import (
    BackendError,
    BackendUnavailable,
    ImageError,
    InvalidArgument,
    NoFaceFound,
    UnknownCollection,
    VecfaceError,
)
from ..store import VectorStore

log = logging.getLogger("vecface.web")

STATIC_DIR = Path(__file__).parent / "static"
DEFAULT_MAX_UPLOAD = 10 * 1024 * 1024  # bytes of one uploaded image
DEFAULT_MAX_PIXELS = 40_000_000  # pixels of one uploaded image (decompression bombs)
MULTIPART_OVERHEAD = 64 * 1024  # headers and the small form fields around the file
MAX_K = 100
THUMB_SIDE = 320
ACCEPTED_FORMATS = {"JPEG": "JPEG", "MPO": "JPEG", "PNG": "PNG", "WEBP": "WebP", "GIF": "GIF", "BMP": "BMP",
                    "TIFF": "TIFF"}
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_NO_CSP = ("/docs", "/redoc", "/openapi.json")
CSP = ("default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; connect-src 'self'; "
       "style-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
       "frame-ancestors 'none'")


# ---------------------------------------------------------------- errors

class WebError(Exception):
    """An error answered as JSON ``{"error": message, **extra}`` with ``status``."""

    def __init__(self, status: int, message: str, **extra: Any):
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra


class BodyTooLarge(Exception):
    pass


def _status_for(exc: VecfaceError) -> int:
    if isinstance(exc, NoFaceFound):
        return 422
    if isinstance(exc, ImageError):
        return 400
    if isinstance(exc, UnknownCollection):
        return 404
    if isinstance(exc, InvalidArgument):
        return 400
    if isinstance(exc, (BackendUnavailable, BackendError)):
        return 503
    return 500


def _json_error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


# ---------------------------------------------------------------- the search service

class SearchService:
    """The open store and embedder of one collection, and what the API does with them.

    Embedding and searching hold one lock: the dlib detector and the store connection are used by
    one request at a time (the machine's cores are busy with one embedding anyway).
    """

    def __init__(self, backend: str, collection: str, *, store: VectorStore | None = None,
                 embedder: Embedder | None = None, store_options: dict[str, Any] | None = None,
                 data_dir: str | os.PathLike[str] | None = None, model: str | None = None,
                 device: str | None = None, max_upload: int = DEFAULT_MAX_UPLOAD,
                 max_pixels: int = DEFAULT_MAX_PIXELS, thumb_side: int = THUMB_SIDE):
        if max_upload < 1 or max_pixels < 1 or thumb_side < 16:
            raise InvalidArgument("max_upload and max_pixels must be positive, thumb_side at least 16")
        self.home = vecface_data_dir(data_dir)
        self.thumb_dir = self.home / "thumbs"
        self.max_upload = int(max_upload)
        self.max_pixels = int(max_pixels)
        self.thumb_side = int(thumb_side)
        self.lock = threading.Lock()
        self._owns_store = store is None
        if store is None or embedder is None:
            from ..manifest import MANIFEST_NAME, Manifest
            from ..search import collection_embedder, open_collection

            with Manifest(self.home / MANIFEST_NAME) as manifest:
                if store is None:
                    store, embedder = open_collection(backend, collection, model=model, device=device,
                                                      manifest=manifest, **(store_options or {}))
                else:
                    from ..embedders import make_embedder

                    embedder = make_embedder(collection_embedder(backend, collection, manifest),
                                             model=model, device=device)
        if store.dim != embedder.dim:
            raise InvalidArgument(f"collection {store.name!r} holds {store.dim}-d vectors but the embedder "
                                  f"{embedder.name} makes {embedder.dim}-d ones")
        self.backend = backend
        self.collection = collection
        self.store = store
        self.embedder = embedder

    def close(self) -> None:
        if self._owns_store:
            with self.lock:
                self.store.close()

    # ---- health
    def health(self) -> dict[str, Any]:
        with self.lock:
            count = self.store.count()
        e = self.embedder
        return {"status": "ok", "backend": self.backend, "collection": self.collection,
                "metric": self.store.metric.label, "count": count,
                "embedder": {"kind": e.kind, "name": e.name, "dim": e.dim, "supports_text": e.supports_text,
                             "per_face": e.per_face},
                "max_upload_bytes": self.max_upload, "max_k": MAX_K}

    # ---- searches
    def search_image(self, data: bytes, k: int, tag: str | None, face: int | None) -> dict[str, Any]:
        k, tag = _check_k(k), _check_tag(tag)
        if face is not None and face < 1:
            raise WebError(400, "face is numbered from 1 (left to right)")
        validate_image(data, self.max_upload, self.max_pixels)
        emb = self.embedder
        query: dict[str, Any] = {"mode": "image"}
        with self.lock:
            t0 = time.perf_counter()
            prepared = emb.prepare(data, max_pixels=self.max_pixels)
            if emb.per_face:
                items = emb.extract([prepared])[0]
                size = list(getattr(prepared, "size", ()) or ()) or None
                faces = [{"face": n, "bbox": [int(v) for v in it.bbox],
                          "score": None if it.score is None else round(float(it.score), 3)}
                         for n, it in enumerate(items, 1)]
                query.update(faces=faces, image_size=size)
                if not faces:
                    raise WebError(422, "no face found in the uploaded image; try a photo where the face is "
                                        "larger, frontal and well lit", faces=[], image_size=size)
                if face is None:
                    if len(faces) > 1:
                        raise WebError(422, f"{len(faces)} faces found in the image: pick one (face=1 to "
                                            f"{len(faces)}, numbered left to right)",
                                       faces=faces, image_size=size, choose_face=True)
                    face = 1
                if face > len(faces):
                    raise WebError(422, f"there is no face {face}: {len(faces)} found in the image",
                                   faces=faces, image_size=size, choose_face=len(faces) > 1)
                vector = items[face - 1].vector
                query.update(face=face, bbox=faces[face - 1]["bbox"])
            else:
                if face is not None:
                    raise WebError(400, f"face applies to face collections only; this one uses {emb.kind}")
                vector = l2_normalise(emb.embed_prepared([prepared]))[0]
            t1 = time.perf_counter()
            hits = self.store.search(vector, k, _filter(tag))
            t2 = time.perf_counter()
        return self._result(query, hits, t1 - t0, t2 - t1, k, tag)

    def search_text(self, text: str, k: int, tag: str | None) -> dict[str, Any]:
        k, tag = _check_k(k), _check_tag(tag)
        emb = self.embedder
        if not emb.supports_text:
            raise WebError(400, f"text search needs a CLIP collection; this one uses {emb.kind}, which has no "
                                "text model: search with a photo instead")
        text = (text or "").strip()
        if not text:
            raise WebError(400, "the text query is empty")
        with self.lock:
            t0 = time.perf_counter()
            vector = emb.embed_texts([text])[0]
            t1 = time.perf_counter()
            hits = self.store.search(vector, k, _filter(tag))
            t2 = time.perf_counter()
        return self._result({"mode": "text", "text": text}, hits, t1 - t0, t2 - t1, k, tag)

    def search_id(self, record_id: str, k: int, tag: str | None) -> dict[str, Any]:
        k, tag = _check_k(k), _check_tag(tag)
        _check_id(record_id)
        with self.lock:
            t0 = time.perf_counter()
            found = self.store.get([record_id])
            if not found:
                raise WebError(404, f"collection {self.collection!r} has no record {record_id!r}")
            rec = found[0]
            hits = [h for h in self.store.search(rec.vector, k + 1, _filter(tag)) if h.id != record_id][:k]
            t1 = time.perf_counter()
        query = {"mode": "id", "id": record_id, "file": _basename(rec.path), "bbox": rec.bbox,
                 "thumb": _thumb_url(record_id)}
        return self._result(query, hits, 0.0, t1 - t0, k, tag)

    def _result(self, query: dict[str, Any], hits: list, embed_s: float, search_s: float, k: int,
                tag: str | None) -> dict[str, Any]:
        return {"query": query, "k": k, "tag": tag, "embed_ms": round(embed_s * 1000, 3),
                "search_ms": round(search_s * 1000, 3), "hits": [self._hit(n, h) for n, h in enumerate(hits, 1)]}

    def _hit(self, rank: int, h: Any) -> dict[str, Any]:
        meta = h.metadata or {}
        size = None
        if meta.get("width") and meta.get("height"):
            size = [int(meta["width"]), int(meta["height"])]
        elif h.bbox is not None:
            size = _image_size(h.path)  # the box is drawn in proportion to the original image
        return {"rank": rank, "id": h.id, "file": _basename(h.path), "similarity": h.similarity,
                "distance": h.distance, "tag": meta.get("tag"), "bbox": h.bbox, "face": meta.get("face"),
                "image_size": size, "thumb": _thumb_url(h.id)}

    # ---- thumbnails
    def thumbnail(self, record_id: str) -> bytes:
        """A JPEG of the record's image, at most ``thumb_side`` pixels a side.

        The file is found BY RECORD ID in the store, never from a user-given path, and only served
        while its content has the SHA-256 recorded at ingest. Cached under ``<data dir>/thumbs``
        by content hash."""
        from ..images import content_hash, decode_image, read_file

        _check_id(record_id)
        with self.lock:
            found = self.store.get([record_id])
        if not found:
            raise WebError(404, f"collection {self.collection!r} has no record {record_id!r}")
        rec = found[0]
        if not rec.path:
            raise WebError(404, f"record {record_id!r} has no image file")
        sha = rec.metadata.get("sha256")
        sha = sha if isinstance(sha, str) and _SHA256.match(sha) else None
        cached = self.thumb_dir / f"{sha}-{self.thumb_side}.jpg" if sha else None
        if cached is not None and cached.is_file():
            return cached.read_bytes()
        try:
            data = read_file(rec.path)
        except ImageError:
            raise WebError(410, f"the image of record {record_id!r} is no longer readable; re-run vecface ingest") from None
        if sha is not None and content_hash(data) != sha:
            raise WebError(410, f"the image of record {record_id!r} changed since it was ingested; "
                                "re-run vecface ingest")
        try:
            img = decode_image(data, draft=self.thumb_side)
        except ImageError as e:
            raise WebError(410, f"the image of record {record_id!r} cannot be decoded: {e}") from None
        from PIL import Image

        img.thumbnail((self.thumb_side, self.thumb_side), Image.LANCZOS)
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=82, optimize=True)
        out = buf.getvalue()
        if cached is not None:
            _write_atomic(cached, out)
        return out


def _write_atomic(path: Path, data: bytes) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as e:  # a read-only data dir: serve from memory
        log.warning("cannot cache thumbnail %s: %s", path, e)


def _thumb_url(record_id: str) -> str:
    return "/api/thumb/" + quote(record_id, safe="")


def _basename(path: str | None) -> str | None:
    # the page shows file names, not where they live on the server
    return os.path.basename(path) if path else None


def _image_size(path: str | None) -> list[int] | None:
    if not path:
        return None
    try:
        from PIL import Image

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as img:
                w, h = img.size
                orientation = img.getexif().get(0x0112, 1)
        return [h, w] if orientation in (5, 6, 7, 8) else [w, h]
    except Exception:
        return None


def _filter(tag: str | None) -> dict[str, Any] | None:
    return {"tag": tag} if tag else None


def _check_k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise WebError(400, f"k must be an integer from 1 to {MAX_K}, got {k!r}")
    return k


def _check_tag(tag: str | None) -> str | None:
    if tag is None:
        return None
    tag = tag.strip()
    if len(tag) > 200:
        raise WebError(400, "tag is longer than 200 characters")
    return tag or None


def _check_id(record_id: str) -> None:
    if not record_id or len(record_id) > 256 or any(ord(c) < 32 for c in record_id):
        raise WebError(404, f"no record {record_id[:64]!r}")


def validate_image(data: bytes, max_upload: int, max_pixels: int) -> tuple[str, int, int]:
    """Check an upload is one image of an accepted format, within the size and pixel limits,
    that PIL can verify. Returns (format, width, height); raises WebError 400/413/415."""
    from PIL import Image

    if not data:
        raise WebError(400, "the uploaded file is empty")
    if len(data) > max_upload:
        raise WebError(413, f"the image is {len(data):,} bytes; the limit is {max_upload:,} bytes")
    accepted = ", ".join(sorted(set(ACCEPTED_FORMATS.values())))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            fmt = img.format or "?"
            w, h = img.size
            if fmt not in ACCEPTED_FORMATS:
                raise WebError(415, f"images in {fmt} format are not accepted; send {accepted}")
            if w * h > max_pixels:
                raise WebError(400, f"the image is {w}x{h} = {w * h:,} pixels, over the limit of {max_pixels:,} "
                                    "(a decompression bomb, or a photo too large to search with)")
            img.verify()
    except WebError:
        raise
    except Image.UnidentifiedImageError:
        raise WebError(415, f"the upload is not an image (unrecognised format); send {accepted}") from None
    except Image.DecompressionBombError as e:
        raise WebError(400, f"decompression bomb refused: {e}") from None
    except Exception as e:  # verify() raises many kinds for broken files
        raise WebError(400, f"the image is corrupt or truncated: {str(e) or type(e).__name__}") from None
    return ACCEPTED_FORMATS[fmt], w, h


# ---------------------------------------------------------------- request guard (ASGI middleware)

class RequestGuard:
    """Refuses requests for another Host (DNS rebinding) and bodies over ``max_body`` bytes (413),
    and adds security headers (a strict CSP on the page, nosniff everywhere)."""

    def __init__(self, app: Any, max_body: int, allowed_hosts: list[str] | None):
        self.app = app
        self.max_body = max_body
        self.allowed = None if allowed_hosts is None or "*" in allowed_hosts else {h.lower() for h in allowed_hosts}

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if self.allowed is not None:
            host = _host_only(headers.get("host", ""))
            if host not in self.allowed:
                await _send_json(send, 400, f"the Host header {headers.get('host', '')!r} is not served here; "
                                            "open the page at the address vecface serve printed")
                return
        length = headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                await _send_json(send, 400, "invalid Content-Length header")
                return
            if int(length) > self.max_body:
                await _send_json(send, 413, f"the request body is {int(length):,} bytes; the limit is "
                                            f"{self.max_body:,} bytes")
                return
        received = 0
        started = False
        path = scope.get("path", "")

        async def limited_receive() -> dict:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise BodyTooLarge()
            return message

        async def send_with_headers(message: dict) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                extra = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer")]
                if not path.startswith(_NO_CSP):
                    extra += [(b"content-security-policy", CSP.encode()), (b"x-frame-options", b"DENY")]
                message = {**message, "headers": list(message.get("headers", [])) + extra}
            await send(message)

        try:
            await self.app(scope, limited_receive, send_with_headers)
        except BodyTooLarge:
            if started:
                raise
            await _send_json(send, 413, f"the request body is over the limit of {self.max_body:,} bytes")


def _host_only(host: str) -> str:
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


async def _send_json(send: Any, status: int, message: str) -> None:
    import json

    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"x-content-type-options", b"nosniff")]})
    await send({"type": "http.response.body", "body": body})


class _MemoryMultiPartParser(MultiPartParser):
    # keep uploaded files in memory (never a temporary file outside the data dir); RequestGuard
    # caps the whole body, so memory stays bounded
    spool_max_size = sys.maxsize


# ---------------------------------------------------------------- API models (for /docs)

class FaceOut(BaseModel):
    face: int = Field(description="face number, from 1, left to right")
    bbox: list[int] = Field(description="[top, right, bottom, left] in the query image's pixels")
    score: Optional[float] = None


class HitOut(BaseModel):
    rank: int
    id: str = Field(description="record id (use with /api/thumb/{id} and /api/search/id/{id})")
    file: Optional[str] = Field(None, description="file name of the stored image")
    similarity: Optional[float] = Field(None, description="cosine similarity (1 = identical)")
    distance: float
    tag: Optional[str] = None
    bbox: Optional[list[int]] = Field(None, description="face box [top, right, bottom, left] in original pixels")
    face: Optional[int] = None
    image_size: Optional[list[int]] = Field(None, description="[width, height] of the original image")
    thumb: str = Field(description="URL of the thumbnail")


class SearchOut(BaseModel):
    query: dict[str, Any]
    k: int
    tag: Optional[str] = None
    embed_ms: float = Field(description="time to decode and embed the query (and find its faces)")
    search_ms: float = Field(description="time the vector store took to search")
    hits: list[HitOut]


class EmbedderOut(BaseModel):
    kind: str
    name: str
    dim: int
    supports_text: bool
    per_face: bool


class HealthOut(BaseModel):
    status: str
    backend: str
    collection: str
    metric: str
    count: int
    embedder: EmbedderOut
    max_upload_bytes: int
    max_k: int


class TextQuery(BaseModel):
    text: str = Field(min_length=1, max_length=1000, examples=["a woman in a space suit"])
    k: int = Field(10, ge=1, le=MAX_K)
    tag: Optional[str] = Field(None, max_length=200)


class ErrorOut(BaseModel):
    error: str


_ERRORS = {400: {"model": ErrorOut}, 404: {"model": ErrorOut}, 422: {"model": ErrorOut}}
_IMAGE_BODY = {
    "requestBody": {
        "required": True,
        "content": {"multipart/form-data": {"schema": {
            "type": "object", "required": ["image"],
            "properties": {
                "image": {"type": "string", "format": "binary",
                          "description": "JPEG, PNG, WebP, GIF, BMP or TIFF, at most 10 MB by default"},
                "k": {"type": "integer", "default": 10, "minimum": 1, "maximum": MAX_K},
                "tag": {"type": "string", "description": "only records with this tag"},
                "face": {"type": "integer", "minimum": 1,
                         "description": "face collections: which face of the photo (from 1, left to right); "
                                        "needed when it holds several"},
            }}}},
    }
}


# ---------------------------------------------------------------- the app

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
    app.add_middleware(RequestGuard, max_body=max_upload + MULTIPART_OVERHEAD, allowed_hosts=hosts)

    # ---- errors: always JSON {"error": ...}
    @app.exception_handler(WebError)
    async def _web_error(request: Request, exc: WebError):
        return _json_error(exc.status, exc.message, **exc.extra)

    @app.exception_handler(VecfaceError)
    async def _vecface_error(request: Request, exc: VecfaceError):
        return _json_error(_status_for(exc), str(exc))

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
        return _json_error(422, "invalid request: " + "; ".join(parts))

    @app.exception_handler(BodyTooLarge)
    async def _too_large(request: Request, exc: BodyTooLarge):
        return _json_error(413, f"the request body is over the limit of {max_upload + MULTIPART_OVERHEAD:,} bytes")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        log.exception("unexpected error on %s", request.url.path)
        return _json_error(500, f"internal error ({type(exc).__name__}): {exc}")

    # ---- the page
    @app.get("/", include_in_schema=False)
    def index():
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    # ---- the API
    @app.get("/api/health", response_model=HealthOut, tags=["info"])
    def health():
        """Backend, collection, embedder and the number of records."""
        return service.health()

    @app.post("/api/search/image", response_model=SearchOut, tags=["search"], openapi_extra=_IMAGE_BODY,
              responses={**_ERRORS, 413: {"model": ErrorOut}, 415: {"model": ErrorOut}})
    async def search_image(request: Request):
        """Search with an uploaded photo (multipart form: ``image``, ``k``, ``tag``, ``face``).

        In a face collection a photo with several faces answers 422 with ``faces`` (their boxes)
        and ``choose_face: true``: ask again with ``face=N``."""
        ctype = request.headers.get("content-type", "")
        if not ctype.lower().startswith("multipart/form-data"):
            raise WebError(415, "send the image as multipart/form-data with a file field named 'image'")
        parser = _MemoryMultiPartParser(request.headers, request.stream(), max_files=1, max_fields=10,
                                        max_part_size=4096)
        try:
            form = await parser.parse()
        except MultiPartException as e:
            raise WebError(400, f"invalid multipart form: {e.message}") from None
        try:
            upload = form.get("image")
            if upload is None or isinstance(upload, str):
                raise WebError(400, "the form has no file field named 'image'")
            data = await upload.read()
            k = _int_field(form.get("k"), "k", 10)
            face = _int_field(form.get("face"), "face", None)
            tag = form.get("tag")
            tag = tag if isinstance(tag, str) else None
        finally:
            await form.close()
        return await run_in_threadpool(service.search_image, data, k, tag, face)

    @app.post("/api/search/text", response_model=SearchOut, tags=["search"], responses=_ERRORS)
    def search_text(body: TextQuery):
        """Search with a sentence (CLIP collections only; face-dlib has no text model)."""
        return service.search_text(body.text, body.k, body.tag)

    @app.get("/api/search/id/{record_id}", response_model=SearchOut, tags=["search"], responses=_ERRORS)
    def search_id(record_id: str, k: int = Query(10, ge=1, le=MAX_K), tag: Optional[str] = Query(None, max_length=200)):
        """Search with a stored record's own vector ("more like this"); the record itself is left out."""
        return service.search_id(record_id, k, tag)

    @app.get("/api/thumb/{record_id}", tags=["images"], response_class=Response,
             responses={200: {"content": {"image/jpeg": {}}}, 404: {"model": ErrorOut}, 410: {"model": ErrorOut}})
    def thumb(record_id: str):
        """A JPEG thumbnail of a stored record's image (looked up by record id only)."""
        return Response(service.thumbnail(record_id), media_type="image/jpeg",
                        headers={"Cache-Control": "private, max-age=3600"})

    return app


def _int_field(value: Any, name: str, default: int | None) -> int | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return default
    if not isinstance(value, str):
        raise WebError(400, f"{name} must be an integer field, not a file")
    try:
        return int(value.strip())
    except ValueError:
        raise WebError(400, f"{name} must be an integer, got {value[:40]!r}") from None
