"""The VectorStore interface every backend implements.

Public methods validate and convert (names, dimension, dtype, finite values, k, filters), then
call a private ``_method`` that only talks to the backend. Searches always use the collection's
own metric, so a query can never be scored with a different distance than its index.
"""

from __future__ import annotations

import abc
import json
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterable, Iterator, Mapping, Sequence

import numpy as np

from .errors import (
    BackendError,
    CollectionMismatch,
    InvalidArgument,
    StoreClosed,
    UnknownCollection,
    UnsupportedIndex,
    UnsupportedOperation,
)
from .filters import normalise_filter
from .types import (
    MAX_K,
    Exact,
    Hit,
    IndexSpec,
    Metric,
    QueryParams,
    Record,
    as_matrix,
    as_query,
    clean_metadata_batch,
    parse_index,
    spec_text,
    validate_ids,
    validate_k,
    validate_name,
)

DEFAULT_BATCH = 1000


@dataclass
class CollectionSummary:
    """One collection of a backend as :meth:`VectorStore.list_collections` finds it there."""

    name: str
    dim: int
    metric: str
    index: str
    count: int | None
    size_bytes: int | None
    info: dict[str, Any] = field(default_factory=dict)
    #: why count and size could not be read (a damaged collection: its table or files are gone)
    problem: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dim": self.dim, "metric": self.metric, "index": self.index,
                "count": self.count, "size_bytes": self.size_bytes, "info": self.info, "problem": self.problem}


@dataclass
class CheckReport:
    """What :meth:`VectorStore.check` found: ids stored but not returned by the vector index."""

    stored: int
    unsearchable: list[str]
    repaired: list[str]
    still_unsearchable: list[str]

    @property
    def ok(self) -> bool:
        return not self.still_unsearchable


