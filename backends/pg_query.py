"""Searches of the pgvector backend: the SQL of a query, its filters, the session settings, and the
raw baseline query the overhead benchmark compares with.

A search is one prepared statement, sent in binary, with the query vector as its only vector
parameter: ``SELECT id, embedding <op> $1 AS d, metadata::text FROM t [WHERE filter] ORDER BY d
LIMIT k`` (ordering by the select-list distance is ordering by the expression the index serves, so
the distance is computed once and the vector sent once; the metadata comes back as JSON text that a
Hit decodes only when it is read). Scans that rank many rows (an exact scan, a collection without a
vector index) nest it so the text is made for the k rows kept only. Filter values are parameters
of the same statement; each query text is made once per (k, filter shape, form) and kept.

Filtered searches, ``filter_strategies``:

- ``auto`` (default): ``exact`` when PostgreSQL's planner estimates that at most
  ``EXACT_MAX_SHARE`` (2%) of the rows, or at most ``EXACT_MAX_ROWS`` (2,000), pass the filter, else
  ``relaxed_order`` with ``hnsw.ef_search`` raised by ``EF_MARGIN`` / share (at most
  ``MAX_EF_SEARCH``): the first pass of the index scan then holds as many passing candidates as an
  unfiltered search at the set ef_search holds candidates, so recall follows the unfiltered one at
  that setting (50k x 512, the bench's filtered phase: unfiltered ef 20, recall 0.90 -> 50% kept
  1.80x / 0.899, 10% 6.96x / 0.901; ef 40, recall 0.94 -> 1.94x / 0.944, 7.50x / 0.962; a margin
  of 1.25 bought 0.02 of recall for 15% more time: 2.08x / 0.919 and 2.31x / 0.956 at 50%).
  The estimate (``EXPLAIN`` of ``SELECT 1 FROM t WHERE filter``, from the table's statistics: most
  common values, histograms) is kept per filter for ``ESTIMATE_TTL_S`` seconds or until this
  handle writes. Why 2%: an HNSW scan must walk about k / share index
  tuples before k of them pass (at 1% of 50k x 512: 38-118 ms, recall 0.79-0.95), while the exact
  scan reads only the passing rows through the btree (500 rows: 0.4-1.7 ms, recall 1); at 10%
  (5,000 rows) the exact scan costs 17-45 ms and the index scan 6-15 ms. A ``relaxed_order``
  scan that still comes back with fewer than k rows (``hnsw.max_scan_tuples`` reached) is redone
  exactly.
- A filter on exactly one value that has a partial vector index of its own (``build_filter_index``,
  see ``pg_partial``) is searched through that index under every strategy but ``exact`` (``auto``:
  at ``PARTIAL_EF_MARGIN`` times the ef_search).
- ``relaxed_order``: the HNSW / IVFFlat index scan goes on past ``ef_search`` /
  ``probes`` until k rows pass the filter (pgvector 0.8's iterative index scans,
  ``hnsw.iterative_scan = relaxed_order``, bounded by ``hnsw.max_scan_tuples``); the few rows
  come back nearly in order and are sorted by their exact distance here.
- ``strict_order``: the same with ``hnsw.iterative_scan = strict_order`` (IVFFlat only has
  relaxed order): rows in exact order from the scan, usually a little slower.
- ``exact``: no vector index; the rows that pass the filter (through the filter column's btree
  where it has one) are ranked by exact distance. Recall 1; cost grows with the rows that pass,
  so it is the right one for selective filters.

Session settings (``hnsw.ef_search``, ``ivfflat.probes``, the iterative scan modes, ``jit`` off:
compiling an exact scan's expressions costs more than the scan) are sent in one statement, only
when they differ from what the connection has.
"""

from __future__ import annotations

import json
import math
import struct
import time
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterable

import numpy as np
import psycopg
from psycopg import sql
from psycopg.adapt import Dumper
from psycopg.pq import Format

from vecface.filters import Range
from vecface.types import DEFAULT_EF_SEARCH, DEFAULT_PROBES

from . import pg_partial
from .pg_schema import Names, timestamp

