"""The ingest manifest: what ingest stored, per (backend, collection).

A small SQLite database in vecface's data directory (``ingest.sqlite``). It remembers the embedder
a collection was built with (so ``vecface search`` needs only ``--backend`` and ``--collection``)
and, for each path, the content hash, tag and record ids stored for it. The vector stores only
search and fetch by id; they have no cheap "list ids by path", so this is where ingest looks up
what is already stored. :func:`check_embedder` records a collection's embedder at first ingest and
refuses another one later.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from .collection_info import record as record_in_store
from .config import data_dir
from .embedders import Embedder, EmbedderSpec
from .errors import InvalidArgument
from .store import VectorStore

MANIFEST_NAME = "ingest.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS collections (
    backend TEXT NOT NULL, collection TEXT NOT NULL, embedder TEXT NOT NULL, dim INTEGER NOT NULL,
    created TEXT NOT NULL, PRIMARY KEY (backend, collection));
CREATE TABLE IF NOT EXISTS files (
    backend TEXT NOT NULL, collection TEXT NOT NULL, path TEXT NOT NULL, sha256 TEXT NOT NULL,
    tag TEXT, ids TEXT NOT NULL, updated TEXT NOT NULL, PRIMARY KEY (backend, collection, path));
"""


def connect(path: Path, schema: str) -> sqlite3.Connection:
    """A connection to the SQLite file at ``path`` as vecface's tables in the data directory use it:
    autocommit (transactions are explicit), WAL, durable commits, usable from several threads
    (callers hold a lock), ``schema`` created if missing."""
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.executescript(schema)
    return db


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class FileState:
    sha256: str
    tag: str | None
    ids: list[str]


class ManifestFile:
    """One of vecface's tables in the manifest's SQLite file (``MANIFEST_NAME`` in the data directory
    unless ``path`` is given): opened with :func:`connect`, one lock for its writers, a context manager."""

    SCHEMA = ""

    def __init__(self, path: str | os.PathLike[str] | None = None):
        self.path = Path(path) if path else data_dir() / MANIFEST_NAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = connect(self.path, self.SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        self._db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Manifest(ManifestFile):
    """What ingest stored, per (backend, collection): the embedder and each path's hash and ids."""

    SCHEMA = _SCHEMA

    # collections
    def embedder(self, backend: str, collection: str) -> tuple[EmbedderSpec, int] | None:
        row = self._db.execute("SELECT embedder, dim FROM collections WHERE backend=? AND collection=?",
                               (backend, collection)).fetchone()
        return (EmbedderSpec.from_json(row[0]), int(row[1])) if row else None

    def set_embedder(self, backend: str, collection: str, spec: EmbedderSpec, dim: int) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO collections (backend, collection, embedder, dim, created) VALUES (?,?,?,?,?) "
                "ON CONFLICT (backend, collection) DO UPDATE SET embedder=excluded.embedder, dim=excluded.dim",
                (backend, collection, spec.to_json(), dim, _now()))

    def collections(self, backend: str | None = None) -> list[tuple[str, str, EmbedderSpec, int, str]]:
        """(backend, collection, embedder spec, dim, created) of every ingested collection, by name."""
        rows = self._db.execute("SELECT backend, collection, embedder, dim, created FROM collections "
                                "WHERE ? IS NULL OR backend=? ORDER BY backend, collection", (backend, backend))
        return [(b, c, EmbedderSpec.from_json(e), int(d), t) for b, c, e, d, t in rows]

    def forget_collection(self, backend: str, collection: str) -> None:
        with self._lock:
            self._db.execute("BEGIN")
            self._db.execute("DELETE FROM files WHERE backend=? AND collection=?", (backend, collection))
            self._db.execute("DELETE FROM collections WHERE backend=? AND collection=?", (backend, collection))
            self._db.execute("COMMIT")

    # files
    def files(self, backend: str, collection: str) -> dict[str, FileState]:
        rows = self._db.execute("SELECT path, sha256, tag, ids FROM files WHERE backend=? AND collection=?",
                                (backend, collection))
        return {p: FileState(h, t, json.loads(ids)) for p, h, t, ids in rows}

    def record_count(self, backend: str, collection: str) -> int:
        return sum(len(s.ids) for s in self.files(backend, collection).values())

    def commit(self, backend: str, collection: str, done: dict[str, FileState], forget: list[str] = ()) -> None:
        """Mark files done (after their records are committed to the store), in one transaction."""
        now = _now()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for p in forget:
                    self._db.execute("DELETE FROM files WHERE backend=? AND collection=? AND path=?",
                                     (backend, collection, p))
                self._db.executemany(
                    "INSERT INTO files (backend, collection, path, sha256, tag, ids, updated) VALUES (?,?,?,?,?,?,?) "
                    "ON CONFLICT (backend, collection, path) DO UPDATE SET sha256=excluded.sha256, "
                    "tag=excluded.tag, ids=excluded.ids, updated=excluded.updated",
                    [(backend, collection, p, s.sha256, s.tag, json.dumps(s.ids), now) for p, s in done.items()])
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise


def check_spec(manifest: Manifest, backend: str, collection: str, spec: EmbedderSpec) -> None:
    """Refuse an embedder (kind or model) other than the one ``collection`` was ingested with."""
    known = manifest.embedder(backend, collection)
    if known is not None and known[0].identity() != spec.identity():
        was = known[0]
        raise InvalidArgument(
            f"collection {collection!r} was ingested with --embedder {was.kind}"
            + (f" --model {was.model}" if was.model else "")
            + f"; this run asks for {spec.kind}" + (f" --model {spec.model}" if spec.model else "")
            + ": use another --collection for another embedder")


def check_embedder(manifest: Manifest, store: VectorStore, embedder: Embedder) -> None:
    """Record the collection's embedder at first ingest; refuse a different one later."""
    spec = embedder.spec()
    check_spec(manifest, store.backend, store.name, spec)
    if embedder.dim != store.dim:
        raise InvalidArgument(f"collection {store.name!r} holds {store.dim}-d vectors but the {embedder.kind} "
                              f"embedder makes {embedder.dim}-d ones")
    record_in_store(store, spec, embedder.dim)  # the store's own description: refuses a different embedder
    manifest.set_embedder(store.backend, store.name, spec, embedder.dim)
