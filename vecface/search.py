"""The one query service: search a collection by image (a photo, or one face in it), by text (CLIP)
or by a stored record, with timings. The CLI (``vecface search``) and the web page both call it.

Library use::

    from vecface.search import open_collection, search_id, search_image, search_text

    store, emb = open_collection("faiss", "faces")     # the embedder it was ingested with
    with store:
        result = search_image(store, emb, "query.jpg", k=5)   # face=N for a group photo
        for hit in result.hits:
            print(hit.path, hit.bbox, hit.distance)
        again = search_id(store, result.hits[0].id, k=5)       # nothing re-embedded

:func:`open_collection` rebuilds the embedder a collection was ingested with from the ingest
manifest, else from the store's own description (another machine's ingest), so callers need only the backend and the collection name; :func:`resolve_spec` is the
same check for ingest (which embedder a run uses, and refusing another one for a known collection).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .collection_info import check_same, stored_spec
from .config import data_dir as vecface_data_dir
from .embedders import Embedder, EmbedderSpec, l2_normalise, make_embedder
from .errors import InvalidArgument, NoFaceFound, UnknownCollection, UnknownRecord
from .manifest import MANIFEST_NAME, Manifest, check_spec
from .store import VectorStore
from .types import MAX_K, Hit, Record, validate_k
from .whenwhere import Near, bounding_box, date_range, search_near

MAX_ID_LENGTH = 256


@dataclass
class SearchResult:
    """Hits (closest first) and how long embedding the query and searching took.

    ``query`` says what was searched for: ``mode`` (image, text, id) and, for an image ``image``
    (its name), in face collections ``faces`` (every face found: number, bbox, score),
    ``image_size`` ([width, height]), ``face`` and ``bbox`` (the one searched with); for text
    ``text``; for an id ``id``, ``path`` and ``bbox`` of the stored record."""

    hits: list[Hit]
    embed_seconds: float
    search_seconds: float
    query: dict[str, Any] = field(default_factory=dict)

    @property
    def embed_ms(self) -> float:
        return round(self.embed_seconds * 1000, 3)

    @property
    def search_ms(self) -> float:
        return round(self.search_seconds * 1000, 3)

    def to_dict(self) -> dict[str, Any]:
        return {"query": self.query, "embed_ms": self.embed_ms, "search_ms": self.search_ms,
                "hits": [{"rank": n, "id": h.id, "path": h.path, "bbox": h.bbox, "distance": h.distance,
                          "similarity": h.similarity, "tag": h.metadata.get("tag"),
                          "face": h.metadata.get("face"),
                          **{key: h.metadata[key] for key in ("person", "taken", "lat", "lon", "camera")
                             if key in h.metadata}} for n, h in enumerate(self.hits, 1)]}


def make_filter(tag: str | list[str] | None = None, more: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The metadata filter of a search: ``tag`` (one or several) and any other filter fields in
    ``more`` (``{"person": "ann", "taken": {"gte": "2024-01-01"}}``); fields left as None or empty
    are not filtered on, and ``tag`` wins over a tag in ``more``. The backend validates the result
    (:func:`vecface.filters.normalise_filter`)."""
    flt = {**(more or {}), **({"tag": tag} if tag is not None else {})}
    flt = {key: value for key, value in flt.items() if value not in (None, "", [], ())}
    return flt or None


def query_filter(store: VectorStore, *, person: str | list[str] | None = None, since: str | None = None,
                 until: str | None = None, camera: str | None = None,
                 box: str | None = None) -> dict[str, Any] | None:
    """The filter of a search by who, when and which camera (``vecface search --person --since
    --until --camera`` and the web page's filters): people named or numbered (``Grandpa``, ``p3``)
    as their ids (:func:`vecface.people.resolve`, from the store), ``since`` and
    ``until`` as a ``taken`` range (:func:`vecface.whenwhere.date_range`), ``camera`` as it is,
    ``box`` (``"S,W,N,E"``) as lat/lon ranges (:func:`vecface.whenwhere.bounding_box`).
    Blank values are not filtered on; None when nothing is."""
    from .people import resolve

    flt: dict[str, Any] = dict(date_range(since or None, until or None) or {})
    if camera and camera.strip():
        flt["camera"] = camera.strip()
    if box and box.strip():
        flt.update(bounding_box(box))
    wanted = [person] if isinstance(person, str) else list(person or [])
    wanted = [w.strip() for w in wanted if w and w.strip()]
    if wanted:
        flt["person"] = resolve(store, wanted)
    return flt or None


# ---------------------------------------------------------------- by image

def _label(image: Any) -> str:
    if isinstance(image, (str, os.PathLike)):
        return str(image)
    return "the image" if isinstance(image, (bytes, bytearray, memoryview)) else f"the {type(image).__name__} image"


