"""Partial vector indexes of the pgvector backend: an HNSW or IVFFlat index over only the rows whose
filter column holds one value (``CREATE INDEX ... WHERE tag = 'x'``), pgvector's own advice for
filtering on a column with few distinct values.

pgvector filters after its graph walk: a filter that keeps 10% of the rows makes the walk visit
about ten times the candidates (or the exact scan read every passing row), while a search through
a partial index walks a graph of the passing rows only. ``PgVectorStore.build_filter_index(column,
value)`` makes one, with the collection's own index spec; searches whose filter is exactly that
column and value use it (under every strategy but ``exact``), the value written into the statement
as a literal so the planner can match the index's predicate (a parameter cannot). PostgreSQL keeps
the index up to date as rows are written, like any other.

Each index is named ``w_<collection>_<8 hex digits of its column and value>`` and carries its column
and value as JSON in its comment, so a handle opening the collection finds them again;
``build_index`` rebuilds them with the new spec, ``Exact()`` drops them with the main index.

Other handles (other processes too) learn of a build or drop by PostgreSQL's LISTEN / NOTIFY: each
build and drop sends the collection's name on CHANNEL when it commits, and every open handle
listens there on its primary connection (:class:`Watch`). Only a search whose filter a partial
index could serve (one of COLUMNS, one value) looks for such news first, by reading whatever the
server has already sent without waiting (no round trip), and reads the catalog again only when
there is some; every other search pays nothing. A handle whose server is a hot standby (it cannot
LISTEN) reads the list again at most every STANDBY_RECHECK_S seconds instead.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import psycopg
from psycopg import sql

from vecface.errors import InvalidArgument, UnsupportedOperation
from vecface.types import HNSW, IndexSpec, IVFFlat

from .pg_schema import INDEXED_FILTERS, SCHEMA, Names

#: the filter columns a partial index may select on (text columns with a btree; ``taken`` is a range)
COLUMNS = tuple(c for c in INDEXED_FILTERS if c != "taken")
_COMMENT_KEY = "vecface_filter_index"
#: the NOTIFY channel a build or drop announces its collection's name on (see Watch)
CHANNEL = "vecface_filter_indexes"
#: a handle on a hot standby (which cannot LISTEN) reads the list again at most this often, seconds
STANDBY_RECHECK_S = 10.0


def check(column: Any, value: Any, spec: IndexSpec) -> None:
    """A clear error for a column, value or collection index a partial index cannot be made for."""
    if column not in COLUMNS:
        raise InvalidArgument(f"a filter index selects on one of {', '.join(COLUMNS)}, not {column!r}")
    if not isinstance(value, str) or not value:
        raise InvalidArgument(f"a filter index selects on one non-empty text value, got {value!r}")
    if not isinstance(spec, (HNSW, IVFFlat)):
        raise UnsupportedOperation("a filter index is a partial HNSW or IVFFlat index: build the collection's "
                                   "vector index first (build_index)")


def method(spec: IndexSpec, opclass: str, rows: int) -> sql.Composable:
    """``USING hnsw (embedding <opclass>) WITH (...)`` for ``spec`` (IVFFlat's lists from ``rows``)."""
    if isinstance(spec, HNSW):
        name = sql.SQL("hnsw")
        with_ = sql.SQL("m = {m}, ef_construction = {e}").format(
            m=sql.Literal(spec.m), e=sql.Literal(spec.ef_construction))
    else:
        assert isinstance(spec, IVFFlat)
        name = sql.SQL("ivfflat")
        with_ = sql.SQL("lists = {n}").format(n=sql.Literal(spec.resolve_lists(rows)))
    return sql.SQL("USING {m} (embedding {o}) WITH ({w})").format(m=name, o=sql.SQL(opclass), w=with_)


def _name(n: Names, column: str, value: str) -> str:
    digest = hashlib.sha1(json.dumps([column, value]).encode()).hexdigest()[:8]
    return f"w_{n.collection}_{digest}"


def build(conn: psycopg.Connection, n: Names, column: str, value: str, spec: IndexSpec, opclass: str) -> None:
    """Make (or make again) the partial index of ``column = value`` with ``spec``."""
    name = _name(n, column, value)
    rows = conn.execute(sql.SQL("SELECT count(*) FROM {t} WHERE {c} = %s").format(
        t=n.table, c=sql.Identifier(column)), (value,)).fetchone()[0] if isinstance(spec, IVFFlat) else 0
    with conn.transaction():
        conn.execute(sql.SQL("DROP INDEX IF EXISTS {i}").format(i=sql.Identifier(SCHEMA, name)))
        conn.execute(sql.SQL("CREATE INDEX {i} ON {t} {m} WHERE {c} = {v}").format(
            i=sql.Identifier(name), t=n.table, m=method(spec, opclass, rows), c=sql.Identifier(column),
            v=sql.Literal(value)))
        conn.execute(sql.SQL("COMMENT ON INDEX {i} IS {d}").format(
            i=sql.Identifier(SCHEMA, name), d=sql.Literal(json.dumps({_COMMENT_KEY: [column, value]}))))
        _announce(conn, n)


def drop(conn: psycopg.Connection, n: Names, column: str, value: str) -> bool:
    """Drop the partial index of ``column = value``; whether there was one."""
    name = _name(n, column, value)
    with conn.transaction():
        existed = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f"{SCHEMA}.{name}",)).fetchone()[0]
        conn.execute(sql.SQL("DROP INDEX IF EXISTS {i}").format(i=sql.Identifier(SCHEMA, name)))
        if existed:
            _announce(conn, n)
    return bool(existed)


