"""pgvector backend: one table per collection in PostgreSQL with the pgvector extension.

The pieces: ``pg_conn`` (connections, error conversion, read replicas), ``pg_schema`` (names in
vecface's own schema, the catalog, DDL, the old layout's migration, pgvector's limits),
``pg_load`` (binary COPY per batch, merges, parallel streams, the row-by-row baseline) and
``pg_query`` (the search statement, filters, filter strategies, the raw baseline query).

Every method that talks to the server turns psycopg's errors into vecface's in one way
(``converts_errors``): a lost or refused connection is BackendUnavailable, anything the server
refused is BackendError. Indexes are built after the load with ``maintenance_work_mem`` and
parallel maintenance workers set; searches order by the operator of the collection's metric,
which is exactly what its index serves.

With ``read_dsns`` (hot standbys of the primary ``dsn``), writes, index builds and the catalog use
the primary and searches go round-robin over the standbys, falling back to the primary when one
is down; ``read_your_writes=True`` makes a search on a standby wait until it has replayed this
store's last write.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

try:
    import psycopg
    from psycopg import sql
    from psycopg.types.json import Jsonb
except ImportError as e:  # pragma: no cover - depends on the environment
    from vecface.errors import MissingDependency

    raise MissingDependency(getattr(e, "name", None) or "psycopg", extra="pgvector",
                            purpose="the pgvector backend") from e

from vecface.config import redact
from vecface.errors import InvalidArgument
from vecface.store import VectorStore
from vecface.types import Exact, Hit, IndexSpec, IVFFlat, Metric, Record, spec_from_dict, spec_to_dict

from . import pg_load, pg_partial, pg_query, pg_schema, pg_server
from .pg_conn import Router, converts_errors, dsn_or_env, session, versions

#: an upsert of at least this many rows into an empty collection builds the filter btrees after the load
EMPTY_FAST_PATH_MIN_ROWS = 20_000
#: a call of several batches is cut into at least this many batches per load stream (each at least
#: MIN_SPLIT_ROWS rows), so the last batch, sent after everything else is encoded, is a small one:
#: 50k x 512 upserted 10k rows a call in 5,000-row batches over 3 streams, eight rounds interleaved
#: with the raw COPY on a busy 2-core machine, 1.20x raw (0.96-1.43) against 1.08x (0.84-1.26) with 1, 1.13x with 3
BATCHES_PER_STREAM = 2
MIN_SPLIT_ROWS = 500
#: the ``application_name`` of the load streams' connections (as pg_stat_activity shows them)
LOAD_STREAM_APP = "vecface-load-stream"
#: the ``application_name`` of the raw load baseline's connection (:meth:`PgVectorStore.raw_loader`)
RAW_LOAD_APP = "vecface-raw-load"


def default_load_streams() -> int:
    """One load stream per core and one more (at least 3, at most 8): while a stream waits for its
    commit's WAL flush, another sends; measured on 2 cores, 3 streams loaded 1.3-1.6x a single
    connection, 2 streams 1.1-1.4x."""
    return max(3, min(8, (os.cpu_count() or 2) + 1))


def _env_list(name: str) -> list[str]:
    return [d.strip() for d in os.environ.get(name, "").split(",") if d.strip()]


class PgVectorStore(VectorStore):
    backend = "pgvector"
    supported_indexes = ("exact", "hnsw", "ivfflat")
    filter_strategies = pg_query.STRATEGIES
    #: (the QueryParams, the Settings made from them): see _settings
    _settings_for: tuple[Any, pg_query.Settings] | None = None

    def __init__(self, collection: str, dim: int | None = None, metric: Metric | str | None = None, *,
                 create: bool = True, dsn: str | None = None, data_dir: str | os.PathLike[str] | None = None,
                 maintenance_work_mem: str | None = None, read_dsns: Sequence[str] | None = None,
                 read_your_writes: bool = False, load_streams: int | None = None):
        self._dsn_arg = dsn_or_env(dsn)
        self._read_dsns = list(read_dsns) if read_dsns is not None else _env_list("VECFACE_PG_READ_DSNS")
        if self._read_dsns and self._dsn_arg is None:
            raise InvalidArgument("read_dsns are standbys of a primary: give the primary's dsn too")
        self._read_your_writes = bool(read_your_writes)
        self._data_dir = data_dir
        self._mwm = maintenance_work_mem
        self._streams = load_streams if load_streams is not None else default_load_streams()
        if self._streams < 1:
            raise InvalidArgument(f"load_streams must be at least 1, got {load_streams!r}")
        self._router: Router | None = None
        self._w: pg_load.Writer | None = None
        self._stream_conns: list[psycopg.Connection] = []
        super().__init__(collection, dim, metric, create=create)

    # ------------------------------------------------------------------ connection
    @classmethod
    def probe(cls, dsn: str | None = None, data_dir: Any = None, **_: Any) -> str:
        dsn = dsn_or_env(dsn)
        with session(dsn, data_dir) as conn:
            v = converts_errors("probe")(versions)(conn)
        where = "embedded server, started on demand" if dsn is None else redact(dsn)
        return f"PostgreSQL {v['postgresql']} + pgvector {v['pgvector']} ({where})"

    @converts_errors("connect")
    def _connect(self) -> None:
        self._n = pg_schema.Names(self.name)
        self._router = Router(self._dsn_arg, self._data_dir, self._read_dsns, self._read_your_writes)
        try:
            pg_schema.ensure_catalog(self._router.primary)
            self._watch = pg_partial.Watch(self._router.primary, self.name)
        except BaseException:
            self._router.close()
            self._router = None
            raise

    def _disconnect(self) -> None:
        while self._stream_conns:
            self._stream_conns.pop().close()
        if self._router is not None:
            router, self._router = self._router, None
            router.close()

    def _c(self) -> psycopg.Connection:
        assert self._router is not None
        return self._router.primary

    @property
    def _lock(self):
        assert self._router is not None
        return self._router.lock

    # ------------------------------------------------------------------ catalog
    @converts_errors("describe")
    def _describe(self) -> tuple[int, Metric, IndexSpec] | None:
        row = pg_schema.describe(self._c(), self.name)
        if row is None:
            return None
        pg_schema.ensure_columns(self._c(), self._n)
        self._searcher = pg_query.Searcher(self._n, Metric.parse(row[1]).pg_operator)
        self._searcher.read_partials(self._c())
        return int(row[0]), Metric.parse(row[1]), spec_from_dict(row[2])

    @converts_errors("create")
    def _create(self) -> None:
        pg_schema.check_storable(self.dim)
        with self._lock:
            pg_schema.create_collection(self._c(), self._n, self.dim, self.metric.label)
        self._searcher = pg_query.Searcher(self._n, self.metric.pg_operator)

    # ------------------------------------------------------------------ writes
    @converts_errors("upsert")
    def _upsert(self, ids: list[str], vectors: np.ndarray, metadata: list[dict[str, Any]]) -> None:
        with self._lock:
            self._writer().batch(self._c(), pg_load.encode_rows(ids, vectors, metadata))
            self._wrote()

    @converts_errors("upsert")
    def _upsert_all(self, ids: list[str], mat: np.ndarray, metas: list[dict[str, Any]], batch_size: int) -> int:
        """Two batches or more go over ``load_streams`` connections at once, each batch still its own
        transaction (a call is cut into at least BATCHES_PER_STREAM batches per stream, of at least
        MIN_SPLIT_ROWS rows, so every stream works and the batch sent after the last one is encoded
        is small); into an empty collection,
        EMPTY_FAST_PATH_MIN_ROWS rows or more, the filter btrees are dropped first and built once
        afterwards (in bulk; if the load is cut off, the next open of the collection makes them)."""
        with self._lock:
            if self._streams < 2 or len(ids) <= batch_size:
                return super()._upsert_all(ids, mat, metas, batch_size)
            size = min(batch_size, max(MIN_SPLIT_ROWS, -(-len(ids) // (self._streams * BATCHES_PER_STREAM))))
            batches = ((ids[s:s + size], mat[s:s + size], metas[s:s + size]) for s in range(0, len(ids), size))
            rebuild = len(ids) >= EMPTY_FAST_PATH_MIN_ROWS and pg_load.is_empty(self._c(), self._n)
            if rebuild:
                pg_schema.drop_filter_indexes(self._c(), self._n)
            try:
                self._writer().parallel(self._stream_connections(), batches)
            finally:
                if rebuild:
                    pg_schema.create_filter_indexes(self._c(), self._n)
                self._wrote()
        return len(ids)

    def _wrote(self) -> None:
        self._router.wrote()
        self._searcher.forget()  # the filters' row estimates (filter strategy auto) are stale now

    def _writer(self) -> pg_load.Writer:
        if self._w is None:
            self._w = pg_load.Writer(self._n)
        return self._w

    def _stream_connections(self) -> list[psycopg.Connection]:
        """``load_streams`` connections to the primary for the load streams (``application_name``
        LOAD_STREAM_APP), opened at the first load of several batches and kept until the store
        closes; one the server closed in between (a restart, an idle timeout) is opened again.
        They send encoded COPY data only: no types to register."""
        kept = []
        for c in self._stream_conns:
            try:
                c.execute("SELECT 1")
                kept.append(c)
            except psycopg.Error:
                c.close()
        while len(kept) < self._streams:
            kept.append(self._plain_connection(LOAD_STREAM_APP))
        self._stream_conns = kept
        return kept

    def _plain_connection(self, app: str) -> psycopg.Connection:
        """A new autocommit connection to the primary, named ``app`` (as pg_stat_activity shows it),
        for encoded COPY data only: no types registered."""
        return psycopg.connect(self._router.uri, autocommit=True, connect_timeout=10, application_name=app)

    @converts_errors("delete")
    def _delete(self, ids: list[str]) -> int:
        with self._lock:
            cur = self._c().execute(sql.SQL("DELETE FROM {t} WHERE id = ANY(%s)").format(t=self._n.table), (ids,))
            self._wrote()
            return cur.rowcount

    @converts_errors("index build")
    def _build_index(self, spec: IndexSpec) -> None:
        pg_schema.check_indexable(self.dim, spec.kind)
        c = self._c()
        with self._lock:
            c.execute(sql.SQL("DROP INDEX IF EXISTS {i}").format(i=self._n.vector_index))
            if not isinstance(spec, Exact):
                embedded = self._router.embedded
                mwm = self._mwm or (pg_server.default_maintenance_work_mem() if embedded else None)
                if mwm:
                    c.execute("SELECT set_config('maintenance_work_mem', %s, false)", (mwm,))
                if embedded:
                    workers = max(0, min(8, (os.cpu_count() or 2) - 1))
                    c.execute("SELECT set_config('max_parallel_maintenance_workers', %s, false)", (str(workers),))
                rows = self._count() if isinstance(spec, IVFFlat) else 0
                c.execute(sql.SQL("CREATE INDEX {i} ON {t} {m}").format(
                    i=self._n.vector_index_local, t=self._n.table,
                    m=pg_partial.method(spec, self.metric.pg_opclass, rows)))
                c.execute(sql.SQL("ANALYZE {t}").format(t=self._n.table))
            self._searcher.read_partials(c, pg_partial.rebuild_all(c, self._n, spec, self.metric.pg_opclass))
            c.execute(sql.SQL("UPDATE {c} SET index = %s WHERE name = %s").format(c=pg_schema.CATALOG),
                      (Jsonb(spec_to_dict(spec)), self.name))
            self._wrote()

    # ------------------------------------------------------------------ partial vector indexes
    @converts_errors("filter index build")
    def build_filter_index(self, column: str, value: str) -> None:
        """A partial vector index over the rows whose ``column`` (tag, person or camera) is
        ``value``, with the collection's index spec: a search filtered on exactly that value walks a
        graph of those rows only (see :mod:`backends.pg_partial`). Rebuilt by ``build_index``."""
        self._check_open()
        pg_partial.check(column, value, self._index)
        with self._lock:
            pg_partial.build(self._c(), self._n, column, value, self._index, self.metric.pg_opclass)
            self._searcher.read_partials(self._c())

    @converts_errors("filter index drop")
    def drop_filter_index(self, column: str, value: str) -> bool:
        """Drop the partial vector index of ``column = value``; whether there was one."""
        self._check_open()
        with self._lock:
            dropped = pg_partial.drop(self._c(), self._n, column, value)
            self._searcher.read_partials(self._c())
        return dropped

    @property
    def filter_indexes(self) -> list[tuple[str, str]]:
        """(column, value) of every partial vector index this handle searches through: the
        collection's, including those another handle built or dropped (see :meth:`_partials_news`)."""
        self._check_open()
        with self._lock:
            self._partials_news()
        return sorted(self._searcher.partials)

    @converts_errors("reading the filter indexes")
    def _partials_news(self) -> None:
        """Read the partial indexes again if another handle built or dropped one since the last look
        (no round trip when none did; :class:`pg_partial.Watch`)."""
        if self._watch.changed():
            self._searcher.read_partials(self._c())

    @converts_errors("drop")
    def _drop(self) -> None:
        c = self._c()
        with self._lock, c.transaction():
            c.execute(sql.SQL("DROP TABLE IF EXISTS {t}").format(t=self._n.table))
            c.execute(sql.SQL("DELETE FROM {c} WHERE name = %s").format(c=pg_schema.CATALOG), (self.name,))

    # ------------------------------------------------------------------ reads
    @converts_errors("get")
    def _get(self, ids: list[str]) -> list[Record]:
        with self._lock:
            rows = self._c().execute(sql.SQL("SELECT id, embedding, metadata FROM {t} WHERE id = ANY(%s)").format(
                t=self._n.table), (ids,)).fetchall()
        return [Record(i, np.asarray(v.to_numpy(), dtype=np.float32), m) for i, v, m in rows]

    @converts_errors("count")
    def _count(self) -> int:
        with self._lock:
            return int(self._c().execute(sql.SQL("SELECT count(*) FROM {t}").format(t=self._n.table)).fetchone()[0])

    @converts_errors("listing record ids")
    def _ids(self) -> list[str]:
        """Every id, read in pages of 10,000 along the primary key (no big result held by the server)."""
        out: list[str] = []
        page = sql.SQL("SELECT id FROM {t} WHERE id > %s ORDER BY id LIMIT 10000").format(t=self._n.table)
        while True:
            with self._lock:
                rows = self._c().execute(page, (out[-1] if out else "",)).fetchall()
            out.extend(r[0] for r in rows)
            if len(rows) < 10000:
                return out

    def _settings(self) -> pg_query.Settings:
        """The session settings the query parameters ask for (made again only when they change)."""
        q = self._query
        made = self._settings_for
        if made is None or made[0] is not q:
            made = self._settings_for = (q, pg_query.Settings(
                q.ef_search or pg_query.Settings.ef_search, q.probes or pg_query.Settings.probes,
                q.filter_strategy or self.filter_strategies[0]))
        return made[1]

    @converts_errors("query settings")
    def _apply_query_params(self) -> None:
        with self._lock:
            self._router.primary_settings = pg_query.apply(self._c(), self._settings(), self._router.primary_settings)

    @converts_errors("search")
    def _search(self, queries: np.ndarray, k: int, flt: dict[str, Any] | None) -> list[list[Hit]]:
        want = self._settings()
        chosen: list[str] = []

        def prepare(conn: psycopg.Connection, have: Any) -> pg_query.Settings:
            settings, form = self._searcher.plan(conn, flt, want, not isinstance(self._index, Exact))
            chosen[:] = [form]
            return pg_query.apply(conn, settings, have)

        with self._lock:
            if flt and pg_partial.candidate(flt):  # a filter a partial index could serve: another handle may have built one
                self._partials_news()
            rows = self._router.run_read(
                lambda conn: self._searcher.run(conn, queries, k, flt, chosen[0], want.strategy == "auto"),
                prepare)
        # <=> is 1 - cos, <-> Euclidean, <#> the negative inner product: vecface's convention already,
        # and a binary float8 comes back as a float (so no _hit and its float() per row)
        sim = self.metric.similarity
        return [[Hit(i, d, sim(d), m) for i, d, m in per_query] for per_query in rows]

    @converts_errors("index size")
    def _index_size(self) -> int | None:
        if isinstance(self._index, Exact):
            return 0
        with self._lock:
            row = self._c().execute("SELECT pg_relation_size(to_regclass(%s))", (self._n.vector_index_text,)).fetchone()
        return int(row[0]) if row and row[0] is not None else None

    # ------------------------------------------------------------------ capability hooks
    @converts_errors("server versions")
    def server_versions(self) -> dict[str, str]:
        self._check_open()
        with self._lock:
            return versions(self._c())

    @converts_errors("storage size")
    def storage_bytes(self) -> int | None:
        """The table with its TOAST and every index (pg_total_relation_size)."""
        self._check_open()
        with self._lock:
            return int(self._c().execute("SELECT pg_total_relation_size(%s::regclass)",
                                         (self._n.table_text,)).fetchone()[0])

    @converts_errors("reading the collection's info")
    def _read_info(self) -> dict[str, Any] | None:
        with self._lock:
            return pg_schema.read_info(self._c(), self.name)

    @converts_errors("writing the collection's info")
    def _write_info(self, info: dict[str, Any]) -> None:
        with self._lock:
            pg_schema.write_info(self._c(), self.name, info)

    @classmethod
    def _collection_names(cls, dsn: str | None = None, data_dir: Any = None, **_: Any) -> list[str]:
        with session(dsn, data_dir) as conn:
            return converts_errors("listing collections")(pg_schema.collection_names)(conn)

    @converts_errors("row-by-row insert")
    def insert_one_by_one(self, ids: Sequence[str], vectors: np.ndarray, metadata: Sequence[Any],
                          tick: Any = None) -> str:
        self._check_open()
        with self._lock:
            return pg_load.insert_one_by_one(self._c(), self._n, ids, vectors,
                                             [dict(m) for m in metadata], tick)

    @converts_errors("raw load")
    def raw_loader(self, batch_size: int) -> pg_load.RawCopy:
        """The raw COPY baseline on a connection of its own (opened on entering, closed on leaving),
        as a raw client loads: its transactions never hold the handle's primary connection, which
        the handle's searches, writes and filter-index news (:class:`pg_partial.Watch`) share."""
        self._check_open()
        return pg_load.RawCopy(lambda: self._plain_connection(RAW_LOAD_APP), self._n, batch_size)

    @converts_errors("raw search")
    def raw_searcher(self, k: int) -> Any:
        self._check_open()
        with self._lock:
            self._router.primary_settings = pg_query.apply(self._c(), self._settings(), self._router.primary_settings)
            return self._searcher.raw(self._c(), k)