STRATEGIES = ("auto", "relaxed_order", "strict_order", "exact")
#: ``auto`` searches exactly when the planner expects at most this share of the rows to pass the filter
EXACT_MAX_SHARE = 0.02
#: ... or at most this many rows
EXACT_MAX_ROWS = 2_000
#: ``auto``'s index scans raise ef_search by EF_MARGIN / (share of rows passing), up to pgvector's maximum
EF_MARGIN = 1.0
#: ``auto``'s searches through a partial index (pg_partial) raise ef_search by this factor: the graph of
#: a subset answers its filtered queries with a lower recall at the same ef_search (50k x 512, filtered
#: ground truth, unfiltered ef 20 recall 0.90: at 10% kept ef 20 0.84, ef 25 0.87, ef 30 0.90, ef 40 0.94)
PARTIAL_EF_MARGIN = 1.5
MAX_EF_SEARCH = 1000
#: how long a filter's row estimate is kept (a write through this handle drops them all)
ESTIMATE_TTL_S = 60.0
_MAX_ESTIMATES = 1024
#: statement forms: through the vector index / through a partial vector index made for the filter
#: (its value a literal, see pg_partial) / as the planner likes (no vector index) / exact scan
FORMS = ("index", "partial", "planner", "exact")


@dataclass(frozen=True)
class Settings:
    ef_search: int = DEFAULT_EF_SEARCH
    probes: int = DEFAULT_PROBES
    strategy: str = STRATEGIES[0]


def apply(conn: psycopg.Connection, want: Settings, have: Settings | None) -> Settings:
    """Bring one connection's session settings to ``want`` (one round trip, only if needed)."""
    if want is not have and want != have:
        hnsw_scan = "strict_order" if want.strategy == "strict_order" else "relaxed_order"
        conn.execute("SELECT set_config('hnsw.ef_search', %s, false), set_config('ivfflat.probes', %s, false), "
                     "set_config('hnsw.iterative_scan', %s, false), "
                     "set_config('ivfflat.iterative_scan', 'relaxed_order', false), set_config('jit', 'off', false)",
                     (str(want.ef_search), str(want.probes), hnsw_scan))
    return want


def _conditions(flt: dict[str, Any]) -> list[tuple[str, str, Any]]:
    """(column, condition with ``{c}`` for the column, parameter value) of each part of a filter,
    in the order of the statement's parameters."""
    out: list[tuple[str, str, Any]] = []
    for col, cond in flt.items():
        if isinstance(cond, Range):
            conv = timestamp if col == "taken" else float
            if cond.gte is not None:
                out.append((col, "{c} >= %s", conv(cond.gte)))
            if cond.lte is not None:
                out.append((col, "{c} <= %s", conv(cond.lte)))
        else:
            out.append((col, "{c} = ANY(%s)", list(cond)))
    return out


def _filter_args(flt: dict[str, Any]) -> list[Any]:
    """The parameter values of :func:`_filter_sql`'s clause (per search: no SQL composed)."""
    return [value for _, _, value in _conditions(flt)]


def _filter_sql(flt: dict[str, Any]) -> sql.Composable:
    """`` WHERE ...`` for a filter, its values as parameters (:func:`_filter_args`)."""
    return sql.SQL(" WHERE ") + sql.SQL(" AND ").join(
        sql.SQL(cond).format(c=sql.Identifier(col)) for col, cond, _ in _conditions(flt))


def _frozen(args: list[Any]) -> tuple:
    return tuple(tuple(a) if isinstance(a, list) else a for a in args)


def _shape(flt: dict[str, Any] | None) -> tuple:
    if not flt:
        return ()
    return tuple((col, cond.gte is not None, cond.lte is not None) if isinstance(cond, Range) else (col,)
                 for col, cond in flt.items())


class QueryVector(bytes):
    """A query vector already in pgvector's binary form (``dim``, 0, big-endian float32s), sent as
    it is by the cursors of :meth:`Searcher.cursor` (pgvector's own dumper copies the vector into
    an ``array``, byte-swaps it there and packs it again, per query)."""