def _announce(conn: psycopg.Connection, n: Names) -> None:
    """Tell every listening handle (:class:`Watch`) that the collection's partial indexes changed
    (sent when the transaction commits)."""
    conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, n.collection))


def listed(conn: psycopg.Connection, n: Names) -> list[tuple[str, str]]:
    """(column, value) of every partial index of the collection, read from the indexes' comments."""
    rows = conn.execute(
        "SELECT obj_description(i.indexrelid, 'pg_class') FROM pg_index i WHERE i.indrelid = to_regclass(%s)",
        (n.table_text,)).fetchall()
    out = []
    for (comment,) in rows:
        try:
            column, value = json.loads(comment)[_COMMENT_KEY]
        except (TypeError, ValueError, KeyError):
            continue  # not one of these (no comment, or someone else's)
        out.append((column, value))
    return sorted(out)


def rebuild_all(conn: psycopg.Connection, n: Names, spec: IndexSpec, opclass: str) -> list[tuple[str, str]]:
    """After the collection's index was rebuilt: every partial index again with ``spec``, or for an
    exact collection (no vector index) none; the (column, value) of those there are now."""
    have = listed(conn, n)
    for column, value in have:
        if isinstance(spec, (HNSW, IVFFlat)):
            build(conn, n, column, value, spec, opclass)
        else:
            drop(conn, n, column, value)
    return have if isinstance(spec, (HNSW, IVFFlat)) else []


def candidate(flt: dict[str, Any] | None) -> tuple[str, str] | None:
    """The (column, value) a partial index would need to serve exactly this (normalised) filter:
    one of COLUMNS, one value; else None."""
    if not flt or len(flt) != 1:
        return None
    (column, cond), = flt.items()
    if column in COLUMNS and isinstance(cond, list) and len(cond) == 1:
        return column, cond[0]
    return None


def matches(flt: dict[str, Any] | None, have: frozenset[tuple[str, str]]) -> tuple[str, str] | None:
    """The (column, value) of a partial index that serves exactly this (normalised) filter, if any."""
    if not have:
        return None
    wanted = candidate(flt)
    return wanted if wanted in have else None


class Watch:
    """News of partial index builds and drops of one collection, made by any handle, on one
    connection (the handle's primary): LISTENs on CHANNEL; psycopg hands every notification that
    arrives with any statement's results to :meth:`_heard`, and :meth:`changed` also takes those
    the server sent since, without a round trip. A handle's own builds and drops are not news (it
    reads the catalog itself after them). :meth:`changed` reads the socket under the connection's
    own lock (psycopg's ``Connection.lock``), as psycopg's own generators require."""

    def __init__(self, conn: psycopg.Connection, collection: str):
        self._conn, self._collection = conn, collection
        self._news = False
        #: a hot standby cannot LISTEN: there changed() is True every STANDBY_RECHECK_S instead
        self._recheck_at: float | None = None
        try:
            conn.execute(sql.SQL("LISTEN {c}").format(c=sql.Identifier(CHANNEL)))
        except psycopg.errors.ReadOnlySqlTransaction:
            self._recheck_at = time.monotonic() + STANDBY_RECHECK_S
            return
        conn.add_notify_handler(self._heard)

    def _heard(self, note: psycopg.Notify) -> None:
        if note.channel == CHANNEL and note.payload == self._collection and note.pid != self._conn.info.backend_pid:
            self._news = True

    def changed(self) -> bool:
        """Whether another handle built or dropped one of the collection's partial indexes since the
        last call (reads what has arrived on the socket; does not wait); on a standby, whether
        STANDBY_RECHECK_S have passed since it last said so."""
        if self._recheck_at is not None:
            now = time.monotonic()
            if now < self._recheck_at:
                return False
            self._recheck_at = now + STANDBY_RECHECK_S
            return True
        # under the connection's own lock, which psycopg holds for every statement (and while it
        # hands a notification to _heard): the raw searcher uses this connection outside the
        # store's lock, and a _heard between reading and clearing _news would be lost. No one
        # holds a transaction open on it outside that lock (the raw loader has a connection of
        # its own): news reaches a connection only between its transactions
        with self._conn.lock:
            pg = self._conn.pgconn
            pg.consume_input()
            while (note := pg.notifies()) is not None:
                if pg.notify_handler is not None:
                    pg.notify_handler(note)  # psycopg's own dispatch: to _heard
            news, self._news = self._news, False
        return news
