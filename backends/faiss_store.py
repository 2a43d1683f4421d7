"""FAISS backend: in-process indexes, metadata and vectors in SQLite beside them.

Layout of a collection directory::

    <root>/<collection>/records.sqlite   ids, metadata, vectors (the source of truth)
    <root>/<collection>/index.faiss      the FAISS index (IndexIDMap2 over Flat / HNSWFlat, or IVFFlat)
    <root>/<collection>/index.json       which SQLite generation the index file matches

String ids map to SQLite row ids (int64, never reused). Every write commits to SQLite in one
transaction per batch and bumps a generation counter; the index file is written on ``close()``
and ``flush()``. If the process dies before that, the next open sees the generations differ and
rebuilds the index from SQLite, so nothing committed is lost.

Deletes (and upserts that replace a vector): Flat and IVFFlat remove the vector from the index
(``remove_ids``). HNSW graphs cannot remove nodes, so the old node is tombstoned and excluded
from every search with an ID selector; the graph is rebuilt on ``flush``/``close`` once
tombstones pass 20% of its nodes.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

import numpy as np

try:
    import faiss
except ImportError as e:  # pragma: no cover - depends on the environment
    from vecface.errors import MissingDependency

    raise MissingDependency("faiss-cpu", extra="faiss", purpose="the faiss backend") from e

from vecface.config import data_dir
from vecface.errors import InvalidArgument
from vecface.store import VectorStore
from vecface.types import (
    DEFAULT_EF_SEARCH,
    DEFAULT_PROBES,
    HNSW,
    Exact,
    Hit,
    IndexSpec,
    IVFFlat,
    Metric,
    Record,
    spec_from_dict,
    spec_to_dict,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS config (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    rid INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    tag TEXT,
    path TEXT,
    metadata TEXT NOT NULL,
    vector BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS records_tag ON records(tag);
CREATE INDEX IF NOT EXISTS records_path ON records(path);
"""

_COMPACT_FRACTION = 0.2
# a filter that keeps at most this many rows is answered by an exact scan of those rows: graph and
# inverted-list searches that skip most of what they visit return too few hits (Weaviate's
# flatSearchCutoff works the same way)
_FLAT_FILTER_CUTOFF = 20_000
# batches of at most this many queries are searched on the calling thread alone
_SERIAL_QUERIES = 4
_IVF_TRAIN_PER_LIST = 256


