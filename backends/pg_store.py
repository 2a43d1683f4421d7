"""pgvector backend: one table per collection in PostgreSQL with the pgvector extension.

Table ``vecface_<name>``: ``id text primary key, embedding vector(d), tag text, path text,
metadata jsonb``; a btree on ``tag`` for filters. A catalog table ``vecface_collections`` keeps
each collection's dimension, metric and index.

Writes: each batch is one transaction. A batch of new ids goes straight into the table with
``COPY ... FORMAT BINARY``; a batch that holds an existing id is sent by binary COPY into a
temporary staging table and merged with ``INSERT ... ON CONFLICT (id) DO UPDATE``. Either way a
failed batch never touches what earlier batches stored. Indexes are built after the load with
``maintenance_work_mem`` and parallel maintenance workers set. Searches ``ORDER BY embedding
<op> query`` with the operator of the collection's metric, which is exactly what its index
serves; ``hnsw.ef_search`` / ``ivfflat.probes`` are set per query group, and filtered searches
use pgvector 0.8's iterative index scans (results re-sorted by exact distance).
"""

from __future__ import annotations

import os
import threading
from typing import Any

import numpy as np

try:
    import psycopg
    from psycopg import sql
    from psycopg.types.json import Jsonb
    from pgvector.psycopg import register_vector
except ImportError as e:  # pragma: no cover - depends on the environment
    from vecface.errors import MissingDependency

    raise MissingDependency(getattr(e, "name", None) or "psycopg", extra="pgvector",
                            purpose="the pgvector backend") from e

from vecface.config import redact
from vecface.errors import BackendError, BackendUnavailable
from vecface.store import VectorStore
from vecface.types import DEFAULT_EF_SEARCH, DEFAULT_PROBES, HNSW, Exact, Hit, IndexSpec, IVFFlat, Metric, Record, spec_from_dict, spec_to_dict

from . import pg_server

CATALOG = "vecface_collections"


