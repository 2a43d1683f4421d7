"""Writes of the pgvector backend: binary COPY per batch, a merge for batches that replace rows,
several COPY streams for an upsert of several batches, and the two load baselines the bench
compares it with (one row at a time; the raw single-connection COPY, :class:`RawCopy`).

Each batch is one transaction. A batch of new ids goes straight into the table with
``COPY ... FORMAT BINARY``; a batch that holds an existing id is rolled back to a savepoint and sent
by binary COPY into a temporary staging table, then merged with ``INSERT ... ON CONFLICT (id) DO
UPDATE``. Either way a failed batch never touches what earlier batches stored, and every committed
batch is in the WAL (the tables are logged), so it survives a crash of the server.

An upsert of several batches is a pipeline: the calling thread encodes batch after batch (numpy
for the vectors, see :func:`encode_rows`) while several connections (``streams``) COPY and commit
the encoded ones: PostgreSQL writes WAL and heap pages for several batches at once, and Python's
encoding of the next batch overlaps the server's work on the previous ones.
"""

from __future__ import annotations

import json
import queue
import struct
import threading
import time
from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from .pg_schema import COLUMNS, Names, column_params, column_values, create_scratch, drop_scratch

_COLS = sql.SQL(", ").join(sql.Identifier(c) for c in COLUMNS)


_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
_TRAILER = struct.pack(">h", -1)
_NULL = struct.pack(">i", -1)
_FIELDS = struct.pack(">h", len(COLUMNS))
_PG_EPOCH = 946_684_800  # 2000-01-01 UTC, where PostgreSQL's timestamps count from


_I32 = struct.Struct(">i").pack
_NO_TYPED = _NULL * 5  # person, camera, taken, lat, lon all missing: the common case
_JSONB_V1 = b"\x01"  # jsonb's binary format: a version byte, then the JSON text


def _json_encoder() -> Callable[[Any], str]:
    """A dict's JSON text, compact, by the json module's C encoder made once: ``JSONEncoder.encode``
    makes a new one per call, which was 1.0 of its 1.4 us for a one-field dict (the metadata was
    checked to be serialisable before, see ``types.clean_metadata_batch``). No circular-reference
    check: that check was made there, and its table of the objects being encoded, made once here,
    would be shared by every thread encoding at once, and kept the objects of an encoding that failed
    midway (a later encoding of one of them then said "Circular reference detected")."""
    if c_make_encoder is None:  # an interpreter without the C accelerator
        return json.JSONEncoder(separators=(",", ":"), check_circular=False).encode

    def unknown(o: Any) -> Any:
        raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")

    chunks = c_make_encoder(None, unknown, encode_basestring_ascii, None, ":", ",", False, False, True)
    return lambda obj: "".join(chunks(obj, 0))


_dumps = _json_encoder()
#: rows the pipeline's encoder encodes between two releases of the GIL (see Writer.parallel)
YIELD_EVERY = 250


def _text(s: str | None) -> bytes:
    if s is None:
        return _NULL
    b = s.encode()
    return _I32(len(b)) + b


def _float8(x: float | None) -> bytes:
    return _NULL if x is None else struct.pack(">id", 8, x)


def encode_rows(ids: Sequence[str], vectors: np.ndarray, metadata: Sequence[dict[str, Any]],
                yield_every: int = 0) -> bytes:
    """The rows of a batch in PostgreSQL's binary COPY format (signature, rows of COLUMNS, trailer).

    psycopg's ``write_row`` adapts each value through its dumper, pgvector's converting every vector
    through a Python array, all while holding the GIL; here the vectors are converted to big-endian
    in one numpy call and handed to the join as they are, and a row without the typed filter
    fields costs a handful of appends, so encoding is several times cheaper. ``yield_every``: release
    the GIL for a moment every that many rows."""
    dim = vectors.shape[1]
    vec_head = struct.pack(">iHH", 4 + 4 * dim, dim, 0)
    parts = [_SIGNATURE]
    add, one = parts.extend, parts.append
    for k, (i, v, m) in enumerate(zip(ids, np.asarray(vectors, dtype=">f4"), metadata)):
        if yield_every and k % yield_every == 0:
            time.sleep(0)  # lets the load streams take the GIL (see Writer.parallel)
        tag, path, person, camera, taken, lat, lon = column_values(m)
        key = i.encode()
        meta = _dumps(m).encode()
        add((_FIELDS, _I32(len(key)), key, vec_head, v, _text(tag), _text(path)))
        if person is None and camera is None and taken is None and lat is None and lon is None:
            one(_NO_TYPED)
        else:
            add((_text(person), _text(camera),
                 _NULL if taken is None else struct.pack(">iq", 8, round((taken - _PG_EPOCH) * 1e6)),
                 _float8(lat), _float8(lon)))
        add((_I32(len(meta) + 1), _JSONB_V1, meta))
    one(_TRAILER)
    return b"".join(parts)


def copy_rows(conn: psycopg.Connection, target: sql.Composable, data: bytes) -> None:
    """``data`` (from :func:`encode_rows`) into ``target`` by one binary COPY."""
    with conn.cursor().copy(sql.SQL("COPY {t} ({c}) FROM STDIN WITH (FORMAT BINARY)").format(
            t=target, c=_COLS)) as cp:
        cp.write(data)