class FaissStore(VectorStore):
    backend = "faiss"
    supported_indexes = ("exact", "hnsw", "ivfflat")

    def __init__(self, collection: str, dim: int | None = None, metric: Metric | str | None = None, *,
                 create: bool = True, path: str | os.PathLike[str] | None = None):
        self._root = Path(path).expanduser() if path else data_dir() / "faiss"
        self._lock = threading.RLock()
        self._db: sqlite3.Connection | None = None
        self._faiss: Any = None
        self._tombstones: set[int] = set()
        self._ivf_lists: int | None = None
        super().__init__(collection, dim, metric, create=create)

    @classmethod
    def probe(cls, **options: Any) -> str:
        return f"faiss {faiss.__version__}, in-process (threads: {faiss.omp_get_max_threads()})"

    # ------------------------------------------------------------------ lifecycle
    @property
    def directory(self) -> Path:
        return self._root / self.name

    def _connect(self) -> None:
        pass  # the directory is opened in _describe / _create, once the name is known

    def _open_db(self, create: bool) -> bool:
        db_path = self.directory / "records.sqlite"
        if not db_path.exists() and not create:
            return False
        self.directory.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(db_path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        return True

    def _config(self, key: str) -> str | None:
        assert self._db is not None
        row = self._db.execute("SELECT value FROM config WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def _set_config(self, key: str, value: str) -> None:
        assert self._db is not None
        self._db.execute("INSERT INTO config(key, value) VALUES (?, ?) "
                         "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, value))

    def _describe(self) -> tuple[int, Metric, IndexSpec] | None:
        if not (self.directory / "records.sqlite").exists():
            return None
        self._open_db(create=False)
        dim = self._config("dim")
        if dim is None:
            return None
        metric = Metric.parse(self._config("metric") or "cosine")
        spec = spec_from_dict(json.loads(self._config("index") or '{"kind": "exact"}'))
        self.dim, self.metric = int(dim), metric
        self._load_index(spec)
        return int(dim), metric, spec

    def _create(self) -> None:
        if self._db is None:
            self._open_db(create=True)
        assert self._db is not None
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._set_config("dim", str(self.dim))
            self._set_config("metric", self.metric.label)
            self._set_config("index", json.dumps(spec_to_dict(Exact())))
            self._set_config("generation", "0")
            self._db.execute("COMMIT")
        self._faiss = self._new_index(Exact(), 0)

    def _disconnect(self) -> None:
        if self._db is not None:
            try:
                if self._faiss is not None:
                    self._save_index()
            finally:
                self._db.close()
                self._db = None
                self._faiss = None

    def flush(self) -> None:
        """Write the index file now (also done by close)."""
        self._check_open()
        self._save_index()

    # ------------------------------------------------------------------ index file
    def _generation(self) -> int:
        return int(self._config("generation") or 0)

    def _bump_generation(self) -> None:
        assert self._db is not None
        self._db.execute("UPDATE config SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'")

    def _save_index(self) -> None:
        with self._lock:
            if self._tombstones and len(self._tombstones) > _COMPACT_FRACTION * max(1, self._faiss.ntotal):
                self._rebuild(self._index)
            tmp = self.directory / "index.faiss.tmp"
            faiss.write_index(self._faiss, str(tmp))
            os.replace(tmp, self.directory / "index.faiss")
            meta = {"generation": self._generation(), "tombstones": sorted(self._tombstones),
                    "ivf_lists": self._ivf_lists}
            tmpj = self.directory / "index.json.tmp"
            tmpj.write_text(json.dumps(meta))
            os.replace(tmpj, self.directory / "index.json")

    def _load_index(self, spec: IndexSpec) -> None:
        self._index = spec
        meta_path, idx_path = self.directory / "index.json", self.directory / "index.faiss"
        if meta_path.exists() and idx_path.exists():
            meta = json.loads(meta_path.read_text())
            if meta.get("generation") == self._generation():
                self._faiss = faiss.read_index(str(idx_path))
                self._tombstones = set(meta.get("tombstones") or [])
                self._ivf_lists = meta.get("ivf_lists")
                return
        # no index file, or it is older than the committed data: rebuild from SQLite
        self._rebuild(spec)

    def _new_index(self, spec: IndexSpec, rows: int) -> Any:
        d, m = self.dim, self.metric.faiss_metric
        if isinstance(spec, HNSW):
            inner = faiss.IndexHNSWFlat(d, spec.m, m)
            inner.hnsw.efConstruction = spec.ef_construction
        elif isinstance(spec, IVFFlat):
            lists = spec.resolve_lists(rows)
            if rows < 1:
                raise InvalidArgument("an IVFFlat index is trained on the data: load rows before building it")
            lists = min(lists, rows)
            self._ivf_lists = lists
            # IVF lists store the caller's ids natively (and remove them natively): no IDMap
            ivf = faiss.IndexIVFFlat(faiss.IndexFlat(d, m), d, lists, m)
            return ivf
        else:
            inner = faiss.IndexFlat(d, m)
        return faiss.IndexIDMap2(inner)

    def _iter_vectors(self, batch: int = 50_000):
        assert self._db is not None
        last = -1
        while True:
            rows = self._db.execute("SELECT rid, vector FROM records WHERE rid > ? ORDER BY rid LIMIT ?",
                                    (last, batch)).fetchall()
            if not rows:
                return
            rids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            vecs = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), self.dim)
            yield rids, vecs
            last = int(rids[-1])

    def _rebuild(self, spec: IndexSpec) -> None:
        with self._lock:
            rows = self._count()
            index = self._new_index(spec, rows)
            if isinstance(spec, IVFFlat):
                n_train = min(rows, self._ivf_lists * _IVF_TRAIN_PER_LIST)
                sample = self._sample(n_train)
                index.train(sample)
            for rids, vecs in self._iter_vectors():
                index.add_with_ids(vecs, rids)
            self._faiss = index
            self._tombstones = set()
            self._ivf_lists = self._ivf_lists if isinstance(spec, IVFFlat) else None

    def _sample(self, n: int) -> np.ndarray:
        assert self._db is not None
        # a deterministic, evenly spread sample (every step-th row), so builds are reproducible
        total = self._count()
        step = max(1, total // max(1, n))
        rows = self._db.execute("SELECT vector FROM (SELECT vector, row_number() OVER (ORDER BY rid) AS rn "
                                "FROM records) WHERE (rn - 1) % ? = 0 LIMIT ?", (step, n)).fetchall()
        return np.frombuffer(b"".join(r[0] for r in rows), dtype=np.float32).reshape(len(rows), self.dim)

    # ------------------------------------------------------------------ writes
    def _upsert(self, ids: list[str], vectors: np.ndarray, metadata: list[dict[str, Any]]) -> None:
        assert self._db is not None
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                old = self._rids_for(ids)
                if old:
                    db.executemany("DELETE FROM records WHERE rid = ?", [(r,) for r in old.values()])
                db.executemany(
                    "INSERT INTO records(id, tag, path, metadata, vector) VALUES (?, ?, ?, ?, ?)",
                    [(i, m.get("tag"), m.get("path"), json.dumps(m), v.tobytes())
                     for i, v, m in zip(ids, vectors, metadata)])
                new = self._rids_for(ids)
                self._bump_generation()
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            self._forget(list(old.values()))
            rids = np.array([new[i] for i in ids], dtype=np.int64)
            self._faiss.add_with_ids(vectors, rids)

    def _forget(self, rids: list[int]) -> None:
        """Take rids out of the index (remove_ids) or tombstone them (HNSW)."""
        if not rids:
            return
        if isinstance(self._index, HNSW):
            self._tombstones.update(rids)
        else:
            self._faiss.remove_ids(np.array(rids, dtype=np.int64))

    def _rids_for(self, ids: list[str]) -> dict[str, int]:
        assert self._db is not None
        out: dict[str, int] = {}
        for start in range(0, len(ids), 900):
            chunk = ids[start:start + 900]
            q = f"SELECT id, rid FROM records WHERE id IN ({','.join('?' * len(chunk))})"
            out.update(dict(self._db.execute(q, chunk).fetchall()))
        return out

    def _delete(self, ids: list[str]) -> int:
        assert self._db is not None
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                old = self._rids_for(ids)
                self._db.executemany("DELETE FROM records WHERE rid = ?", [(r,) for r in old.values()])
                if old:
                    self._bump_generation()
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._forget(list(old.values()))
            return len(old)

    def _build_index(self, spec: IndexSpec) -> None:
        assert self._db is not None
        with self._lock:
            self._rebuild(spec)
            self._db.execute("BEGIN IMMEDIATE")
            self._set_config("index", json.dumps(spec_to_dict(spec)))
            self._db.execute("COMMIT")
            self._index = spec
            self._save_index()

    def _drop(self) -> None:
        import shutil

        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
            self._faiss = None
            shutil.rmtree(self.directory, ignore_errors=True)

    # ------------------------------------------------------------------ reads
    def _get(self, ids: list[str]) -> list[Record]:
        assert self._db is not None
        out = []
        for start in range(0, len(ids), 900):
            chunk = ids[start:start + 900]
            q = f"SELECT id, metadata, vector FROM records WHERE id IN ({','.join('?' * len(chunk))})"
            for id_, meta, vec in self._db.execute(q, chunk):
                out.append(Record(id_, np.frombuffer(vec, dtype=np.float32).copy(), json.loads(meta)))
        return out

    def _count(self) -> int:
        assert self._db is not None
        return int(self._db.execute("SELECT count(*) FROM records").fetchone()[0])

    def _selector(self, flt: dict[str, list[str]] | None) -> Any:
        if flt:
            where = " AND ".join(f"{col} IN ({','.join('?' * len(vals))})" for col, vals in flt.items())
            args = [v for vals in flt.values() for v in vals]
            with self._lock:
                rids = np.array([r[0] for r in self._db.execute(f"SELECT rid FROM records WHERE {where}", args)],
                                dtype=np.int64)
            return (faiss.IDSelectorBatch(rids), rids), len(rids)
        if self._tombstones:
            keep_out = faiss.IDSelectorBatch(np.array(sorted(self._tombstones), dtype=np.int64))
            return (faiss.IDSelectorNot(keep_out), keep_out), None
        return None, None

    def _params(self, sel: Any) -> Any:
        if isinstance(self._index, HNSW):
            p = faiss.SearchParametersHNSW()
            p.efSearch = self._query.ef_search or DEFAULT_EF_SEARCH
        elif isinstance(self._index, IVFFlat):
            p = faiss.SearchParametersIVF()
            p.nprobe = self._query.probes or DEFAULT_PROBES
        else:
            if sel is None:
                return None
            p = faiss.SearchParameters()
        if sel is not None:
            p.sel = sel
        return p

    def _search(self, queries: np.ndarray, k: int, flt: dict[str, list[str]] | None) -> list[list[Hit]]:
        assert self._db is not None
        keep, allowed = self._selector(flt)  # keep: the selector and what it refers to, alive
        sel = keep[0] if keep else None
        if allowed == 0 or self._faiss.ntotal == 0:
            return [[] for _ in range(len(queries))]
        if allowed is not None and allowed <= _FLAT_FILTER_CUTOFF and not isinstance(self._index, Exact):
            dist, labels = self._exact_subset(queries, k, keep[1])
        else:
            params = self._params(sel)
            if isinstance(self._index, HNSW) and params is not None:
                # HNSW returns at most ef_search results; widen it so k results can come back
                params.efSearch = max(params.efSearch, k)
            if len(queries) <= _SERIAL_QUERIES:
                # OpenMP start-up costs more than one small search: run it on this thread only
                # (omp_set_num_threads sets the calling thread's own setting)
                threads = faiss.omp_get_max_threads()
                faiss.omp_set_num_threads(1)
                try:
                    dist, labels = self._faiss.search(queries, k, params=params)
                finally:
                    faiss.omp_set_num_threads(threads)
            else:
                dist, labels = self._faiss.search(queries, k, params=params)
        if self.metric is Metric.L2:
            dist = np.sqrt(np.maximum(dist, 0))
        elif self.metric is Metric.COSINE:
            dist = 1.0 - dist
        else:
            dist = -dist
        wanted = sorted({int(r) for r in labels.ravel() if r >= 0})
        meta: dict[int, tuple[str, dict[str, Any]]] = {}
        with self._lock:
            for start in range(0, len(wanted), 900):
                chunk = wanted[start:start + 900]
                q = f"SELECT rid, id, metadata FROM records WHERE rid IN ({','.join('?' * len(chunk))})"
                for rid, id_, m in self._db.execute(q, chunk):
                    meta[rid] = (id_, json.loads(m))
        out = []
        for drow, lrow in zip(dist, labels):
            hits = []
            for d, r in zip(drow, lrow):
                if r >= 0 and int(r) in meta:
                    id_, m = meta[int(r)]
                    hits.append(self._hit(id_, float(d), m))
            out.append(hits)
        return out

    def _exact_subset(self, queries: np.ndarray, k: int, rids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact scan over the rows ``rids``, in FAISS's raw score convention."""
        assert self._db is not None
        with self._lock:
            vecs, found = [], []
            for start in range(0, len(rids), 900):
                chunk = [int(r) for r in rids[start:start + 900]]
                q = f"SELECT rid, vector FROM records WHERE rid IN ({','.join('?' * len(chunk))})"
                for rid, blob in self._db.execute(q, chunk):
                    found.append(rid)
                    vecs.append(np.frombuffer(blob, dtype=np.float32))
        sub = faiss.IndexIDMap2(faiss.IndexFlat(self.dim, self.metric.faiss_metric))
        sub.add_with_ids(np.vstack(vecs), np.array(found, dtype=np.int64))
        return sub.search(queries, k)

    def _index_size(self) -> int | None:
        with self._lock:
            return int(faiss.serialize_index(self._faiss).nbytes)