class VectorStore(abc.ABC):
    """One collection in one backend: ``name``, ``dim``, ``metric``.

    Open an existing collection with ``dim=None``; create one by giving ``dim`` (and ``metric``).
    Opening an existing collection with a different dim or metric raises CollectionMismatch.
    """

    # ---- capabilities: what the backend can do, asked by the bench and the CLI, never guessed
    backend: ClassVar[str] = "?"
    supported_indexes: ClassVar[tuple[str, ...]] = ("exact",)
    #: the engine runs inside this process (no server, no connection between client and index)
    in_process: ClassVar[bool] = False
    #: the ways of running a filtered search the backend offers (``set_query_params(filter_strategy=)``);
    #: the first is its default
    filter_strategies: ClassVar[tuple[str, ...]] = ()
    #: how building an index works where it is not "build over the stored rows" (said in reports)
    build_note: ClassVar[str | None] = None

    def __init__(self, collection: str, dim: int | None = None, metric: Metric | str | None = None,
                 *, create: bool = True):
        self.name = validate_name(collection)
        want_metric = Metric.parse(metric) if metric is not None else None
        if dim is not None and (isinstance(dim, bool) or not isinstance(dim, int) or dim < 1):
            raise InvalidArgument(f"dim must be a positive integer, got {dim!r}")
        self._closed = False
        self._query = QueryParams()
        self._connect()
        try:
            existing = self._describe()
            if existing is None:
                if not create:
                    raise UnknownCollection(f"{self.backend} has no collection {self.name!r}")
                if dim is None:
                    raise UnknownCollection(
                        f"{self.backend} has no collection {self.name!r}; give a dimension to create it")
                self.dim, self.metric, self._index = dim, want_metric or Metric.COSINE, Exact()
                self._create()
            else:
                self.dim, self.metric, self._index = existing
                if dim is not None and dim != self.dim:
                    raise CollectionMismatch(
                        f"collection {self.name!r} has dimension {self.dim}, not {dim}")
                if want_metric is not None and want_metric is not self.metric:
                    raise CollectionMismatch(
                        f"collection {self.name!r} uses metric {self.metric.label}, not {want_metric.label}")
        except BaseException:
            self._disconnect()
            raise

    @classmethod
    def probe(cls, **options: Any) -> str:
        """Check the backend can be used here; return a one-line description (versions).
        Raise BackendUnavailable / MissingDependency saying what to install or start."""
        return "available"

    # ------------------------------------------------------------------ public API
    @property
    def index(self) -> IndexSpec:
        return self._index

    @property
    def query_params(self) -> QueryParams:
        return self._query

    def upsert(self, records: Iterable[Record | Mapping[str, Any]], *, batch_size: int = DEFAULT_BATCH) -> int:
        """Insert or replace records, committed per batch. Returns the number written."""
        self._check_open()
        n = 0
        for chunk in _chunks(records, batch_size):
            ids, vecs, metas = [], [], []
            for rec in chunk:
                if isinstance(rec, Mapping):
                    rec = Record(rec["id"], rec["vector"], dict(rec.get("metadata") or {}))
                if not isinstance(rec, Record):
                    raise InvalidArgument(f"expected a Record, got {type(rec).__name__}")
                ids.append(rec.id)
                vecs.append(rec.vector)
                metas.append(rec.metadata)
            n += self.upsert_arrays(ids, np.asarray(vecs) if vecs else np.zeros((0, self.dim)), metas,
                                    batch_size=batch_size)
        return n

    def upsert_arrays(self, ids: Sequence[str], vectors: Any, metadata: Sequence[Mapping[str, Any]] | None = None,
                      *, batch_size: int = DEFAULT_BATCH) -> int:
        """Columnar upsert: ``ids`` (n), ``vectors`` (n, dim), optional ``metadata`` (n)."""
        self._check_open()
        ids = validate_ids(ids)
        if len(ids) == 0:
            return 0
        mat = as_matrix(vectors, self.dim, self.metric)
        if mat.shape[0] != len(ids):
            raise InvalidArgument(f"{len(ids)} ids but {mat.shape[0]} vectors")
        metas = clean_metadata_batch(metadata) if metadata is not None else [{} for _ in ids]
        if len(metas) != len(ids):
            raise InvalidArgument(f"{len(ids)} ids but {len(metas)} metadata entries")
        # the same id twice in one call: the last one wins, as if upserted in order
        last = {i: pos for pos, i in enumerate(ids)}
        if len(last) != len(ids):
            keep = sorted(last.values())
            ids = [ids[p] for p in keep]
            mat = mat[keep]
            metas = [metas[p] for p in keep]
        return self._upsert_all(ids, mat, metas, max(1, batch_size))

    def _upsert_all(self, ids: list[str], mat: np.ndarray, metas: list[dict[str, Any]], batch_size: int) -> int:
        """Write validated rows (ids unique) batch by batch, each batch committed on its own.
        A backend that can write several batches at once overrides this."""
        for start in range(0, len(ids), batch_size):
            stop = start + batch_size
            self._upsert(ids[start:stop], mat[start:stop], metas[start:stop])
        return len(ids)

    def get(self, ids: Sequence[str] | str) -> list[Record]:
        """Records for the ids that exist, in the order asked; missing ids are left out."""
        self._check_open()
        ids = validate_ids(ids)
        if not ids:
            return []
        found = {r.id: r for r in self._get(ids)}
        return [found[i] for i in dict.fromkeys(ids) if i in found]

    def delete(self, ids: Sequence[str] | str) -> int:
        """Delete by id. Returns how many existed and were deleted."""
        self._check_open()
        ids = list(dict.fromkeys(validate_ids(ids)))
        return self._delete(ids) if ids else 0

    def count(self) -> int:
        self._check_open()
        return self._count()

    def ids(self) -> list[str]:
        """Every record id of the collection, sorted (read from the backend itself, so another
        machine without the local ingest manifest sees them too). Raises UnsupportedOperation
        where the backend cannot list them."""
        self._check_open()
        return sorted(self._ids())

    def search(self, vector: Any, k: int = 10, filter: Mapping[str, Any] | None = None) -> list[Hit]:
        """The k nearest records to ``vector`` (closest first), optionally filtered on metadata."""
        # one query: the same checks as search_many, on the single-vector fast path (the hot path of
        # every benchmark and of serving)
        if self._closed:
            self._check_open()
        if k.__class__ is not int or not 0 < k <= MAX_K:  # (validate_k's own first test, inline)
            k = validate_k(k)
        flt = normalise_filter(filter) if filter is not None else None
        return self._search(as_query(vector, self.dim, self.metric), k, flt)[0]

    def search_many(self, vectors: Any, k: int = 10, filter: Mapping[str, Any] | None = None) -> list[list[Hit]]:
        self._check_open()
        k = validate_k(k)
        mat = as_matrix(vectors, self.dim, self.metric, what="query vector")
        flt = normalise_filter(filter)
        if mat.shape[0] == 0:
            return []
        return self._search(mat, k, flt)

    def build_index(self, spec: IndexSpec | str) -> None:
        """Build (or replace) the collection's index over the rows it holds now.
        Rows added later are indexed as they arrive. ``Exact()`` drops any index."""
        self._check_open()
        spec = parse_index(spec)
        if spec.kind not in self.supported_indexes:
            raise UnsupportedIndex(
                f"the {self.backend} backend has no {spec.kind} index; it supports: "
                + ", ".join(self.supported_indexes))
        self._build_index(spec)
        self._index = spec

    #: (column, value) of each filter index the collection has (see :meth:`build_filter_index`)
    filter_indexes: Sequence[tuple[str, str]] = ()

    def build_filter_index(self, column: str, value: str) -> None:
        """A vector index over only the rows whose ``column`` is ``value``, walked by a search filtered
        on exactly that value (pgvector's partial indexes; elsewhere UnsupportedOperation)."""
        raise UnsupportedOperation(f"the {self.backend} backend has no per-value filter indexes")

    def drop_filter_index(self, column: str, value: str) -> bool:
        """Drop the filter index of ``column = value``; whether there was one."""
        raise UnsupportedOperation(f"the {self.backend} backend has no per-value filter indexes")

    def set_query_params(self, ef_search: int | None = None, probes: int | None = None,
                         filter_strategy: str | None = None) -> None:
        """Query-time knobs for the index already built: HNSW ``ef_search``, IVFFlat ``probes``, and
        ``filter_strategy`` (one of the backend's ``filter_strategies``). Never rebuilds the index."""
        self._check_open()
        if filter_strategy is not None and filter_strategy not in self.filter_strategies:
            raise InvalidArgument(
                f"the {self.backend} backend has no filter strategy {filter_strategy!r}; it has: "
                + (", ".join(self.filter_strategies) or "none"))
        self._query = QueryParams(ef_search=ef_search, probes=probes, filter_strategy=filter_strategy)
        self._apply_query_params()

    def index_size_bytes(self) -> int | None:
        """Size of the vector index on disk or in memory, where the backend tells it."""
        self._check_open()
        return self._index_size()

    @property
    def info(self) -> dict[str, Any]:
        """The collection's own description, kept in the backend with it (vecface writes the embedder
        spec and creation info there: see :mod:`vecface.collection_info`); ``{}`` when none was set."""
        self._check_open()
        return dict(self._read_info() or {})

    def set_info(self, info: Mapping[str, Any]) -> None:
        """Replace the collection's description with ``info`` (a JSON object)."""
        self._check_open()
        if not isinstance(info, Mapping):
            raise InvalidArgument("a collection's info is a mapping (a JSON object)")
        try:
            doc = json.loads(json.dumps(dict(info), allow_nan=False))
        except (TypeError, ValueError) as e:
            raise InvalidArgument(f"a collection's info must be JSON-able: {e}") from None
        self._write_info(doc)

    @classmethod
    def list_collections(cls, **options: Any) -> list[CollectionSummary]:
        """Every collection the backend holds (with these connection options), by name: dimension,
        metric, index, count, size and info, read from the backend itself."""
        out = []
        for name in sorted(cls._collection_names(**options)):
            try:
                store = cls(name, None, create=False, **options)
            except (UnknownCollection, InvalidArgument):
                continue  # dropped meanwhile, not finished being created, or not a vecface name
            with store:
                summary = CollectionSummary(name, store.dim, store.metric.label,
                                            spec_text(store.index.kind, vars(store.index)), None, None, store.info)
                try:
                    summary.count, summary.size_bytes = store.count(), store.storage_bytes()
                except BackendError as e:  # one damaged collection must not hide the others
                    summary.problem = str(e)
                out.append(summary)
        return out

    def drop(self) -> None:
        """Delete the collection and everything in it. The store is closed afterwards."""
        self._check_open()
        try:
            self._drop()
        finally:
            self.close()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._disconnect()

    def __enter__(self) -> "VectorStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"dim={self.dim}, metric={self.metric.label}, index={self._index}"
        return f"<{type(self).__name__} {self.name!r} {state}>"

    # ------------------------------------------------------------------ capabilities / measurement hooks
    def server_versions(self) -> dict[str, str]:
        """Versions of the server side (engine, extension), for reports. In-process: {}."""
        return {}

    def storage_bytes(self) -> int | None:
        """Bytes the collection's rows take in the backend (table, objects, files), where told."""
        return None

    def insert_one_by_one(self, ids: Sequence[str], vectors: np.ndarray, metadata: Sequence[Mapping[str, Any]],
                          tick: Any = None) -> str:
        """The naive baseline the bulk load is compared with: insert rows one at a time into a scratch
        place of the backend (never this collection), calling ``tick(1)`` per row; returns what it did
        in words. Raises UnsupportedOperation where the backend has no per-row path."""
        raise UnsupportedOperation(f"the {self.backend} backend has no one-row-at-a-time insert path")

    def raw_loader(self, batch_size: int) -> Any:
        """The engine's own bulk load, the baseline of the bulk path: a context manager over a scratch
        place shaped like this collection (removed on leaving) whose value is called ``load(ids,
        vectors, metadata or None)`` and names itself in ``load.method``; UnsupportedOperation if none."""
        raise UnsupportedOperation(f"the {self.backend} backend has no raw bulk load baseline")

    def raw_searcher(self, k: int) -> Any:
        """A function ``f(query_vector) -> ids`` that makes the engine's own client call on this
        collection's index with the current query parameters and nothing of vecface around it (no
        validation, no metadata, no Hit objects): the baseline vecface's own cost is measured against."""
        raise UnsupportedOperation(f"the {self.backend} backend has no raw search baseline")

    def check(self, repair: bool = False, progress: Any = None) -> "CheckReport":
        """Compare the stored records with what the vector index returns (every record searchable?);
        with ``repair``, re-index the ones it misses. ``progress(n)`` is called as records are checked.
        Raises UnsupportedOperation where the backend has no such check."""
        raise UnsupportedOperation(f"the {self.backend} backend has no index check")

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosed(f"the store for {self.name!r} is closed")

    def _hit(self, id_: str, distance: float, metadata: dict[str, Any]) -> Hit:
        distance = float(distance)
        return Hit(id_, distance, self.metric.similarity(distance), metadata)

    # ------------------------------------------------------------------ backend hooks
    @abc.abstractmethod
    def _connect(self) -> None: ...

    @abc.abstractmethod
    def _disconnect(self) -> None: ...

    @abc.abstractmethod
    def _describe(self) -> tuple[int, Metric, IndexSpec] | None:
        """(dim, metric, index) of the existing collection, or None if it does not exist."""

    @abc.abstractmethod
    def _create(self) -> None: ...

    @abc.abstractmethod
    def _upsert(self, ids: list[str], vectors: np.ndarray, metadata: list[dict[str, Any]]) -> None: ...

    @abc.abstractmethod
    def _get(self, ids: list[str]) -> list[Record]: ...

    @abc.abstractmethod
    def _delete(self, ids: list[str]) -> int: ...

    @abc.abstractmethod
    def _count(self) -> int: ...

    @abc.abstractmethod
    def _search(self, queries: np.ndarray, k: int, flt: dict[str, list[str]] | None) -> list[list[Hit]]: ...

    @abc.abstractmethod
    def _build_index(self, spec: IndexSpec) -> None: ...

    def _apply_query_params(self) -> None:
        """Backends that set knobs eagerly override this; others read ``self._query`` per search."""

    def _index_size(self) -> int | None:
        return None

    def _ids(self) -> Iterable[str]:
        """Every record id (see :meth:`ids`); backends override this."""
        raise UnsupportedOperation(f"the {self.backend} backend cannot list its record ids")

    def _read_info(self) -> dict[str, Any] | None:
        """The stored description (see :attr:`info`); backends that keep one override this."""
        return None

    def _write_info(self, info: dict[str, Any]) -> None:
        raise UnsupportedOperation(f"the {self.backend} backend keeps no collection description")

    @classmethod
    def _collection_names(cls, **options: Any) -> list[str]:
        """The names of the collections the backend holds (for :meth:`list_collections`)."""
        raise UnsupportedOperation(f"the {cls.backend} backend cannot list its collections")

    @abc.abstractmethod
    def _drop(self) -> None: ...


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    size = max(1, int(size))
    buf: list[Any] = []
    for item in items:
        buf.append(item)
        if len(buf) >= size:
            yield buf
            buf = []
    if buf:
        yield buf
