"""Weaviate backend: one Weaviate collection per vecface collection, over weaviate-client v4 (gRPC).

Where: by default the local server that vecface builds and runs (:mod:`.weaviate_server`), started
on demand in ``<VECFACE_HOME>/weaviate``; ``url`` points at any other server or at the nodes of a
cluster (options and their environment variables: :mod:`.weaviate_conn`). The schema (properties,
object UUIDs, filters): :mod:`.weaviate_schema`. The collection's dimension, metric and index are
kept as JSON in the Weaviate collection's description, so a reopen recovers them.

Indexes: ``Exact()`` is Weaviate's ``flat`` index (brute force), ``HNSW(m, ef_construction)`` is
``hnsw`` with ``maxConnections=m``, ``efConstruction``, and ``ef`` set to ``ef_search`` (default
40), which turns off Weaviate's dynamic ef, so a swept ``ef_search`` is the ef really used (Weaviate
raises it to k when k is larger). ``ef`` and the filter strategy (``sweeping``, vecface's default, or ``acorn``) are
collection settings in Weaviate (a schema update), so :meth:`set_query_params` updates the
collection, once per change, never per query. A filter keeping fewer objects than the collection's
``flatSearchCutoff`` is answered by an exact scan of them: vecface sets it by dimension
(:func:`.weaviate_schema.flat_search_cutoff`). IVFFlat has no Weaviate counterpart.

Changing the index kind or its build parameters (see :attr:`build_note`): :meth:`build_index`
creates the next generation ``Vecface_<name>_G<n>`` with the new index, copies every object (with
its vector and UUID), marks it ready in its description, and deletes the old one. Until the copy is
complete the old generation stays the current one, so an interrupted rebuild loses nothing.

Errors: every operation goes through :func:`.weaviate_conn.operation`, which turns a client failure into a vecface error
(:func:`.weaviate_conn.convert`: BackendUnavailable when the server cannot be reached, BackendError
when it refused) and, given several node URLs, moves to a live node and tries once more (every
operation here is idempotent: objects are keyed by a UUID derived from the vecface id).

Writes: one import per upsert call (:mod:`.weaviate_write`), every failed object reported in
:class:`~vecface.errors.IngestFailed`; not atomic, unlike pgvector: the other objects are stored.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import threading
from functools import cached_property
from typing import Any, Callable, Mapping, Sequence

import numpy as np

try:
    import weaviate
    from weaviate.classes.config import Reconfigure
    from weaviate.classes.query import Filter
except ImportError as e:  # pragma: no cover - depends on the environment
    from vecface.errors import MissingDependency

    raise MissingDependency(getattr(e, "name", None) or "weaviate-client", extra="weaviate",
                            purpose="the Weaviate backend") from e

from vecface.errors import BackendError, BackendUnavailable, CollectionMismatch
from vecface.store import VectorStore
from vecface.types import DEFAULT_EF_SEARCH, HNSW, Exact, Hit, IndexSpec, Metric, Record, spec_from_dict, spec_to_dict

from . import weaviate_check, weaviate_server, weaviate_write
from . import weaviate_conn as conn
from . import weaviate_measure as measure
from . import weaviate_schema as schema
from .weaviate_schema import CLASS_PREFIX, DISTANCE, RETURN_PROPS, VECTOR, object_uuid

MAX_PER_REQUEST = 1000  # ids per fetch / delete request (Weaviate's QUERY_MAXIMUM_RESULTS is 10000)
COPY_CHUNK = 1000  # objects per batch when an index change copies a collection
if weaviate_check.repair_after_crash not in weaviate_server.after_crash_restart:
    # a local server restarted after its predecessor died gets its indexes checked and repaired
    weaviate_server.after_crash_restart.append(weaviate_check.repair_after_crash)


_op = conn.operation  # the one error pattern: client failures -> vecface errors, fail-over


class WeaviateStore(VectorStore):
    backend = "weaviate"
    supported_indexes = ("exact", "hnsw")
    #: the first is the default. Sweeping, not Weaviate's own default ACORN: on 50,000 and 200,000
    #: objects (README, Weaviate "Filtered search") ACORN, which Weaviate only uses for a filter keeping
    #: at most 40% of the objects, had lower recall at every share measured (39%: 0.82-0.87 against
    #: 0.91; 10%: 0.61-0.77 against 0.83-0.95) and was slower at 39% (1.7-2.4x the unfiltered time
    #: against 1.3-1.7x); it was faster only at 10% (2.0-2.3x against 3.5-4x)
    filter_strategies = ("sweeping", "acorn")
    build_note = ("Weaviate cannot change a collection's index in place: its build is a copy of every object "
                  "into a new collection with the new index (HNSW built as it imports).")

    def __init__(self, collection: str, dim: int | None = None, metric: Metric | str | None = None, *,
                 create: bool = True, url: str | Sequence[str] | None = None,
                 grpc_port: int | Sequence[int] | None = None, api_key: str | None = None,
                 data_dir: Any = None, replication_factor: int | None = None, shards: int | None = None,
                 consistency: str | None = None):
        self._opts = conn.resolve(url, grpc_port, api_key, data_dir, replication_factor, shards, consistency)
        self._client: weaviate.WeaviateClient | None = None
        self._node = 0  # which endpoint the client talks to
        self._cls: str | None = None  # the current generation's class name
        self._ef: int | None = None  # the ef the HNSW index has now
        self._fs: str | None = None  # the filter strategy it has now
        self._cut: int | None = None  # the flatSearchCutoff it has now
        self._handle: tuple[Any, Any] | None = None  # ((client, class), collection handle)
        self._watch: conn.NodeWatch | None = None  # several nodes: the liveness probe of the one in use
        self._dead: Any = None  # the client the watch closed because its node died
        self._lock = threading.RLock()
        self._info: dict[str, Any] | None = None  # the collection's description (VectorStore.info)
        super().__init__(collection, dim, metric, create=create)

    # ------------------------------------------------------------------ connection
    @classmethod
    def probe(cls, url: Any = None, grpc_port: Any = None, api_key: str | None = None,
              data_dir: Any = None, **_: Any) -> str:
        opts = conn.resolve(url, grpc_port, api_key, data_dir)
        was_running = opts.local and weaviate_server.running(data_dir) is not None
        with conn.session(opts) as (client, node):
            with conn.converted("meta request", opts):
                version = client.get_meta().get("version", "?")
            with conn.converted("gRPC check", opts):  # a round trip over gRPC, which every data call uses
                client.collections.list_all(simple=True)
        if opts.local:
            return f"Weaviate {version} (local server, {'running' if was_running else 'started on demand'})"
        return f"Weaviate {version} ({conn.describe(opts, node)})"

    def _connect(self) -> None:
        self._client, self._node = conn.connect(self._opts)
        if len(self._opts.endpoints) > 1:
            self._watch = conn.NodeWatch(self._opts, lambda: self._node, self._node_died)

    def _node_died(self) -> None:
        """Called by the watch: close the client of the dead node (calls in flight on it fail now)."""
        client = self._client
        if client is not None and client is not self._dead:
            self._dead = client
            conn.close_quietly(client)

    def _disconnect(self) -> None:
        if self._watch is not None:
            self._watch.stop()
            self._watch = None
        if self._client is not None:
            try:
                self._client.close()
            finally:
                self._client = None
                conn.release(self._opts)

    def _fail_over(self) -> bool:
        """Move to the next live node (several URLs only). Returns whether it did."""
        if len(self._opts.endpoints) < 2 or self._closed:
            return False
        with self._lock:
            old = self._client
            try:
                self._client, self._node = conn.connect(self._opts, start=self._node + 1)
            except BackendUnavailable:
                return False
            if old is not None:
                conn.close_quietly(old)
        return True

    def _c(self) -> weaviate.WeaviateClient:
        assert self._client is not None
        return self._client

    def _coll(self, cls: str | None = None):
        """The client's handle of a class (the current generation by default), kept between calls:
        making one costs more than a tenth of a search."""
        key = (self._client, cls or self._cls)
        if self._handle is None or self._handle[0] != key:
            coll = self._c().collections.use(key[1])
            level = self._opts.consistency_level
            self._handle = (key, coll.with_consistency_level(level) if level is not None else coll)
        return self._handle[1]

    @_op("meta request")
    def server_versions(self) -> dict[str, str]:
        return {"weaviate": str(self._c().get_meta().get("version", "?"))}

    # ------------------------------------------------------------------ catalog (collection descriptions)
    def _generations(self) -> dict[str, tuple[int, dict[str, Any] | None]]:
        """Every Weaviate class of this vecface collection: class -> (generation, catalog entry)."""
        pattern = re.compile(re.escape(CLASS_PREFIX + self.name) + r"(?:_G(\d+))?")
        out = {}
        for cls, cfg in self._c().collections.list_all(simple=True).items():
            m = pattern.fullmatch(cls)
            if m:
                entry = schema.catalog_entry(cfg.description)
                entry = entry if entry and entry["vecface"] == self.name else None
                out[cls] = (int(m.group(1) or 0), entry)
        return out

    @_op("reading the collection catalog")
    def _describe(self) -> tuple[int, Metric, IndexSpec] | None:
        ready = [(gen, cls, e) for cls, (gen, e) in self._generations().items() if e and e.get("state") == "ready"]
        if not ready:
            return None
        _, self._cls, entry = max(ready)
        self._info = entry.get("info")
        spec = spec_from_dict(entry["index"])
        cfg = self._coll().config.get()
        schema.add_missing(self._coll(), {p.name for p in cfg.properties})
        vc = (cfg.vector_config or {}).get(VECTOR)
        vic = vc.vector_index_config if vc is not None else None
        self._ef = getattr(vic, "ef", None) if isinstance(spec, HNSW) else None
        fs = getattr(vic, "filter_strategy", None)
        self._fs = getattr(fs, "value", fs) if isinstance(spec, HNSW) else None
        self._cut = getattr(vic, "flat_search_cutoff", None) if isinstance(spec, HNSW) else None
        return int(entry["dim"]), Metric.parse(entry["metric"]), spec

    def _entry(self, spec: IndexSpec, state: str) -> str:
        return json.dumps({"vecface": self.name, "dim": self.dim, "metric": self.metric.label,
                           "index": spec_to_dict(spec), "state": state, "info": self._info})

    def _create_class(self, cls: str, spec: IndexSpec, state: str) -> None:
        from weaviate.classes.config import Configure

        extra: dict[str, Any] = {}
        if self._opts.replication_factor:
            extra["replication_config"] = Configure.replication(factor=self._opts.replication_factor)
        if self._opts.shards:
            extra["sharding_config"] = Configure.sharding(desired_count=self._opts.shards)
        self._c().collections.create(
            name=cls, description=self._entry(spec, state), properties=schema.properties(),
            vector_config=schema.vector_config(self.metric, spec, self._want_ef(), self._want_fs(spec),
                                            self.dim), **extra)

    @_op("creating the collection")
    def _create(self) -> None:
        with self._lock:
            gens = self._generations()
            if any(e and e.get("state") == "ready" for _, e in gens.values()):
                return self._adopt()  # another process created it since we looked
            for cls in gens:  # leftovers of an interrupted rebuild (none of them is ready)
                self._c().collections.delete(cls)
            self._cls = CLASS_PREFIX + self.name
            try:
                self._create_class(self._cls, Exact(), "ready")
            except weaviate.exceptions.WeaviateBaseError as e:
                if "already exists" not in str(e):
                    raise
                return self._adopt()  # two first-time creates raced: use the one that won
            self._ef = self._fs = self._cut = None

    def _adopt(self) -> None:
        """Take the collection another client created while this one was creating it."""
        found = self._describe()
        if found is None:
            raise BackendError(f"collection {self.name!r} was being created by another client and is not ready")
        dim, metric, spec = found
        if dim != self.dim or metric is not self.metric:
            raise CollectionMismatch(f"collection {self.name!r} was just created by another client with dimension "
                                     f"{dim} and metric {metric.label}, not {self.dim} and {self.metric.label}")
        self._index = spec

    # ------------------------------------------------------------------ writes
    def _upsert_all(self, ids: list[str], mat: np.ndarray, metas: list[dict[str, Any]], batch_size: int) -> int:
        """One import of every row (requests of at most ``batch_size``), its requests overlapping across batches."""
        self._upsert(ids, mat, metas, min(batch_size, weaviate_write.BATCH_OBJECTS))
        return len(ids)

    @_op("batch import")
    def _upsert(self, ids: list[str], vectors: np.ndarray, metadata: list[dict[str, Any]],
                size: int = weaviate_write.BATCH_OBJECTS) -> None:
        with self._lock:
            self._import(self._cls, schema.objects(ids, vectors, metadata), len(ids), size)

    def _import(self, cls: str, objects, total: int, size: int = weaviate_write.BATCH_OBJECTS) -> None:
        """(uuid, properties, vector) tuples into class ``cls`` (:func:`.weaviate_write.import_objects`)."""
        weaviate_write.import_objects(self._coll(cls), cls, objects, total, self._opts, size)

    @_op("delete")
    def _delete(self, ids: list[str]) -> int:
        deleted = 0
        with self._lock:
            coll = self._coll()
            for start in range(0, len(ids), MAX_PER_REQUEST):
                uuids = [object_uuid(i) for i in ids[start:start + MAX_PER_REQUEST]]
                res = coll.data.delete_many(where=Filter.by_id().contains_any(uuids))
                if res.failed:
                    raise BackendError(f"Weaviate failed to delete {res.failed} of {res.matches} objects")
                deleted += res.successful
        return deleted

    @_op("building the index", retry=False)
    def _build_index(self, spec: IndexSpec) -> None:
        with self._lock:
            if spec == self._index:
                return  # the same index is already there (HNSW indexes new rows as they arrive)
            gens = self._generations()
            old = self._cls
            new = f"{CLASS_PREFIX}{self.name}_G{max(g for g, _ in gens.values()) + 1}"
            self._create_class(new, spec, "building")
            try:
                total = self._count()
                if total:
                    src = self._coll(old).iterator(include_vector=True, return_properties=list(schema.PROPERTY_NAMES),
                                                   cache_size=MAX_PER_REQUEST)
                    objects = ((o.uuid, {k: v for k, v in o.properties.items() if v is not None}, o.vector[VECTOR])
                               for o in src)
                    while chunk := list(itertools.islice(objects, COPY_CHUNK)):
                        self._import(new, chunk, len(chunk))
                copied = self._count(new)
                if copied != total:
                    raise BackendError(f"rebuilding {self.name!r} copied {copied} of {total} objects")
                self._coll(new).config.update(description=self._entry(spec, "ready"))
            except BaseException:
                self._c().collections.delete(new)
                raise
            self._cls = new
            self._ef = self._want_ef() if isinstance(spec, HNSW) else None
            self._fs = self._want_fs(spec)
            self._cut = self._want_cut if isinstance(spec, HNSW) else None
            for cls in gens:
                self._c().collections.delete(cls)

    @_op("dropping the collection")
    def _drop(self) -> None:
        with self._lock:
            for cls in self._generations():
                self._c().collections.delete(cls)

    # ------------------------------------------------------------------ reads
    @_op("fetch")
    def _get(self, ids: list[str]) -> list[Record]:
        out = []
        with self._lock:
            coll = self._coll()
            for start in range(0, len(ids), MAX_PER_REQUEST):
                uuids = [object_uuid(i) for i in ids[start:start + MAX_PER_REQUEST]]
                res = coll.query.fetch_objects(filters=Filter.by_id().contains_any(uuids), limit=len(uuids),
                                               include_vector=True, return_properties=RETURN_PROPS)
                for o in res.objects:
                    out.append(Record(o.properties["vid"], np.asarray(o.vector[VECTOR], dtype=np.float32),
                                      json.loads(o.properties.get("meta") or "{}")))
        return out

    @_op("listing record ids")
    def _ids(self) -> list[str]:
        """The client's cursor iterator over the collection, fetching only the ``vid`` property."""
        with self._lock:
            return [o.properties["vid"] for o in self._coll().iterator(return_properties=["vid"], cache_size=5000)]

    @_op("count")
    def _count(self, cls: str | None = None) -> int:
        with self._lock:
            return int(self._c().collections.use(cls or self._cls).aggregate.over_all(total_count=True).total_count or 0)

    def _want_ef(self) -> int:
        return self._query.ef_search or DEFAULT_EF_SEARCH

    def _want_fs(self, spec: IndexSpec) -> str | None:
        return (self._query.filter_strategy or self.filter_strategies[0]) if isinstance(spec, HNSW) else None

    @cached_property
    def _want_cut(self) -> int:  # the flatSearchCutoff of the dimension, once: a store keeps its dim
        return schema.flat_search_cutoff(self.dim)

    @_op("setting query parameters")
    def _apply_query_params(self) -> None:
        if not isinstance(self._index, HNSW):
            return
        want_ef, want_fs, want_cut = self._want_ef(), self._want_fs(self._index), self._want_cut
        # the cutoff too: a collection made by an older vecface gets the current rule when next searched
        if (want_ef, want_fs, want_cut) != (self._ef, self._fs, self._cut):
            from weaviate.classes.config import VectorFilterStrategy

            with self._lock:
                self._coll().config.update(vector_config=Reconfigure.Vectors.update(
                    name=VECTOR, vector_index_config=Reconfigure.VectorIndex.hnsw(
                        ef=want_ef, filter_strategy=VectorFilterStrategy(want_fs),
                        flat_search_cutoff=want_cut)))
            self._ef, self._fs, self._cut = want_ef, want_fs, want_cut

    @_op("near_vector search")
    def _search(self, queries: np.ndarray, k: int, flt: Mapping[str, Any] | None) -> list[list[Hit]]:
        where = schema.where(flt)
        out = []
        with self._lock:
            self._apply_query_params()
            coll = self._coll()
            for q in queries:
                res = coll.query.near_vector(near_vector=q.tolist(), limit=k, filters=where, target_vector=VECTOR,
                                             return_metadata=DISTANCE, return_properties=RETURN_PROPS)
                out.append(self._hits(res.objects))
        return out

    def _hits(self, objects: Sequence[Any]) -> list[Hit]:
        """Hits of Weaviate's answer (closest first already). Distances: Weaviate's l2-squared becomes
        Euclidean, "dot" is already -<a, b>, "cosine" already 1 - cos. The metadata is handed over as
        the stored JSON text, decoded only when a caller reads it (see :class:`~vecface.types.Hit`)."""
        metric = self.metric
        out = []
        for o in objects:
            props = o.properties
            d = o.metadata.distance
            d = math.nan if d is None else (math.sqrt(max(d, 0.0)) if metric is Metric.L2 else float(d))
            out.append(Hit(props["vid"], d, metric.similarity(d), props.get("meta") or None))
        return out

    # ------------------------------------------------------------------ measurement hooks (weaviate_measure)
    def raw_searcher(self, k: int) -> Callable[[Any], list]:
        """weaviate-client ``near_vector`` on this index (same ef, filter strategy): :func:`.weaviate_measure.raw_searcher`."""
        self._check_open()
        with self._lock:
            self._apply_query_params()
        return measure.raw_searcher(self._coll(), k)

    def raw_loader(self, batch_size: int) -> measure.RawImport:
        """The raw client's best bulk load into a fresh collection like this one (:class:`.weaviate_measure.RawImport`)."""
        self._check_open()
        return measure.RawImport(self, batch_size)

    @_op("one-at-a-time insert", retry=False)
    def insert_one_by_one(self, ids: Sequence[str], vectors: np.ndarray, metadata: Sequence[Mapping[str, Any]],
                          tick: Any = None) -> str:
        """One ``collection.data.insert`` per object into a scratch collection (dropped afterwards)."""
        self._check_open()
        return measure.insert_one_by_one(self, ids, vectors, metadata, tick)

    @_op("reading the collection's info")
    def _read_info(self) -> dict[str, Any] | None:
        entry = self._generations().get(self._cls, (0, None))[1]  # another client may have set it
        return entry.get("info") if entry else self._info

    @_op("writing the collection's info")
    def _write_info(self, info: dict[str, Any]) -> None:
        with self._lock:
            self._info = info
            self._coll().config.update(description=self._entry(self._index, "ready"))

    @classmethod
    def _collection_names(cls, url: Any = None, grpc_port: Any = None, api_key: str | None = None,
                          data_dir: Any = None, **_: Any) -> list[str]:
        opts = conn.resolve(url, grpc_port, api_key, data_dir)
        with conn.session(opts) as (client, _), conn.converted("listing collections", opts):
            return schema.collection_names(client)

    @_op("reading the storage size")
    def storage_bytes(self) -> int | None:
        """Bytes of the collection's files on the local server's disk (a remote server does not say)."""
        self._check_open()
        return measure.local_bytes(self._opts, self._cls) if self._opts.local else None

    def check(self, repair: bool = False, progress: Callable[[int], None] | None = None):
        """Whether the vector index finds every stored object; ``repair`` re-indexes the rest (:mod:`.weaviate_check`)."""
        self._check_open()
        return weaviate_check.check(self, repair=repair, progress=progress)