def encode(queries: np.ndarray) -> list[QueryVector]:
    """The rows of a float32 matrix in pgvector's binary form (one byte-swapping copy for all)."""
    head = struct.pack(">HH", queries.shape[1], 0)
    big = queries.astype(">f4")
    return [QueryVector(head + row.tobytes()) for row in big]


class Searcher:
    """Query texts of one collection, made once per (k, filter shape, strategy) and kept, the row
    estimates of its filters (``auto``), and a binary cursor per connection."""

    def __init__(self, n: Names, operator: str):
        self.n = n
        self.op = sql.SQL(operator)
        self._texts: dict[tuple, str] = {}
        self._estimates: dict[tuple, tuple[float, float, float]] = {}
        self._cursors: dict[psycopg.Connection, psycopg.Cursor] = {}
        #: (column, value) of the collection's partial vector indexes (pg_partial), as this handle knows them
        self.partials: frozenset[tuple[str, str]] = frozenset()

    def cursor(self, conn: psycopg.Connection) -> psycopg.Cursor:
        """The connection's binary cursor for searches, kept (one fewer object and adapter map per
        query), that sends a :class:`QueryVector` as the vector it holds. The cursors of closed
        connections (a standby connected again) are let go when a new one is made."""
        cur = self._cursors.get(conn)
        if cur is None or cur.closed:
            for gone in [c for c in self._cursors if c.closed]:
                del self._cursors[gone]
            cur = conn.cursor(binary=True)
            dumper = type("QueryVectorDumper", (_QueryVectorDumper,), {"oid": conn.adapters.types["vector"].oid})
            cur.adapters.register_dumper(QueryVector, dumper)
            self._cursors[conn] = cur
        return cur

    def forget(self) -> None:
        """The rows changed: estimate the filters again."""
        self._estimates.clear()

    def read_partials(self, conn: psycopg.Connection, have: Iterable[tuple[str, str]] | None = None) -> None:
        """Read the collection's partial vector indexes (:attr:`partials`) from the server again, or
        take ``have``, a listing just read (``pg_partial.rebuild_all``'s)."""
        self.partials = frozenset(pg_partial.listed(conn, self.n) if have is None else have)

    def _text(self, conn: psycopg.Connection, k: int, flt: dict[str, Any] | None, form: str) -> str:
        """The statement of one FORMS entry: ``index`` the flat one (the index scan returns only
        the rows kept; ``partial`` the same with the filter's one value as a literal), ``planner``
        and ``exact`` a nested one that turns the metadata into text for the k rows kept only
        (``exact``: OFFSET 0 keeps the subquery apart, so no index serves it)."""
        key = (k, _shape(flt), form, pg_partial.matches(flt, self.partials) if form == "partial" else None)
        text = self._texts.get(key)
        if text is None:
            if form == "partial":
                where = sql.SQL(" WHERE {c} = {v}").format(c=sql.Identifier(key[3][0]), v=sql.Literal(key[3][1]))
            else:
                where = _filter_sql(flt) if flt else sql.SQL("")
            if form in ("index", "partial"):  # metadata as its JSON text: a Hit decodes it only when it is read
                q = sql.SQL("SELECT id, embedding {op} %s AS d, metadata::text FROM {t}{w} ORDER BY d LIMIT {k}")
            else:
                q = sql.SQL("SELECT id, d, metadata::text FROM (SELECT id, d, metadata FROM (SELECT id, "
                            "embedding {op} %s AS d, metadata FROM {t}{w}{o}) AS s ORDER BY d LIMIT {k}) "
                            "AS s ORDER BY d")
            text = self._texts[key] = q.format(
                op=self.op, t=self.n.table, w=where, k=sql.Literal(k),
                o=sql.SQL(" OFFSET 0" if form == "exact" else "")).as_string(conn)
        return text

    def share(self, conn: psycopg.Connection, flt: dict[str, Any], args: list[Any]) -> tuple[float, float]:
        """The planner's estimate of the rows that pass this filter, and of the table's rows (kept
        per filter for ESTIMATE_TTL_S seconds or until :meth:`forget`)."""
        key = (_shape(flt), _frozen(args))
        now = time.monotonic()
        known = self._estimates.get(key)
        if known is not None and now - known[0] < ESTIMATE_TTL_S:
            return known[1], known[2]
        where = _filter_sql(flt)
        rows = _planned_rows(conn, sql.SQL("SELECT 1 FROM {t}{w}").format(t=self.n.table, w=where), args)
        total = max(1.0, _planned_rows(conn, sql.SQL("SELECT 1 FROM {t}").format(t=self.n.table), []))
        if len(self._estimates) >= _MAX_ESTIMATES:
            self._estimates.clear()
        self._estimates[key] = (now, rows, total)
        return rows, total

    def plan(self, conn: psycopg.Connection, flt: dict[str, Any] | None, want: Settings,
             indexed: bool = True) -> tuple[Settings, str]:
        """The session settings for one search and its form (FORMS): without a vector index the
        planner's choice (``exact`` if asked), else a partial index made for the filter, else the
        strategy's own, or for ``auto`` the rule of the module docstring."""
        if want.strategy == "exact" and flt:
            return want, "exact"
        if not indexed:
            return want, "planner"
        if flt and pg_partial.matches(flt, self.partials):
            if want.strategy == "auto":
                return replace(want, ef_search=math.ceil(want.ef_search * PARTIAL_EF_MARGIN)), "partial"
            return want, "partial"
        if not flt or want.strategy != "auto":
            return want, "index"
        rows, total = self.share(conn, flt, _filter_args(flt))
        if rows <= EXACT_MAX_ROWS or rows <= EXACT_MAX_SHARE * total:
            return want, "exact"
        ef = min(MAX_EF_SEARCH, math.ceil(want.ef_search * EF_MARGIN * total / max(rows, 1.0)))
        return replace(want, ef_search=max(ef, want.ef_search)), "index"

    def run(self, conn: psycopg.Connection, queries: np.ndarray, k: int, flt: dict[str, Any] | None,
            form: str, auto: bool) -> list[list[tuple[str, float, str]]]:
        """Rows (id, distance, metadata as JSON text) per query, closest first, by the statement of
        ``form`` (``auto``: an index scan that comes back short is redone exactly)."""
        text = self._text(conn, k, flt, form)
        cur = self.cursor(conn)
        vectors = encode(queries)
        if not flt:
            return [cur.execute(text, (q,), prepare=True).fetchall() for q in vectors]
        args = _filter_args(flt)
        own = [] if form == "partial" else args  # a partial index's statement holds its value
        out = []
        for q in vectors:
            rows = cur.execute(text, (q, *own), prepare=True).fetchall()
            if form in ("index", "partial"):
                if auto and len(rows) < k:  # the index scan gave up (hnsw.max_scan_tuples): be exact
                    rows = cur.execute(self._text(conn, k, flt, "exact"), (q, *args), prepare=True).fetchall()
                else:  # iterative scans may hand rows back slightly out of order
                    rows.sort(key=_distance)
            out.append(rows)
        return out

    def raw(self, conn: psycopg.Connection, k: int) -> Callable[[Any], list[str]]:
        """The engine's own query: ids only, prepared, binary, nothing of vecface around it."""
        text = sql.SQL("SELECT id FROM {t} ORDER BY embedding {op} %s LIMIT {k}").format(
            t=self.n.table, op=self.op, k=sql.Literal(k)).as_string(conn)

        def search(vector: Any) -> list[str]:
            return [r[0] for r in conn.execute(text, (vector,), prepare=True, binary=True).fetchall()]

        return search


def _distance(row: tuple) -> float:
    return row[1]


class _QueryVectorDumper(Dumper):
    format = Format.BINARY

    def dump(self, obj: QueryVector) -> QueryVector:
        return obj


def _planned_rows(conn: psycopg.Connection, query: sql.Composable, args: list[Any]) -> float:
    """The planner's estimate of the rows ``query`` returns (with these parameter values)."""
    plan = conn.execute(sql.SQL("EXPLAIN (FORMAT JSON) {q}").format(q=query), args).fetchone()[0]
    if isinstance(plan, str):
        plan = json.loads(plan)
    return float(plan[0]["Plan"]["Plan Rows"])