class Writer:
    """Batches into one collection's table over one connection (see the module docstring)."""

    def __init__(self, n: Names):
        self.n = n
        self.direct = True  # until a batch meets an existing id: then always the staging path

    def batch(self, conn: psycopg.Connection, data: bytes) -> None:
        """One encoded batch (:func:`encode_rows`) in one transaction."""
        with conn.transaction():
            if self.direct:
                try:
                    with conn.transaction():  # a savepoint
                        copy_rows(conn, self.n.table, data)
                    return
                except psycopg.errors.UniqueViolation:
                    self.direct = False
            conn.execute(sql.SQL(
                "CREATE TEMP TABLE IF NOT EXISTS {s} (LIKE {t} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
            ).format(s=self.n.stage, t=self.n.table))
            copy_rows(conn, self.n.stage, data)
            updates = sql.SQL(", ").join(sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(c))
                                         for c in COLUMNS[1:])
            conn.execute(sql.SQL(
                "INSERT INTO {t} ({c}) SELECT {c} FROM {s} ON CONFLICT (id) DO UPDATE SET {u}"
            ).format(t=self.n.table, s=self.n.stage, c=_COLS, u=updates))

    def parallel(self, conns: Sequence[psycopg.Connection],
                 batches: Iterable[tuple[list[str], np.ndarray, list[dict[str, Any]]]]) -> None:
        """The batches encoded here, one after the other, while each of ``conns`` (one load stream
        each) COPYs and commits encoded ones, each batch its own transaction: encoding holds the
        GIL, sending and waiting for the commit do not, so the two overlap (at most ``len(conns)``
        encoded batches wait). The encoder lets go of the GIL every YIELD_EVERY rows: a stream
        needs it back after every 128 kB psycopg sends, and would otherwise wait up to Python's
        switch interval (5 ms) each time. Raises the first error after every stream has stopped;
        batches committed before it stay."""
        todo: queue.Queue = queue.Queue(maxsize=max(1, len(conns)))
        errors: list[BaseException] = []

        def work(conn: psycopg.Connection) -> None:
            writer = Writer(self.n)
            try:
                while (data := todo.get()) is not None:
                    if not errors:
                        writer.batch(conn, data)
            except BaseException as e:  # noqa: BLE001 - handed to the caller below
                errors.append(e)
                while todo.get() is not None:  # keep taking, so the encoder never waits on a dead stream
                    pass

        threads = [threading.Thread(target=work, args=(c,), name=f"vecface-pg-copy-{i}", daemon=True)
                   for i, c in enumerate(conns)]
        for t in threads:
            t.start()
        try:
            for ids, vecs, metas in batches:
                if errors:
                    break
                todo.put(encode_rows(ids, vecs, metas, yield_every=YIELD_EVERY))
        finally:
            for _ in threads:
                todo.put(None)
            for t in threads:
                t.join()
        if errors:
            raise errors[0]


def is_empty(conn: psycopg.Connection, n: Names) -> bool:
    return conn.execute(sql.SQL("SELECT NOT EXISTS (SELECT 1 FROM {t})").format(t=n.table)).fetchone()[0]


def insert_one_by_one(conn: psycopg.Connection, n: Names, ids: Sequence[str], vectors: np.ndarray,
                      metadata: Sequence[dict[str, Any]], tick: Callable[[int], Any] | None) -> str:
    """Row-by-row INSERTs in one transaction into the scratch table (``r_<name>``, dropped
    afterwards); ``tick(1)`` per row."""
    create_scratch(conn, n, filter_btrees=False)
    try:
        insert = sql.SQL("INSERT INTO {r} ({c}) VALUES ({p})").format(
            r=n.scratch, c=_COLS, p=sql.SQL(", ").join(sql.Placeholder() * len(COLUMNS))).as_string(conn)
        with conn.transaction():
            for i, v, m in zip(ids, vectors, metadata):
                conn.execute(insert, (i, v, *column_params(m), Jsonb(m)))
                if tick is not None:
                    tick(1)
    finally:
        drop_scratch(conn, n)
    return "row-by-row INSERT, one transaction"


class RawCopy:
    """The raw load baseline: one connection, one binary COPY and commit per ``batch_size`` rows,
    into the scratch table shaped like the collection while vecface loads it (its columns, primary
    key and filter btrees; logged). Nothing of vecface's write path: no validation, no
    normalisation, no streams, no merge. The connection is its own (``connect()``), and the
    scratch table is made on entering; both go on leaving. Call it with ``(ids, vectors, metadata
    or None)``."""

    def __init__(self, connect: Callable[[], psycopg.Connection], n: Names, batch_size: int):
        self.connect, self.n, self.batch_size = connect, n, max(1, batch_size)
        self.conn: psycopg.Connection | None = None
        self.method = f"binary COPY + commit per {self.batch_size}-row batch, one connection, logged table"

    def __enter__(self) -> "RawCopy":
        self.conn = self.connect()
        try:
            create_scratch(self.conn, self.n, filter_btrees=True)
        except BaseException:
            self.conn.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.conn is not None
        try:
            drop_scratch(self.conn, self.n)
        finally:
            self.conn.close()

    def __call__(self, ids: Sequence[str], vectors: np.ndarray, metadata: Sequence[dict[str, Any]] | None) -> None:
        metadata = metadata if metadata is not None else [{}] * len(ids)
        for s in range(0, len(ids), self.batch_size):
            e = s + self.batch_size
            with self.conn.transaction():
                copy_rows(self.conn, self.n.scratch, encode_rows(ids[s:e], vectors[s:e], metadata[s:e]))
