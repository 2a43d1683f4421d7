"""Search a collection by image (a photo or the one face in it), by text (CLIP) or by a stored id.

Library use::

    from vecface import open_store
    from vecface.embedders import make_embedder
    from vecface.search import search_image, search_text, search_id

    emb = make_embedder("face-dlib")
    with open_store("faiss", "faces", emb.dim, "cosine") as store:
        result = search_image(store, emb, "query.jpg", k=5)
        for hit in result.hits:
            print(hit.path, hit.bbox, hit.distance)

:func:`open_collection` rebuilds the embedder a collection was ingested with from the ingest
manifest, so callers need only the backend and collection name.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .embedders import Embedder, EmbedderSpec, make_embedder
from .errors import InvalidArgument, NoFaceFound, UnknownCollection
from .store import VectorStore
from .types import Hit


@dataclass
class SearchResult:
    """Hits (closest first) and how long embedding the query and searching took."""

    hits: list[Hit]
    embed_seconds: float
    search_seconds: float
    query: dict[str, Any] = field(default_factory=dict)  # what was searched for (mode, face, bbox, id)

    def to_dict(self) -> dict[str, Any]:
        return {"query": self.query, "embed_ms": round(self.embed_seconds * 1000, 3),
                "search_ms": round(self.search_seconds * 1000, 3),
                "hits": [{"rank": n, "id": h.id, "path": h.path, "bbox": h.bbox, "distance": h.distance,
                          "similarity": h.similarity, "tag": h.metadata.get("tag"),
                          "face": h.metadata.get("face")} for n, h in enumerate(self.hits, 1)]}


def _filter(tag: str | list[str] | None) -> dict[str, Any] | None:
    return {"tag": tag} if tag else None


def query_faces(embedder: Embedder, image: Any) -> list[tuple[tuple[int, int, int, int], float | None, np.ndarray]]:
    """(bbox, score, vector) of every face in ``image``, numbered from 1 left to right."""
    prepared = embedder.prepare(image)
    return [(it.bbox, it.score, it.vector) for it in embedder.extract([prepared])[0]]


def describe_faces(faces: list[tuple[Any, Any, Any]]) -> str:
    return "; ".join(f"face {n}: bbox {list(b)}" + (f" score {s:.2f}" if s is not None else "")
                     for n, (b, s, _) in enumerate(faces, 1))


def search_image(store: VectorStore, embedder: Embedder, image: Any, k: int = 10, *,
                 tag: str | list[str] | None = None, face: int | None = None) -> SearchResult:
    """Search with a photo. With a face embedder the photo must hold exactly one face, or
    ``face`` picks one (numbered from 1, left to right); NoFaceFound lists the faces found."""
    t0 = time.perf_counter()
    label = str(image) if isinstance(image, (str, os.PathLike)) else f"<{type(image).__name__}>"
    query: dict[str, Any] = {"mode": "image", "image": label}
    if embedder.per_face:
        faces = query_faces(embedder, image)
        if not faces:
            raise NoFaceFound(f"no face found in {query['image']}; try another photo or detector options "
                              "(--upsample 2, --detector cnn, a lower --min-score)")
        if face is None:
            if len(faces) > 1:
                raise NoFaceFound(f"{len(faces)} faces found in {query['image']} ({describe_faces(faces)}); "
                                  "pick one with --face N")
            face = 1
        if not 1 <= face <= len(faces):
            raise NoFaceFound(f"there is no face {face} in {query['image']}: {len(faces)} found "
                              f"({describe_faces(faces)})")
        bbox, score, vector = faces[face - 1]
        query.update(face=face, bbox=list(bbox), faces_found=len(faces))
    else:
        if face is not None:
            raise InvalidArgument("--face applies to face collections (face-clip, face-dlib) only")
        vector = embedder.embed_images([image])[0]
    t1 = time.perf_counter()
    hits = store.search(vector, k, _filter(tag))
    t2 = time.perf_counter()
    return SearchResult(hits, t1 - t0, t2 - t1, query)


def search_text(store: VectorStore, embedder: Embedder, text: str, k: int = 10, *,
                tag: str | list[str] | None = None) -> SearchResult:
    """Search with a sentence ("old man with glasses"): CLIP collections only."""
    if not embedder.supports_text:
        raise InvalidArgument(
            f"text search needs a CLIP text tower, but this collection uses {embedder.kind}; "
            "ingest with --embedder clip (or face-clip) to search by text")
    t0 = time.perf_counter()
    vector = embedder.embed_texts([text])[0]
    t1 = time.perf_counter()
    hits = store.search(vector, k, _filter(tag))
    t2 = time.perf_counter()
    return SearchResult(hits, t1 - t0, t2 - t1, {"mode": "text", "text": text})


def search_id(store: VectorStore, record_id: str, k: int = 10, *, tag: str | list[str] | None = None,
              include_self: bool = False) -> SearchResult:
    """Search with a stored record's own vector (nothing is re-embedded). The record itself is
    left out of the hits unless ``include_self``."""
    t0 = time.perf_counter()
    found = store.get([record_id])
    if not found:
        raise InvalidArgument(f"collection {store.name!r} has no record {record_id!r}")
    rec = found[0]
    t1 = time.perf_counter()
    hits = store.search(rec.vector, k if include_self else k + 1, _filter(tag))
    if not include_self:
        hits = [h for h in hits if h.id != record_id][:k]
    t2 = time.perf_counter()
    return SearchResult(hits, 0.0, (t2 - t1) + (t1 - t0),
                        {"mode": "id", "id": record_id, "path": rec.path, "bbox": rec.bbox})


def collection_embedder(backend: str, collection: str, manifest: Any = None) -> EmbedderSpec:
    """The embedder spec recorded when ``collection`` was first ingested."""
    from .manifest import Manifest

    own = manifest is None
    manifest = manifest or Manifest()
    try:
        found = manifest.embedder(backend, collection)
    finally:
        if own:
            manifest.close()
    if found is None:
        raise UnknownCollection(f"no ingest of collection {collection!r} in {backend} is recorded here "
                                f"(manifest {manifest.path}); run vecface ingest first")
    return found[0]


def open_collection(backend: str, collection: str, *, model: str | None = None, device: str | None = None,
                    manifest: Any = None, detector: dict[str, Any] | None = None,
                    **options: Any) -> tuple[VectorStore, Embedder]:
    """Open an ingested collection and the embedder it was built with (``model``/``detector``
    override what was recorded, e.g. to point at a moved model directory)."""
    from .registry import open_store

    spec = collection_embedder(backend, collection, manifest)
    embedder = make_embedder(spec, model=model, device=device, **(detector or {}))
    store = open_store(backend, collection, create=False, **options)
    if store.dim != embedder.dim:
        store.close()
        raise InvalidArgument(f"collection {collection!r} holds {store.dim}-d vectors but its embedder "
                              f"({embedder.name}) makes {embedder.dim}-d ones")
    return store, embedder
