"""Bring a FAISS collection written by vecface's first layout (format 1: one SQLite row per record
with its vector, ``index.faiss`` + ``index.json`` beside it) into the journal layout, in place.

Under the writer lock: the vectors are copied into a new epoch's vector file in record order and
fsynced; then ONE transaction writes the records as journal batches, sets format, epoch and index
spec, and drops the old table. A crash before that commit leaves the old layout whole (and an
orphan vector file that the next tidy-up removes); after it, the new one. The old index files are
removed last; the index is rebuilt from the vector file on open.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from vecface.errors import BackendError

from .faiss_columns import Batch
from .faiss_files import VectorFile, fsync_dir
from .faiss_journal import _SCHEMA, FORMAT, Journal

_CHUNK = 20_000


def upgrade(journal: Journal, wlock: Any, directory: Path, dim: int, name: str) -> None:
    """A collection in vecface's first layout is rewritten in place once (under the writer lock);
    another layout is refused."""
    with wlock:
        cfg = journal.config()
        if cfg.get("format") == FORMAT:
            return  # another process upgraded it while this one waited
        if cfg.get("format") is not None or not is_old_layout(journal):
            raise BackendError(f"the FAISS collection {name!r} at {directory} was written in a layout this "
                               f"vecface does not read (format {cfg.get('format')!r}; it reads {FORMAT})")
        migrate(journal, directory, dim)


def is_old_layout(journal: Journal) -> bool:
    return bool(journal.db.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'records'").fetchone())


def migrate(journal: Journal, directory: Path, dim: int) -> None:
    """Rewrite an old-layout collection (the caller holds the writer lock)."""
    db = journal.db
    epoch = uuid.uuid4().hex
    vectors = VectorFile(directory / f"vectors.{epoch}.f32", dim, create=True)
    batches: list[tuple[int, Batch]] = []
    try:
        last, pos = -1, 0
        while True:
            rows = db.execute("SELECT rid, id, metadata, vector FROM records WHERE rid > ? ORDER BY rid LIMIT ?",
                              (last, _CHUNK)).fetchall()
            if not rows:
                break
            vectors.write(pos, np.frombuffer(b"".join(r[3] for r in rows), dtype=np.float32).reshape(len(rows), dim))
            metas: list[dict[str, Any]] = [json.loads(r[2]) for r in rows]
            batches.append((pos, Batch.from_metadata([r[1] for r in rows], metas)))
            pos += len(rows)
            last = rows[-1][0]
    finally:
        vectors.close()
    fsync_dir(directory)
    db.executescript(_SCHEMA)
    with journal.transaction():
        for start, batch in batches:
            journal.append_batch(start, batch)
        journal.set_config(format=FORMAT, epoch=epoch)
        db.execute("DELETE FROM config WHERE key = 'generation'")
        db.execute("DROP TABLE records")
    for name in ("index.faiss", "index.json"):
        (directory / name).unlink(missing_ok=True)