def describe_faces(faces: list[dict[str, Any]]) -> str:
    return "; ".join(f"face {f['face']}: bbox {f['bbox']}" + (f" score {f['score']:.2f}" if f["score"] is not None else "")
                     for f in faces)


def search_image(store: VectorStore, embedder: Embedder, image: Any, k: int = 10, *,
                 tag: str | list[str] | None = None, face: int | None = None, max_pixels: int | None = None,
                 filter: dict[str, Any] | None = None, near: Near | None = None) -> SearchResult:
    """Search with a photo (a path, bytes, a PIL image or an array).

    With a face embedder the photo must hold exactly one face, or ``face`` picks one (numbered
    from 1, left to right); otherwise :class:`NoFaceFound` says so, with ``faces`` (every face
    found) and ``image_size`` on the exception. ``max_pixels`` refuses larger images. ``near`` keeps
    only photos taken within its distance of a place (:func:`vecface.whenwhere.search_near`)."""
    validate_k(k)
    if face is not None and (isinstance(face, bool) or not isinstance(face, int) or face < 1):
        raise InvalidArgument(f"face is numbered from 1 (left to right), got {face!r}")
    if face is not None and not embedder.per_face:
        raise InvalidArgument(f"face (--face) applies to face collections only (face-clip, face-dlib); "
                              f"this one uses {embedder.kind}")
    label = _label(image)
    query: dict[str, Any] = {"mode": "image", "image": label}
    t0 = time.perf_counter()
    prepared = embedder.prepare(image, max_pixels=max_pixels)
    if embedder.per_face:
        items = embedder.extract([prepared])[0]
        size = list(getattr(prepared, "size", ()) or ()) or None
        faces = [{"face": n, "bbox": [int(v) for v in it.bbox],
                  "score": None if it.score is None else round(float(it.score), 3)} for n, it in enumerate(items, 1)]
        query.update(faces=faces, faces_found=len(faces), image_size=size)
        if not faces:
            raise NoFaceFound(f"no face found in {label}; try a photo where the face is larger, frontal and "
                              "well lit, or other detector options (upsample 2, detector cnn, a lower min-score)",
                              faces=faces, image_size=size)
        if face is None and len(faces) > 1:
            raise NoFaceFound(f"{len(faces)} faces found in {label} ({describe_faces(faces)}); pick one with "
                              f"--face N (face=N in the web API), numbered from 1 left to right",
                              faces=faces, image_size=size)
        face = face or 1
        if face > len(faces):
            raise NoFaceFound(f"there is no face {face} in {label}: {len(faces)} found ({describe_faces(faces)})",
                              faces=faces, image_size=size)
        vector = items[face - 1].vector
        query.update(face=face, bbox=faces[face - 1]["bbox"])
    else:
        vector = l2_normalise(embedder.embed_prepared([prepared]))[0]
    t1 = time.perf_counter()
    hits = search_near(store, vector, k, make_filter(tag, filter), near)
    return SearchResult(hits, t1 - t0, time.perf_counter() - t1, query)


# ---------------------------------------------------------------- by text

def search_text(store: VectorStore, embedder: Embedder, text: str, k: int = 10, *,
                tag: str | list[str] | None = None, filter: dict[str, Any] | None = None,
                near: Near | None = None) -> SearchResult:
    """Search with a sentence ("old man with glasses"): CLIP collections (clip, face-clip) only."""
    validate_k(k)
    if not embedder.supports_text:
        raise InvalidArgument(
            f"text search needs a CLIP collection (clip or face-clip); this one uses {embedder.kind}, which has "
            "no text model: search with a photo, or ingest with --embedder clip to search by text")
    text = (text or "").strip() if isinstance(text, str) else text
    if not isinstance(text, str) or not text:
        raise InvalidArgument("the text query is empty")
    t0 = time.perf_counter()
    vector = embedder.embed_texts([text])[0]
    t1 = time.perf_counter()
    hits = search_near(store, vector, k, make_filter(tag, filter), near)
    return SearchResult(hits, t1 - t0, time.perf_counter() - t1, {"mode": "text", "text": text})


# ---------------------------------------------------------------- by stored record

def get_record(store: VectorStore, record_id: str) -> Record:
    """The stored record ``record_id``, or :class:`UnknownRecord` (also for ids no record can have)."""
    if (not isinstance(record_id, str) or not record_id or len(record_id) > MAX_ID_LENGTH
            or any(ord(c) < 32 for c in record_id)):
        shown = record_id[:64] if isinstance(record_id, str) else record_id
        raise UnknownRecord(f"collection {store.name!r} has no record {shown!r}")
    found = store.get([record_id])
    if not found:
        raise UnknownRecord(f"collection {store.name!r} has no record {record_id!r}")
    return found[0]


