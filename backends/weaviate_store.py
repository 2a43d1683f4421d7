"""Weaviate backend: one Weaviate collection per vecface collection, over weaviate-client v4 (gRPC).

Where: by default the local server that vecface builds and runs (:mod:`.weaviate_server`), started
on demand in ``<VECFACE_HOME>/weaviate``. ``url`` (or ``VECFACE_WEAVIATE_URL``) points at any other
server, with ``grpc_port`` (``VECFACE_WEAVIATE_GRPC_PORT``, default 50051) and ``api_key``
(``VECFACE_WEAVIATE_API_KEY``; never printed).

Schema: class ``Vecface_<name>`` with one self-provided vector named ``default`` (no vectorizer)
and the text properties ``vid`` (the vecface id), ``tag`` and ``path`` (filterable, ``field``
tokenization so a filter matches the whole value) and ``meta`` (the record's metadata as JSON, not
indexed). Object UUIDs are ``uuid5(VECFACE_NAMESPACE, id)``, so an upsert of an existing id
replaces the object. The collection's dimension, metric and index are kept as JSON in the Weaviate
collection's description, so a reopen recovers them (Weaviate itself only learns the dimension
from the first vector).

Indexes: ``Exact()`` is Weaviate's ``flat`` index (brute force), ``HNSW(m, ef_construction)`` is
``hnsw`` with ``maxConnections=m``, ``efConstruction``, and ``ef`` set to ``ef_search`` (default
40), which turns off Weaviate's dynamic ef, so a swept ``ef_search`` is the ef really used (Weaviate
raises it to k when k is larger). ``ef`` is a collection setting in Weaviate (a schema update),
so :meth:`set_query_params` updates the collection, once per change, never per query. IVFFlat has
no Weaviate counterpart and raises UnsupportedIndex.

Changing the index kind or its build parameters: Weaviate cannot change a collection's index type
or ``maxConnections``/``efConstruction`` in place. :meth:`build_index` therefore creates the next
generation ``Vecface_<name>_G<n>`` with the new index, copies every object (with its vector and
UUID) through the client's batching, marks it ready in its description, and deletes the old one.
Until the copy is complete the old generation stays the current one, so an interrupted rebuild
loses nothing. To avoid the copy, build the index before loading (an empty collection switches
instantly).

Writes use the client's fixed-size batching; after each batch every failed object is collected
and reported in :class:`~vecface.errors.IngestFailed` (count and first errors). Weaviate stores
the other objects of that batch: a batch is not atomic here, unlike pgvector.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import threading
import uuid
from contextlib import contextmanager
from typing import Any, Iterator
from urllib.parse import urlsplit

import numpy as np

try:
    import weaviate
    from weaviate.classes.config import Configure, DataType, Property, Reconfigure, Tokenization, VectorDistances
    from weaviate.classes.init import AdditionalConfig, Auth, Timeout
    from weaviate.classes.query import Filter, MetadataQuery
    from weaviate.exceptions import WeaviateBaseError
except ImportError as e:  # pragma: no cover - depends on the environment
    from vecface.errors import MissingDependency

    raise MissingDependency(getattr(e, "name", None) or "weaviate-client", extra="weaviate",
                            purpose="the Weaviate backend") from e

from vecface.config import redact
from vecface.errors import BackendError, BackendUnavailable, IngestFailed
from vecface.store import VectorStore
from vecface.types import DEFAULT_EF_SEARCH, HNSW, Exact, Hit, IndexSpec, Metric, Record, spec_from_dict, spec_to_dict

from . import weaviate_server

VECFACE_NAMESPACE = uuid.UUID("6f1d7a52-3c4b-5e0f-9a8d-7b2c1e4f5a60")
VECTOR = "default"
CLASS_PREFIX = "Vecface_"
DEFAULT_GRPC_PORT = 50051
MAX_PER_REQUEST = 1000  # ids per fetch / delete request (Weaviate's QUERY_MAXIMUM_RESULTS is 10000)
BATCH_OBJECTS = 250  # objects per gRPC batch request
BATCH_CONCURRENCY = 2
COPY_CHUNK = 1000  # objects per batch context when an index change copies a collection
MAX_REPORTED_ERRORS = 5
_RETURN_PROPS = ["vid", "meta"]


def object_uuid(id_: str) -> str:
    """The stable Weaviate UUID of a vecface id."""
    return str(uuid.uuid5(VECFACE_NAMESPACE, id_))


@contextmanager
def _errors(what: str) -> Iterator[None]:
    try:
        yield
    except WeaviateBaseError as e:
        raise BackendError(f"Weaviate {what} failed: {redact(str(e)).strip()}") from e


class WeaviateStore(VectorStore):
    backend = "weaviate"
    supported_indexes = ("exact", "hnsw")

    def __init__(self, collection: str, dim: int | None = None, metric: Metric | str | None = None, *,
                 create: bool = True, url: str | None = None, grpc_port: int | None = None,
                 api_key: str | None = None, data_dir: str | os.PathLike[str] | None = None):
        self._url, self._grpc_port, self._api_key = _resolve(url, grpc_port, api_key)
        self._data_dir = data_dir
        self._embedded = self._url is None
        self._client: weaviate.WeaviateClient | None = None
        self._cls: str | None = None  # the current generation's class name
        self._ef: int | None = None  # the ef the HNSW index has now
        self._lock = threading.RLock()
        super().__init__(collection, dim, metric, create=create)

    # ------------------------------------------------------------------ connection
    @classmethod
    def _open_client(cls, url: str | None, grpc_port: int | None, api_key: str | None,
                     data_dir: Any) -> weaviate.WeaviateClient:
        config = AdditionalConfig(timeout=Timeout(init=30, query=300, insert=600))
        if url is None:
            info = weaviate_server.acquire(data_dir)
            try:
                # skip_init_checks: no call to pypi.org for a client version check; readiness
                # was checked by the supervisor
                return weaviate.connect_to_local(host="127.0.0.1", port=info.http_port, grpc_port=info.grpc_port,
                                                 additional_config=config, skip_init_checks=True)
            except Exception as e:
                weaviate_server.release(data_dir)
                raise BackendUnavailable(f"cannot connect to the local Weaviate at {info.url}: {e}") from None
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise BackendUnavailable(f"VECFACE_WEAVIATE_URL / url must be http(s)://host[:port], got {redact(url)!r}")
        secure = parts.scheme == "https"
        try:
            client = weaviate.connect_to_custom(
                http_host=parts.hostname, http_port=parts.port or (443 if secure else 80), http_secure=secure,
                grpc_host=parts.hostname, grpc_port=grpc_port or DEFAULT_GRPC_PORT, grpc_secure=secure,
                auth_credentials=Auth.api_key(api_key) if api_key else None,
                additional_config=config, skip_init_checks=True)
        except Exception as e:
            raise BackendUnavailable(f"cannot connect to Weaviate at {redact(url)}: "
                                     f"{_scrub(str(e), api_key)}") from None
        try:
            ready = client.is_ready()
        except Exception:
            ready = False
        if not ready:
            client.close()
            raise BackendUnavailable(f"Weaviate at {redact(url)} is not ready (or not reachable)")
        return client

    @classmethod
    def probe(cls, url: str | None = None, grpc_port: int | None = None, api_key: str | None = None,
              data_dir: Any = None, **_: Any) -> str:
        url, grpc_port, api_key = _resolve(url, grpc_port, api_key)
        was_running = url is None and weaviate_server.running(data_dir) is not None
        client = cls._open_client(url, grpc_port, api_key, data_dir)
        try:
            with _errors("meta request"):
                version = client.get_meta().get("version", "?")
            with _errors("gRPC check"):  # a round trip over gRPC, which every data call uses
                client.collections.list_all(simple=True)
        finally:
            client.close()
            if url is None:
                weaviate_server.release(data_dir)
        if url is None:
            return f"Weaviate {version} (local server, {'running' if was_running else 'started on demand'})"
        return f"Weaviate {version} ({redact(url)}, gRPC port {grpc_port or DEFAULT_GRPC_PORT})"

    def server_versions(self) -> dict[str, str]:
        with _errors("meta request"):
            return {"weaviate": str(self._c().get_meta().get("version", "?"))}

    def _connect(self) -> None:
        self._client = self._open_client(self._url, self._grpc_port, self._api_key, self._data_dir)

    def _disconnect(self) -> None:
        if self._client is not None:
            try:
                self._client.close()
            finally:
                self._client = None
                if self._embedded:
                    weaviate_server.release(self._data_dir)

    def _c(self) -> weaviate.WeaviateClient:
        assert self._client is not None
        return self._client

    def _coll(self, cls: str | None = None):
        return self._c().collections.use(cls or self._cls)

    # ------------------------------------------------------------------ catalog (collection descriptions)
    def _generations(self) -> dict[str, tuple[int, dict[str, Any] | None]]:
        """Every Weaviate class of this vecface collection: class -> (generation, catalog entry)."""
        pattern = re.compile(re.escape(CLASS_PREFIX + self.name) + r"(?:_G(\d+))?")
        with _errors("listing collections"):
            configs = self._c().collections.list_all(simple=True)
        out = {}
        for cls, cfg in configs.items():
            m = pattern.fullmatch(cls)
            if m:
                try:
                    entry = json.loads(cfg.description or "")
                    entry = entry if isinstance(entry, dict) and entry.get("vecface") == self.name else None
                except ValueError:
                    entry = None
                out[cls] = (int(m.group(1) or 0), entry)
        return out

    def _describe(self) -> tuple[int, Metric, IndexSpec] | None:
        ready = [(gen, cls, e) for cls, (gen, e) in self._generations().items() if e and e.get("state") == "ready"]
        if not ready:
            return None
        _, self._cls, entry = max(ready)
        spec = spec_from_dict(entry["index"])
        self._ef = self._read_ef() if isinstance(spec, HNSW) else None
        return int(entry["dim"]), Metric.parse(entry["metric"]), spec

    def _entry(self, spec: IndexSpec, state: str) -> str:
        return json.dumps({"vecface": self.name, "dim": self.dim, "metric": self.metric.label,
                           "index": spec_to_dict(spec), "state": state})

    def _read_ef(self) -> int | None:
        with _errors("reading the collection config"):
            cfg = self._coll().config.get()
        vc = (cfg.vector_config or {}).get(VECTOR)
        return getattr(vc.vector_index_config, "ef", None) if vc is not None else None

    def _index_config(self, spec: IndexSpec):
        distance = VectorDistances(self.metric.weaviate_distance)
        if isinstance(spec, HNSW):
            return Configure.VectorIndex.hnsw(distance_metric=distance, max_connections=spec.m,
                                              ef_construction=spec.ef_construction, ef=self._want_ef())
        assert isinstance(spec, Exact), spec
        return Configure.VectorIndex.flat(distance_metric=distance)

    def _create_class(self, cls: str, spec: IndexSpec, state: str) -> None:
        text = dict(data_type=DataType.TEXT, tokenization=Tokenization.FIELD, index_searchable=False)
        with _errors(f"creating collection {cls}"):
            self._c().collections.create(
                name=cls,
                description=self._entry(spec, state),
                vector_config=Configure.Vectors.self_provided(name=VECTOR, vector_index_config=self._index_config(spec)),
                properties=[
                    Property(name="vid", index_filterable=True, **text),
                    Property(name="tag", index_filterable=True, **text),
                    Property(name="path", index_filterable=True, **text),
                    Property(name="meta", data_type=DataType.TEXT, index_filterable=False, index_searchable=False),
                ],
            )

    def _create(self) -> None:
        with self._lock:
            for cls in self._generations():  # leftovers of an interrupted create or rebuild
                with _errors(f"deleting {cls}"):
                    self._c().collections.delete(cls)
            self._cls = CLASS_PREFIX + self.name
            self._create_class(self._cls, Exact(), "ready")
            self._ef = None

    # ------------------------------------------------------------------ writes
    def _upsert(self, ids: list[str], vectors: np.ndarray, metadata: list[dict[str, Any]]) -> None:
        objects = ((object_uuid(i), _properties(i, m), v) for i, v, m in zip(ids, vectors, metadata))
        with self._lock:
            self._import(self._cls, objects, len(ids))

    def _import(self, cls: str, objects, total: int) -> None:
        """Batch-import (uuid, properties, vector) tuples; raise IngestFailed for any failed object."""
        coll = self._coll(cls)
        with _errors(f"batch import into {cls}"):
            with coll.batch.fixed_size(batch_size=max(1, min(BATCH_OBJECTS, total)),
                                       concurrent_requests=BATCH_CONCURRENCY) as batch:
                for u, props, vec in objects:
                    batch.add_object(properties=props, uuid=u, vector={VECTOR: vec})
            failed = list(coll.batch.failed_objects)
        if failed:
            first = []
            for err in failed[:MAX_REPORTED_ERRORS]:
                props = getattr(err.object_, "properties", None) or {}
                first.append((str(props.get("vid") or err.original_uuid or "?"), str(err.message)))
            detail = "; ".join(f"{i}: {msg}" for i, msg in first)
            raise IngestFailed(
                f"{len(failed)} of {total} objects were not stored in Weaviate collection {cls} "
                f"(the others were); first errors: {detail}", first)

    def _delete(self, ids: list[str]) -> int:
        deleted = 0
        with self._lock, _errors("delete"):
            coll = self._coll()
            for start in range(0, len(ids), MAX_PER_REQUEST):
                uuids = [object_uuid(i) for i in ids[start:start + MAX_PER_REQUEST]]
                res = coll.data.delete_many(where=Filter.by_id().contains_any(uuids))
                if res.failed:
                    raise BackendError(f"Weaviate failed to delete {res.failed} of {res.matches} objects")
                deleted += res.successful
        return deleted

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
                    src = self._coll(old).iterator(include_vector=True, return_properties=["vid", "tag", "path", "meta"],
                                                   cache_size=MAX_PER_REQUEST)
                    objects = ((o.uuid, {k: v for k, v in o.properties.items() if v is not None}, o.vector[VECTOR])
                               for o in src)
                    # in chunks like upserts: one long-lived batch context imports far slower
                    while chunk := list(itertools.islice(objects, COPY_CHUNK)):
                        self._import(new, chunk, len(chunk))
                copied = self._count(new)
                if copied != total:
                    raise BackendError(f"rebuilding {self.name!r} copied {copied} of {total} objects")
                with _errors("marking the rebuilt collection ready"):
                    self._coll(new).config.update(description=self._entry(spec, "ready"))
            except BaseException:
                with _errors(f"deleting {new}"):
                    self._c().collections.delete(new)
                raise
            self._cls = new
            self._ef = self._want_ef() if isinstance(spec, HNSW) else None
            for cls in gens:
                with _errors(f"deleting {cls}"):
                    self._c().collections.delete(cls)

    def _drop(self) -> None:
        with self._lock:
            for cls in self._generations():
                with _errors(f"deleting {cls}"):
                    self._c().collections.delete(cls)

    # ------------------------------------------------------------------ reads
    def _get(self, ids: list[str]) -> list[Record]:
        out = []
        with self._lock, _errors("fetch"):
            coll = self._coll()
            for start in range(0, len(ids), MAX_PER_REQUEST):
                uuids = [object_uuid(i) for i in ids[start:start + MAX_PER_REQUEST]]
                res = coll.query.fetch_objects(filters=Filter.by_id().contains_any(uuids), limit=len(uuids),
                                               include_vector=True, return_properties=_RETURN_PROPS)
                for o in res.objects:
                    out.append(Record(o.properties["vid"], np.asarray(o.vector[VECTOR], dtype=np.float32),
                                      json.loads(o.properties.get("meta") or "{}")))
        return out

    def _count(self, cls: str | None = None) -> int:
        with self._lock, _errors("count"):
            return int(self._coll(cls).aggregate.over_all(total_count=True).total_count or 0)

    def _want_ef(self) -> int:
        return self._query.ef_search or DEFAULT_EF_SEARCH

    def _apply_query_params(self) -> None:
        if not isinstance(self._index, HNSW):
            return
        want = self._want_ef()
        if want != self._ef:
            with self._lock, _errors("setting ef"):
                self._coll().config.update(vector_config=Reconfigure.Vectors.update(
                    name=VECTOR, vector_index_config=Reconfigure.VectorIndex.hnsw(ef=want)))
            self._ef = want

    def _search(self, queries: np.ndarray, k: int, flt: dict[str, list[str]] | None) -> list[list[Hit]]:
        where = _filter(flt)
        out = []
        with self._lock:
            self._apply_query_params()
            coll = self._coll()
            with _errors("near_vector search"):
                for q in queries:
                    res = coll.query.near_vector(near_vector=q.tolist(), limit=k, filters=where, target_vector=VECTOR,
                                                 return_metadata=MetadataQuery(distance=True),
                                                 return_properties=_RETURN_PROPS)
                    hits = [self._hit(o.properties["vid"], self._distance(o.metadata.distance),
                                      json.loads(o.properties.get("meta") or "{}")) for o in res.objects]
                    hits.sort(key=lambda h: h.distance)
                    out.append(hits)
        return out

    def _distance(self, d: float | None) -> float:
        d = float(d if d is not None else math.nan)
        # Weaviate's l2-squared -> Euclidean; "dot" is already -<a, b>; "cosine" is already 1 - cos
        return math.sqrt(max(d, 0.0)) if self.metric is Metric.L2 else d


def _resolve(url: str | None, grpc_port: int | None, api_key: str | None) -> tuple[str | None, int | None, str | None]:
    url = url or os.environ.get("VECFACE_WEAVIATE_URL") or None
    if grpc_port is None and os.environ.get("VECFACE_WEAVIATE_GRPC_PORT"):
        try:
            grpc_port = int(os.environ["VECFACE_WEAVIATE_GRPC_PORT"])
        except ValueError:
            raise BackendUnavailable("VECFACE_WEAVIATE_GRPC_PORT must be a port number") from None
    api_key = api_key or os.environ.get("VECFACE_WEAVIATE_API_KEY") or None
    return url, grpc_port, api_key


def _scrub(text: str, secret: str | None) -> str:
    text = redact(text)
    return text.replace(secret, "***") if secret else text


def _properties(id_: str, meta: dict[str, Any]) -> dict[str, Any]:
    props = {"vid": id_, "meta": json.dumps(meta, separators=(",", ":"))}
    for key in ("tag", "path"):
        if meta.get(key) is not None:
            props[key] = meta[key]
    return props


def _filter(flt: dict[str, list[str]] | None):
    if not flt:
        return None
    parts = [Filter.by_property(field).equal(vals[0]) if len(vals) == 1 else Filter.by_property(field).contains_any(vals)
             for field, vals in flt.items()]
    return parts[0] if len(parts) == 1 else Filter.all_of(parts)
