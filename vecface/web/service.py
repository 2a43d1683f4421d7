"""The web page's side of the query service: one open collection, its embedder and a lock, the
web's own limits (k, tag length, upload size and pixels), and the JSON the page reads. Every search
is :mod:`vecface.search`'s, the same the CLI runs."""

from __future__ import annotations

import os
import threading
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .. import search
from ..config import data_dir as vecface_data_dir
from ..embedders import Embedder
from ..errors import InvalidArgument, UnknownRecord
from ..store import VectorStore
from ..types import Hit
from ..whenwhere import DEFAULT_KM, Near
from .errors import WebError
from .schemas import MAX_K, MAX_TAG, FiltersIn
from .thumbs import THUMB_SIDE, thumbnail
from .uploads import validate_image

DEFAULT_MAX_UPLOAD = 10 * 1024 * 1024  # bytes of one uploaded image
DEFAULT_MAX_PIXELS = 40_000_000  # pixels of one uploaded image (decompression bombs)


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
        store_options = dict(store_options or {})
        self.home = vecface_data_dir(data_dir or store_options.pop("data_dir", None))
        self.thumb_dir = self.home / "thumbs"
        self.max_upload = int(max_upload)
        self.max_pixels = int(max_pixels)
        self.thumb_side = int(thumb_side)
        self.lock = threading.Lock()
        self._owns_store = store is None
        if embedder is None:
            store, embedder = search.open_collection(backend, collection, data_dir=self.home, model=model,
                                                     device=device, store=store, **store_options)
        elif store is None or store.dim != embedder.dim:
            raise InvalidArgument("pass an open store with its embedder (of the same dimension), or neither")
        self.backend = backend
        self.collection = collection
        self.store = store
        self.embedder = embedder

    def close(self) -> None:
        if self._owns_store:
            with self.lock:
                self.store.close()

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
    def search_image(self, data: bytes, k: int, tag: str | None, face: int | None,
                     filters: FiltersIn | None = None) -> dict[str, Any]:
        k, tag = _check_k(k), _check_tag(tag)
        validate_image(data, self.max_upload, self.max_pixels)
        with self.lock:
            flt, near = self._where(filters)
            result = search.search_image(self.store, self.embedder, data, k, tag=tag, face=face,
                                         max_pixels=self.max_pixels, filter=flt, near=near)
        query = {key: v for key, v in result.query.items() if key not in ("image", "faces_found")}
        return self.answer(result, query, k, tag, filters)

    def search_text(self, text: str, k: int, tag: str | None, filters: FiltersIn | None = None) -> dict[str, Any]:
        k, tag = _check_k(k), _check_tag(tag)
        with self.lock:
            flt, near = self._where(filters)
            result = search.search_text(self.store, self.embedder, text, k, tag=tag, filter=flt, near=near)
        return self.answer(result, result.query, k, tag, filters)

    def search_id(self, record_id: str, k: int, tag: str | None, filters: FiltersIn | None = None) -> dict[str, Any]:
        k, tag = _check_k(k), _check_tag(tag)
        with self.lock:
            flt, near = self._where(filters)
            result = search.search_id(self.store, record_id, k, tag=tag, filter=flt, near=near)
        q = result.query
        query = {"mode": "id", "id": record_id, "file": _basename(q["path"]), "bbox": q["bbox"],
                 "thumb": thumb_url(record_id)}
        return self.answer(result, query, k, tag, filters)

    def _where(self, f: FiltersIn | None) -> tuple[dict[str, Any] | None, Near | None]:
        """The native filter and the place of the search filters (:func:`vecface.search.query_filter`
        and :meth:`vecface.whenwhere.Near.parse`, as the CLI's); a person nobody is, is bad input (400)."""
        if f is None:
            return None, None
        if f.km is not None and not f.near:
            raise WebError(400, "km is the radius of near: give near=LAT,LON too")
        near = Near.parse(f.near, DEFAULT_KM if f.km is None else f.km) if f.near else None
        try:
            flt = search.query_filter(self.store, person=f.person, since=f.since, until=f.until, camera=f.camera,
                                      box=f.box)
        except UnknownRecord as e:
            raise WebError(400, str(e)) from None
        return flt, near

    def answer(self, result: search.SearchResult, query: dict[str, Any], k: int, tag: str | None,
               filters: FiltersIn | None = None) -> dict[str, Any]:
        """The JSON of a search result (:class:`~vecface.web.schemas.SearchOut`)."""
        return {"query": query, "k": k, "tag": tag, "filters": filters.given() if filters else {},
                "embed_ms": result.embed_ms, "search_ms": result.search_ms,
                "hits": [_hit(n, h) for n, h in enumerate(result.hits, 1)]}

    # ---- thumbnails
    def thumbnail(self, record_id: str) -> bytes:
        """A JPEG of the record's image (see :func:`vecface.web.thumbs.thumbnail`)."""
        with self.lock:
            record = search.get_record(self.store, record_id)
        return thumbnail(record, self.thumb_dir, self.thumb_side)


def _hit(rank: int, h: Hit) -> dict[str, Any]:
    meta = h.metadata or {}
    size = None
    if meta.get("width") and meta.get("height"):
        size = [int(meta["width"]), int(meta["height"])]
    elif h.bbox is not None:
        size = _image_size(h.path)  # the box is drawn in proportion to the original image
    return {"rank": rank, "id": h.id, "file": _basename(h.path), "similarity": h.similarity,
            "distance": h.distance, "tag": meta.get("tag"), "bbox": h.bbox, "face": meta.get("face"),
            "image_size": size, **{key: meta.get(key) for key in ("person", "taken", "camera", "lat", "lon")},
            "thumb": thumb_url(h.id)}


def thumb_url(record_id: str) -> str:
    return "/api/thumb/" + quote(record_id, safe="")


def _basename(path: str | None) -> str | None:
    return os.path.basename(path) if path else None  # file names, not where they live on the server


def _image_size(path: str | None) -> list[int] | None:
    if not path:
        return None
    try:
        from PIL import Image

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(Path(path)) as img:
                w, h = img.size
                orientation = img.getexif().get(0x0112, 1)
        return [h, w] if orientation in (5, 6, 7, 8) else [w, h]
    except Exception:
        return None


def _check_k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise WebError(400, f"k must be an integer from 1 to {MAX_K}, got {k!r}")
    return k


def _check_tag(tag: str | None) -> str | None:
    if tag is None:
        return None
    tag = tag.strip()
    if len(tag) > MAX_TAG:
        raise WebError(400, f"tag is longer than {MAX_TAG} characters")
    return tag or None
