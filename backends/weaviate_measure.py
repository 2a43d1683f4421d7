"""The Weaviate backend's measurement hooks: the raw client search, the one-at-a-time insert
baseline, and the collection's size on the local server's disk."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np

from vecface.errors import CollectionMismatch

from . import weaviate_schema as schema
from .weaviate_schema import VECTOR, object_uuid

if TYPE_CHECKING:  # pragma: no cover
    from .weaviate_conn import Options


def raw_searcher(coll: Any, k: int) -> Callable[[Any], list]:
    """``near_vector`` as a plain weaviate-client user calls it for what vecface's search returns:
    the distances and the properties holding each record's id and metadata (a search that must answer
    with them cannot skip them), the vector as a list (what the client turns a numpy array into
    anyway). Returns the ids."""
    props = list(schema.RETURN_PROPS)

    def search(vec: Any) -> list:
        res = coll.query.near_vector(near_vector=vec.tolist() if hasattr(vec, "tolist") else vec, limit=k,
                                     target_vector=VECTOR, return_metadata=schema.DISTANCE, return_properties=props)
        return [o.properties["vid"] for o in res.objects]

    return search


def insert_one_by_one(store: Any, ids: Sequence[str], vectors: np.ndarray,
                      metadata: Sequence[Mapping[str, Any]], tick: Any = None) -> str:
    """One ``collection.data.insert`` per object into the scratch collection ``<name>_one``."""
    cls, opts = type(store), reopen_options(store)
    name = f"{store.name[:44]}_one"
    try:
        scratch = cls(name, store.dim, store.metric, **opts)
    except CollectionMismatch:  # a leftover of another run, with another shape
        cls(name, create=False, **opts).drop()
        scratch = cls(name, store.dim, store.metric, **opts)
    try:
        if scratch.count():  # a leftover of an interrupted run
            scratch.drop()
            scratch = cls(name, store.dim, store.metric, **opts)
        coll = scratch._coll()
        for i, v, m in zip(ids, np.asarray(vectors, dtype=np.float32), metadata):
            coll.data.insert(properties=schema.object_properties(i, dict(m)), uuid=object_uuid(i),
                             vector={VECTOR: v.tolist()})
            if tick is not None:
                tick(1)
    finally:
        if not scratch._closed:
            scratch.drop()
    return "collection.data.insert per object"


def reopen_options(store: Any) -> dict[str, Any]:
    """The options a store was opened with (to open another collection on the same server)."""
    o = store._opts
    return {"url": [e.url for e in o.endpoints] or None, "grpc_port": [e.grpc_port for e in o.endpoints] or None,
            "api_key": o.api_key, "data_dir": o.data_dir, "replication_factor": o.replication_factor,
            "shards": o.shards, "consistency": o.consistency}


def local_bytes(opts: "Options", cls: str) -> int | None:
    """Bytes under the local server's directory for one Weaviate class (its shards' files)."""
    from . import weaviate_server

    info = weaviate_server.running(opts.data_dir)
    if info is None:
        return None
    root = Path(info.data_path) / cls.lower()
    if not root.is_dir():
        return None
    total = 0
    for p in root.rglob("*"):
        try:
            total += p.stat().st_size if p.is_file() else 0
        except FileNotFoundError:  # compacted away while we walked
            pass
    return total
