"""The Weaviate backend's measurement hooks: the raw client search, the raw bulk load and the
one-at-a-time insert baselines, and the collection's size on the local server's disk.

The raw bulk load (:class:`RawImport`) is the raw weaviate-client's best way of loading measured
side by side with the client's other ways by ``bench/weaviate_import.py`` (3,000 x 512 into HNSW,
8 interleaved rounds, medians): ``collection.data.insert_many`` of 1,000 objects per request with
two requests at once from two threads, 1,131 objects/s, ahead of the batch context
``fixed_size(250, 2)`` (1,096), server-side batching ``stream(2)`` (1,007), and ``dynamic()`` /
``rate_limit()`` (0.76-0.77x the best in an earlier run); it also took the least CPU per object.
Two requests at once keep the server busy while the client encodes the next request.
"""

from __future__ import annotations

from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from vecface.errors import BackendError, CollectionMismatch

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


RAW_REQUEST = 1000  # objects per insert_many request of the raw bulk load (the best measured)
RAW_IN_FLIGHT = 2  # its requests at once


def insert_many(coll: Any, objects: Sequence[tuple[str, dict[str, Any], Any]], size: int,
                pool: Executor | None = None) -> None:
    """The raw client's bulk load: (uuid, properties, vector) tuples sent with ``coll.data.insert_many``
    in requests of ``size`` objects, through ``pool``'s threads (several requests at once) or one
    after another without one. Raises BackendError with the first error of any object refused."""
    def send(part: Sequence[tuple[str, dict[str, Any], Any]]) -> None:
        res = coll.data.insert_many(schema.data_objects(part))
        if res.errors:
            raise BackendError(f"{len(res.errors)} of {len(part)} objects refused: "
                               f"{next(iter(res.errors.values())).message}")

    parts = (objects[s:s + size] for s in range(0, len(objects), size))
    for _ in (pool.map(send, parts) if pool is not None else map(send, parts)):
        pass


def scratch(store: Any, suffix: str, index: Any = None) -> Any:
    """A new, empty collection ``<name><suffix>`` on ``store``'s server, of its dimension and metric,
    with ``index`` (an IndexSpec; a new collection's exact index when None); a leftover of an
    interrupted run is dropped first. The caller drops it."""
    cls, opts = type(store), reopen_options(store)
    name = f"{store.name[:44]}{suffix}"
    try:
        made = cls(name, store.dim, store.metric, **opts)
    except CollectionMismatch:  # a leftover of another run, with another shape
        cls(name, create=False, **opts).drop()
        made = cls(name, store.dim, store.metric, **opts)
    try:
        if made.count():  # a leftover of an interrupted run
            made.drop()
            made = cls(name, store.dim, store.metric, **opts)
        if index is not None:
            made.build_index(index)  # empty: a new collection with that index, nothing to copy
    except BaseException:
        if not made._closed:  # (drop closes the handle, and releases the local server)
            made.drop()
        raise
    return made


class RawImport:
    """The raw bulk load baseline: the raw client's best way (see the module docstring) into a fresh
    collection shaped like the store's (its properties, dimension, metric and index), made on
    entering and dropped on leaving. Called ``(ids, vectors, metadata or None)``; it makes the same
    objects vecface stores (uuid, properties, the vector as given) and nothing of vecface's write path
    (no validation, no normalisation, no retries)."""

    def __init__(self, store: Any, batch_size: int):
        self.store, self.size = store, max(1, min(batch_size, RAW_REQUEST))
        self.method = f"insert_many, {self.size} objects per request, {RAW_IN_FLIGHT} at once"
        self.scratch: Any = None
        self._pool: ThreadPoolExecutor | None = None

    def __enter__(self) -> "RawImport":
        self.scratch = scratch(self.store, "_raw", self.store.index)
        self._pool = ThreadPoolExecutor(RAW_IN_FLIGHT, thread_name_prefix="vecface-weaviate-raw")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown()
        self.scratch.drop()

    def __call__(self, ids: Sequence[str], vectors: np.ndarray, metadata: Iterable[Mapping[str, Any]] | None) -> None:
        metas = metadata if metadata is not None else ({} for _ in ids)
        insert_many(self.scratch._coll(), list(schema.objects(ids, vectors, metas)), self.size, self._pool)


def insert_one_by_one(store: Any, ids: Sequence[str], vectors: np.ndarray,
                      metadata: Sequence[Mapping[str, Any]], tick: Any = None) -> str:
    """One ``collection.data.insert`` per object into the scratch collection ``<name>_one``."""
    made = scratch(store, "_one")
    try:
        coll = made._coll()
        for i, v, m in zip(ids, np.asarray(vectors, dtype=np.float32), metadata):
            coll.data.insert(properties=schema.object_properties(i, dict(m)), uuid=object_uuid(i),
                             vector={VECTOR: v.tolist()})
            if tick is not None:
                tick(1)
    finally:
        if not made._closed:
            made.drop()
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