class PgVectorStore(VectorStore):
    backend = "pgvector"
    supported_indexes = ("exact", "hnsw", "ivfflat")

    def __init__(self, collection: str, dim: int | None = None, metric: Metric | str | None = None, *,
                 create: bool = True, dsn: str | None = None, data_dir: str | os.PathLike[str] | None = None,
                 maintenance_work_mem: str | None = None):
        self._dsn_arg = dsn or os.environ.get("VECFACE_PG_DSN") or None
        self._data_dir = data_dir
        self._embedded = self._dsn_arg is None
        self._mwm = maintenance_work_mem
        self._conn: psycopg.Connection | None = None
        self._lock = threading.RLock()
        self._applied: tuple[int | None, int | None] | None = None
        self._direct_copy = True
        super().__init__(collection, dim, metric, create=create)

    # ------------------------------------------------------------------ connection
    @classmethod
    def _open_connection(cls, dsn: str | None, data_dir: Any) -> tuple[psycopg.Connection, bool]:
        embedded = dsn is None
        uri = pg_server.acquire(data_dir) if embedded else dsn
        try:
            conn = psycopg.connect(uri, autocommit=True, connect_timeout=10)
        except psycopg.Error as e:
            if embedded:
                pg_server.release(data_dir)
            where = "the embedded PostgreSQL" if embedded else f"PostgreSQL at {redact(uri)}"
            raise BackendUnavailable(f"cannot connect to {where}: {redact(str(e)).strip()}") from None
        try:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            register_vector(conn)
        except psycopg.Error as e:
            conn.close()
            if embedded:
                pg_server.release(data_dir)
            raise BackendUnavailable(
                f"the pgvector extension is not available on that server: {redact(str(e)).strip()}") from None
        return conn, embedded

    @classmethod
    def probe(cls, dsn: str | None = None, data_dir: Any = None, **_: Any) -> str:
        dsn = dsn or os.environ.get("VECFACE_PG_DSN") or None
        conn, embedded = cls._open_connection(dsn, data_dir)
        try:
            pg = conn.execute("SHOW server_version").fetchone()[0]
            vec = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()[0]
        finally:
            conn.close()
            if embedded:
                pg_server.release(data_dir)
        where = "embedded server, started on demand" if embedded else redact(dsn)
        return f"PostgreSQL {pg.split()[0]} + pgvector {vec} ({where})"

    def server_versions(self) -> dict[str, str]:
        c = self._c()
        return {"postgresql": c.execute("SHOW server_version").fetchone()[0].split()[0],
                "pgvector": c.execute("SELECT extversion FROM pg_extension WHERE extname='vector'").fetchone()[0]}

    def _connect(self) -> None:
        self._conn, self._embedded = self._open_connection(self._dsn_arg, self._data_dir)
        self._conn.execute(
            f"CREATE TABLE IF NOT EXISTS {CATALOG} (name text PRIMARY KEY, dim int NOT NULL, "
            "metric text NOT NULL, index jsonb NOT NULL)")
        # let index scans continue past ef_search / probes when a filter removes candidates
        self._conn.execute("SET hnsw.iterative_scan = relaxed_order")
        self._conn.execute("SET ivfflat.iterative_scan = relaxed_order")

    def _disconnect(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None
                if self._embedded:
                    pg_server.release(self._data_dir)

    def _c(self) -> psycopg.Connection:
        assert self._conn is not None
        return self._conn

    # ------------------------------------------------------------------ identifiers
    @property
    def _table(self) -> sql.Identifier:
        return sql.Identifier(f"vecface_{self.name}")

    @property
    def _stage(self) -> sql.Identifier:
        return sql.Identifier(f"vecface_stage_{self.name}")

    @property
    def _index_name(self) -> str:
        return f"vecface_{self.name}_embedding_idx"

    # ------------------------------------------------------------------ catalog
    def _describe(self) -> tuple[int, Metric, IndexSpec] | None:
        row = self._c().execute(f"SELECT dim, metric, index FROM {CATALOG} WHERE name = %s",
                                (self.name,)).fetchone()
        if row is None:
            return None
        return int(row[0]), Metric.parse(row[1]), spec_from_dict(row[2])

    def _create(self) -> None:
        c = self._c()
        with self._lock, c.transaction():
            c.execute(sql.SQL(
                "CREATE TABLE IF NOT EXISTS {t} (id text PRIMARY KEY, embedding vector({d}) NOT NULL, "
                "tag text, path text, metadata jsonb NOT NULL DEFAULT '{{}}')"
            ).format(t=self._table, d=sql.Literal(self.dim)))
            c.execute(sql.SQL("CREATE INDEX IF NOT EXISTS {i} ON {t} (tag)").format(
                i=sql.Identifier(f"vecface_{self.name}_tag_idx"), t=self._table))
            c.execute(f"INSERT INTO {CATALOG} (name, dim, metric, index) VALUES (%s, %s, %s, %s) "
                      "ON CONFLICT (name) DO NOTHING",
                      (self.name, self.dim, self.metric.label, Jsonb({"kind": "exact"})))

    # ------------------------------------------------------------------ writes
    def _ensure_stage(self) -> None:
        self._c().execute(sql.SQL(
            "CREATE TEMP TABLE IF NOT EXISTS {s} (id text, embedding vector({d}), tag text, path text, "
            "metadata jsonb) ON COMMIT DELETE ROWS").format(s=self._stage, d=sql.Literal(self.dim)))

    def _copy_rows(self, target: sql.Identifier, ids: list[str], vectors: np.ndarray,
                   metadata: list[dict[str, Any]]) -> None:
        with self._c().cursor().copy(sql.SQL(
                "COPY {t} (id, embedding, tag, path, metadata) FROM STDIN WITH (FORMAT BINARY)"
        ).format(t=target)) as cp:
            cp.set_types(["text", "vector", "text", "text", "jsonb"])
            for i, v, m in zip(ids, vectors, metadata):
                cp.write_row((i, v, m.get("tag"), m.get("path"), Jsonb(m)))

    def _upsert(self, ids: list[str], vectors: np.ndarray, metadata: list[dict[str, Any]]) -> None:
        """One batch, one transaction. New ids are COPYed straight into the table (the fast path);
        if any id already exists, that attempt is rolled back to a savepoint and the batch goes
        through the staging table and INSERT ... ON CONFLICT DO UPDATE instead. After one
        conflict this store uses the staging path for the rest of its life."""
        c = self._c()
        with self._lock:
            try:
                with c.transaction():
                    if self._direct_copy:
                        try:
                            with c.transaction():  # a savepoint
                                self._copy_rows(self._table, ids, vectors, metadata)
                            return
                        except psycopg.errors.UniqueViolation:
                            self._direct_copy = False
                    self._ensure_stage()
                    self._copy_rows(self._stage, ids, vectors, metadata)
                    c.execute(sql.SQL(
                        "INSERT INTO {t} (id, embedding, tag, path, metadata) "
                        "SELECT id, embedding, tag, path, metadata FROM {s} "
                        "ON CONFLICT (id) DO UPDATE SET embedding = EXCLUDED.embedding, tag = EXCLUDED.tag, "
                        "path = EXCLUDED.path, metadata = EXCLUDED.metadata"
                    ).format(t=self._table, s=self._stage))
            except psycopg.Error as e:
                raise BackendError(f"pgvector upsert of {len(ids)} rows failed: {redact(str(e)).strip()}") from e

    def _delete(self, ids: list[str]) -> int:
        with self._lock:
            cur = self._c().execute(sql.SQL("DELETE FROM {t} WHERE id = ANY(%s)").format(t=self._table), (ids,))
            return cur.rowcount

    def _build_index(self, spec: IndexSpec) -> None:
        c = self._c()
        with self._lock:
            c.execute(sql.SQL("DROP INDEX IF EXISTS {i}").format(i=sql.Identifier(self._index_name)))
            if not isinstance(spec, Exact):
                mwm = self._mwm or (pg_server.default_maintenance_work_mem() if self._embedded else None)
                if mwm:
                    c.execute("SELECT set_config('maintenance_work_mem', %s, false)", (mwm,))
                workers = max(0, min(8, (os.cpu_count() or 2) - 1)) if self._embedded else None
                if workers is not None:
                    c.execute("SELECT set_config('max_parallel_maintenance_workers', %s, false)", (str(workers),))
                opclass = sql.SQL(self.metric.pg_opclass)
                if isinstance(spec, HNSW):
                    method = sql.SQL("hnsw")
                    with_ = sql.SQL("m = {m}, ef_construction = {e}").format(
                        m=sql.Literal(spec.m), e=sql.Literal(spec.ef_construction))
                else:
                    assert isinstance(spec, IVFFlat)
                    lists = spec.resolve_lists(self._count())
                    method = sql.SQL("ivfflat")
                    with_ = sql.SQL("lists = {n}").format(n=sql.Literal(lists))
                try:
                    c.execute(sql.SQL("CREATE INDEX {i} ON {t} USING {m} (embedding {o}) WITH ({w})").format(
                        i=sql.Identifier(self._index_name), t=self._table, m=method, o=opclass, w=with_))
                except psycopg.Error as e:
                    raise BackendError(f"building the {spec.kind} index failed: {redact(str(e)).strip()}") from e
                c.execute("ANALYZE " + f"vecface_{self.name}")
            c.execute(f"UPDATE {CATALOG} SET index = %s WHERE name = %s", (Jsonb(spec_to_dict(spec)), self.name))

    def _drop(self) -> None:
        c = self._c()
        with self._lock, c.transaction():
            c.execute(sql.SQL("DROP TABLE IF EXISTS {t}").format(t=self._table))
            c.execute(f"DELETE FROM {CATALOG} WHERE name = %s", (self.name,))

    # ------------------------------------------------------------------ reads
    def _get(self, ids: list[str]) -> list[Record]:
        with self._lock:
            rows = self._c().execute(sql.SQL("SELECT id, embedding, metadata FROM {t} WHERE id = ANY(%s)").format(
                t=self._table), (ids,)).fetchall()
        return [Record(i, np.asarray(v.to_numpy(), dtype=np.float32), m) for i, v, m in rows]

    def _count(self) -> int:
        with self._lock:
            return int(self._c().execute(sql.SQL("SELECT count(*) FROM {t}").format(t=self._table)).fetchone()[0])

    def _apply_query_params(self) -> None:
        want = (self._query.ef_search or DEFAULT_EF_SEARCH, self._query.probes or DEFAULT_PROBES)
        if want != self._applied:
            c = self._c()
            c.execute("SELECT set_config('hnsw.ef_search', %s, false)", (str(want[0]),))
            c.execute("SELECT set_config('ivfflat.probes', %s, false)", (str(want[1]),))
            self._applied = want

    def _search(self, queries: np.ndarray, k: int, flt: dict[str, list[str]] | None) -> list[list[Hit]]:
        op = sql.SQL(self.metric.pg_operator)
        where = sql.SQL("")
        args: list[Any] = []
        if flt:
            where = sql.SQL(" WHERE ") + sql.SQL(" AND ").join(
                sql.SQL("{col} = ANY(%s)").format(col=sql.Identifier(col)) for col in flt)
            args = [list(vals) for vals in flt.values()]
        query = sql.SQL("SELECT id, embedding {op} %s AS d, metadata FROM {t}{w} ORDER BY embedding {op} %s LIMIT {k}").format(
            op=op, t=self._table, w=where, k=sql.Literal(k))
        out = []
        with self._lock:
            self._apply_query_params()
            c = self._c()
            try:
                for q in queries:
                    # positional order: select-list vector, filter values, order-by vector
                    rows = c.execute(query, [q, *args, q], binary=True).fetchall()
                    # <=> is 1 - cos, <-> Euclidean, <#> the negative inner product: vecface's
                    # own distance convention already
                    hits = [self._hit(i, d, m) for i, d, m in rows]
                    if flt:
                        hits.sort(key=lambda h: h.distance)  # iterative scans may be relaxed-order
                    out.append(hits)
            except psycopg.Error as e:
                raise BackendError(f"pgvector search failed: {redact(str(e)).strip()}") from e
        return out

    def _index_size(self) -> int | None:
        if isinstance(self._index, Exact):
            return 0
        with self._lock:
            row = self._c().execute("SELECT pg_relation_size(to_regclass(%s))", (self._index_name,)).fetchone()
        return int(row[0]) if row and row[0] is not None else None

    def table_size_bytes(self) -> int:
        with self._lock:
            return int(self._c().execute("SELECT pg_total_relation_size(to_regclass(%s))",
                                         (f"vecface_{self.name}",)).fetchone()[0])