def search_id(store: VectorStore, record_id: str, k: int = 10, *, tag: str | list[str] | None = None,
              include_self: bool = False, filter: dict[str, Any] | None = None,
              near: Near | None = None) -> SearchResult:
    """Search with a stored record's own vector (nothing is re-embedded; the search time includes
    fetching it). The record itself is left out of the hits unless ``include_self``."""
    validate_k(k)
    t0 = time.perf_counter()
    rec = get_record(store, record_id)
    hits = search_near(store, rec.vector, k if include_self else min(k + 1, MAX_K), make_filter(tag, filter), near)
    if not include_self:
        hits = [h for h in hits if h.id != record_id][:k]
    return SearchResult(hits, 0.0, time.perf_counter() - t0,
                        {"mode": "id", "id": record_id, "path": rec.path, "bbox": rec.bbox})


# ---------------------------------------------------------------- opening a collection

def resolve_spec(manifest: Manifest, backend: str, collection: str, kind: str | None = None,
                 model: str | None = None, stored: EmbedderSpec | None = None) -> EmbedderSpec:
    """The embedder an ingest into ``collection`` uses: the one it was ingested with (from the
    manifest, else ``stored``: the one the store's own description holds; ``kind`` and ``model``
    may repeat it), else ``kind`` (default clip) and ``model``. Refuses another embedder or model
    for a collection that has one, before any model is loaded."""
    known = manifest.embedder(backend, collection)
    if model and Path(model).expanduser().is_dir():
        model = str(Path(model).expanduser().resolve())
    was = known[0] if known is not None else stored
    if was is None:
        return EmbedderSpec(kind or "clip", model)
    asked_kind = kind or was.kind
    asked_model = model if model is not None else (was.model if asked_kind == was.kind else None)
    if known is not None:
        check_spec(manifest, backend, collection, EmbedderSpec(asked_kind, asked_model))
    elif EmbedderSpec(asked_kind, asked_model).identity() != was.identity():
        raise InvalidArgument(f"collection {collection!r} was ingested with --embedder {was.kind}"
                              + (f" --model {was.model}" if was.model else "")
                              + f" (the store's own description); this run asks for {asked_kind}"
                              + ": use another --collection for another embedder")
    return EmbedderSpec(was.kind, asked_model, was.detector)


def collection_embedder(backend: str, collection: str, manifest: Manifest | None = None, *,
                        data_dir: str | os.PathLike[str] | None = None,
                        store: VectorStore | None = None) -> EmbedderSpec:
    """The embedder spec recorded when ``collection`` was first ingested: from the manifest in
    ``data_dir`` (or the one given), else from the ``store``'s own description; both known and
    different is an error."""
    own = manifest is None
    manifest = manifest or Manifest(vecface_data_dir(data_dir) / MANIFEST_NAME)
    try:
        found = manifest.embedder(backend, collection)
    finally:
        if own:
            manifest.close()
    in_store = stored_spec(store) if store is not None else None
    if found is not None and in_store is not None:
        check_same(store, in_store, found[0], f"the ingest manifest here ({manifest.path})")
    if found is not None:
        return found[0]
    if in_store is not None:
        return in_store
    raise UnknownCollection(f"no ingest of collection {collection!r} in {backend} is recorded here "
                            f"(manifest {manifest.path}) nor in the collection itself; run vecface ingest first")


def open_collection(backend: str, collection: str, *, data_dir: str | os.PathLike[str] | None = None,
                    model: str | None = None, device: str | None = None, manifest: Manifest | None = None,
                    detector: dict[str, Any] | None = None, store: VectorStore | None = None,
                    **options: Any) -> tuple[VectorStore, Embedder]:
    """Open an ingested collection and the embedder it was built with (``model``/``detector``
    override what was recorded, e.g. to point at a moved model directory). ``data_dir`` holds the
    manifest and is the backend's data directory too; ``options`` reach the backend
    (``open_store``: ``dsn``, ``url``, ``path``, ...); or pass an open ``store``. The collection's
    dimension must be the embedder's."""
    from .registry import open_store

    own = store is None
    if own:
        try:
            store = open_store(backend, collection, create=False, data_dir=data_dir, **options)
        except UnknownCollection as e:
            raise UnknownCollection(f"{e}; run vecface ingest first") from None
    try:
        spec = collection_embedder(backend, collection, manifest, data_dir=data_dir, store=store)
        embedder = make_embedder(spec, model=model, device=device, **(detector or {}))
        if store.dim != embedder.dim:
            raise InvalidArgument(f"collection {collection!r} holds {store.dim}-d vectors but its embedder "
                                  f"({embedder.name}) makes {embedder.dim}-d ones")
    except BaseException:
        if own:
            store.close()
        raise
    return store, embedder
