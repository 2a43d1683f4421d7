"""The FAISS collection's durable journal: SQLite, one row per committed write.

``records.sqlite`` (WAL, ``synchronous=FULL``: a commit is on disk when it returns) holds

- ``config``: dim, metric, the index spec, and the current ``epoch`` (a random token naming the
  vector file and index file the journal's slots refer to);
- ``journal``: one row per write, in commit order (``gen``): an upsert's records as one columnar
  batch (ids, metadata texts, filter columns; see :class:`~.faiss_columns.Batch`) at slots
  ``[start, start + n)``, or a delete's dead slots. A compaction replaces every row with a
  snapshot of the live records under a new epoch, in the same transaction.

One SQLite row per batch, not per record: inserting a record per row into a B-tree with a unique
id index ran at 35-80k rows/s here and bounded the load; a batch row costs what its bytes cost.
Readers replay the rows after the generation they have, so catching up reads only what is new.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

from .faiss_columns import Batch

_SCHEMA = """
CREATE TABLE IF NOT EXISTS config (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS journal (
    gen INTEGER PRIMARY KEY AUTOINCREMENT,
    start INTEGER NOT NULL,
    n INTEGER NOT NULL,
    ids TEXT,
    meta TEXT,
    strs TEXT,
    nums BLOB,
    dead BLOB
);
"""
DB_NAME = "records.sqlite"
#: the journal layout; an older or newer layout is refused rather than misread
FORMAT = "2"


def collection_names(root: Path) -> list[str]:
    """The collections (directories with a journal) under a FAISS root folder."""
    return [d.name for d in root.iterdir() if (d / DB_NAME).exists()] if root.is_dir() else []


class Journal:
    def __init__(self, directory: Path, create: bool):
        path = directory / DB_NAME
        self.path = path
        # autocommit mode: transactions are explicit BEGIN ... COMMIT
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=60)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        if create:
            self.db.executescript(_SCHEMA)

    def close(self) -> None:
        self.db.close()

    # ------------------------------------------------------------------ config
    def config(self) -> dict[str, str]:
        try:
            return dict(self.db.execute("SELECT key, value FROM config").fetchall())
        except sqlite3.OperationalError:
            return {}  # a directory from before the journal, or one being created

    def set_config(self, **values: str) -> None:
        """Inside a transaction the caller holds."""
        self.db.executemany("INSERT INTO config(key, value) VALUES (?, ?) "
                            "ON CONFLICT(key) DO UPDATE SET value = excluded.value", list(values.items()))

    # ------------------------------------------------------------------ transactions
    @contextmanager
    def transaction(self) -> Iterator["Journal"]:
        """``BEGIN IMMEDIATE`` (the write lock of the database, taken now) ... ``COMMIT`` when the
        block ends, ``ROLLBACK`` when it (or the commit) raises: the block's writes land whole or not
        at all. Every write of the journal goes through here."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self
            self.db.execute("COMMIT")
        except BaseException:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise

    def create(self, dim: int, metric: str, index: str, epoch: str) -> None:
        with self.transaction():
            self.set_config(format=FORMAT, dim=str(dim), metric=metric, index=index, epoch=epoch)

    def info(self) -> dict | None:
        """The collection's description (``config.info``, JSON), or None."""
        text = self.config().get("info")
        return json.loads(text) if text else None

    def set_info(self, info: dict) -> None:
        with self.transaction():
            self.set_config(info=json.dumps(info))

    # ------------------------------------------------------------------ entries
    def append_batch(self, start: int, batch: Batch) -> int:
        ids, meta, strs, nums = batch.encode()
        cur = self.db.execute("INSERT INTO journal(start, n, ids, meta, strs, nums) VALUES (?, ?, ?, ?, ?, ?)",
                              (start, len(batch), ids, meta, strs, nums))
        return int(cur.lastrowid)

    def append_dead(self, slots: list[int]) -> int:
        cur = self.db.execute("INSERT INTO journal(start, n, dead) VALUES (0, 0, ?)",
                              (np.asarray(slots, dtype=np.int64).tobytes(),))
        return int(cur.lastrowid)

    def replace_all(self, chunks: Iterator[tuple[int, Batch]], epoch: str, **config: str) -> int:
        """Inside a transaction: drop every entry and write a snapshot under a new epoch."""
        self.db.execute("DELETE FROM journal")
        gen = 0
        for start, batch in chunks:
            gen = self.append_batch(start, batch)
        self.set_config(epoch=epoch, **config)
        return gen

    def read(self, after_gen: int) -> tuple[dict[str, str], list[tuple[int, int, Batch | None, list[int]]]]:
        """The config and the entries after ``after_gen``, as one consistent snapshot:
        ``(gen, start, batch or None, dead slots)``."""
        self.db.execute("BEGIN")
        try:
            cfg = self.config()
            rows = self.db.execute("SELECT gen, start, n, ids, meta, strs, nums, dead FROM journal "
                                   "WHERE gen > ? ORDER BY gen", (after_gen,)).fetchall()
        finally:
            self.db.execute("COMMIT")
        out = []
        for gen, start, n, ids, meta, strs, nums, dead in rows:
            batch = Batch.decode(ids, meta, strs, nums) if n else None
            out.append((gen, start, batch, np.frombuffer(dead, dtype=np.int64).tolist() if dead else []))
        return cfg, out

    def last_gen(self) -> int:
        row = self.db.execute("SELECT max(gen) FROM journal").fetchone()
        return int(row[0] or 0)

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in (self.path, self.path.with_name(self.path.name + "-wal"))
                   if p.exists())

