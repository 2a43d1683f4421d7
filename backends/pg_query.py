"""Searches of the pgvector backend: the SQL of a query, its filters, the session settings, and the
raw baseline query the overhead benchmark compares with.

A search is one prepared statement, sent in binary, with the query vector as its only vector
parameter: ``SELECT id, embedding <op> $1 AS d, metadata FROM t [WHERE filter] ORDER BY d LIMIT k``
(ordering by the select-list distance is ordering by the expression the index serves, so the
distance is computed once and the vector sent once). Filter values are parameters of the same
statement; each query text is made once per (k, filter shape) and kept.

Filtered searches, ``filter_strategies``:

- ``relaxed_order`` (default): the HNSW / IVFFlat index scan goes on past ``ef_search`` /
  ``probes`` until k rows pass the filter (pgvector 0.8's iterative index scans,
  ``hnsw.iterative_scan = relaxed_order``, bounded by ``hnsw.max_scan_tuples``); the few rows
  come back nearly in order and are sorted by their exact distance here.
- ``strict_order``: the same with ``hnsw.iterative_scan = strict_order`` (IVFFlat only has
  relaxed order): rows in exact order from the scan, usually a little slower.
- ``exact``: no vector index; the rows that pass the filter (through the filter column's btree
  where it has one) are ranked by exact distance. Recall 1; cost grows with the rows that pass,
  so it is the right one for selective filters.

Session settings (``hnsw.ef_search``, ``ivfflat.probes``, the iterative scan modes) are sent in one
statement, only when they differ from what the connection has.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import psycopg
from psycopg import sql

from vecface.types import DEFAULT_EF_SEARCH, DEFAULT_PROBES
from vecface.filters import Range

from .pg_schema import Names, timestamp

STRATEGIES = ("relaxed_order", "strict_order", "exact")


@dataclass(frozen=True)
class Settings:
    ef_search: int = DEFAULT_EF_SEARCH
    probes: int = DEFAULT_PROBES
    strategy: str = STRATEGIES[0]


def apply(conn: psycopg.Connection, want: Settings, have: Settings | None) -> Settings:
    """Bring one connection's session settings to ``want`` (one round trip, only if needed)."""
    if want != have:
        hnsw_scan = "strict_order" if want.strategy == "strict_order" else "relaxed_order"
        conn.execute("SELECT set_config('hnsw.ef_search', %s, false), set_config('ivfflat.probes', %s, false), "
                     "set_config('hnsw.iterative_scan', %s, false), "
                     "set_config('ivfflat.iterative_scan', 'relaxed_order', false)",
                     (str(want.ef_search), str(want.probes), hnsw_scan))
    return want


def _filter_sql(flt: dict[str, Any]) -> tuple[sql.Composable, list[Any]]:
    parts: list[sql.Composable] = []
    args: list[Any] = []
    for col, cond in flt.items():
        c = sql.Identifier(col)
        if isinstance(cond, Range):
            conv = timestamp if col == "taken" else float
            if cond.gte is not None:
                parts.append(sql.SQL("{c} >= %s").format(c=c))
                args.append(conv(cond.gte))
            if cond.lte is not None:
                parts.append(sql.SQL("{c} <= %s").format(c=c))
                args.append(conv(cond.lte))
        else:
            parts.append(sql.SQL("{c} = ANY(%s)").format(c=c))
            args.append(list(cond))
    return sql.SQL(" WHERE ") + sql.SQL(" AND ").join(parts), args


def _shape(flt: dict[str, Any] | None) -> tuple:
    if not flt:
        return ()
    return tuple((col, cond.gte is not None, cond.lte is not None) if isinstance(cond, Range) else (col,)
                 for col, cond in flt.items())


class Searcher:
    """Query texts of one collection, made once per (k, filter shape, strategy) and kept."""

    def __init__(self, n: Names, operator: str):
        self.n = n
        self.op = sql.SQL(operator)
        self._texts: dict[tuple, str] = {}

    def _text(self, conn: psycopg.Connection, k: int, flt: dict[str, Any] | None, exact: bool) -> str:
        key = (k, _shape(flt), exact)
        text = self._texts.get(key)
        if text is None:
            where = _filter_sql(flt)[0] if flt else sql.SQL("")
            inner = sql.SQL("SELECT id, embedding {op} %s AS d, metadata FROM {t}{w}").format(
                op=self.op, t=self.n.table, w=where)
            if exact:  # OFFSET 0 keeps the subquery apart, so no index can serve the ORDER BY
                inner = sql.SQL("SELECT id, d, metadata FROM ({q} OFFSET 0) AS s").format(q=inner)
            text = self._texts[key] = sql.SQL("{q} ORDER BY d LIMIT {k}").format(
                q=inner, k=sql.Literal(k)).as_string(conn)
        return text

    def run(self, conn: psycopg.Connection, queries: np.ndarray, k: int, flt: dict[str, Any] | None,
            strategy: str) -> list[list[tuple[str, float, dict[str, Any]]]]:
        """Rows (id, distance, metadata) per query, closest first."""
        exact = bool(flt) and strategy == "exact"
        text = self._text(conn, k, flt, exact)
        args = _filter_sql(flt)[1] if flt else []
        resort = bool(flt) and not exact
        out = []
        for q in queries:
            rows = conn.execute(text, (q, *args), prepare=True, binary=True).fetchall()
            if resort:  # iterative scans may hand rows back slightly out of order
                rows.sort(key=lambda r: r[1])
            out.append(rows)
        return out

    def raw(self, conn: psycopg.Connection, k: int) -> Callable[[Any], list[str]]:
        """The engine's own query: ids only, prepared, binary, nothing of vecface around it."""
        text = sql.SQL("SELECT id FROM {t} ORDER BY embedding {op} %s LIMIT {k}").format(
            t=self.n.table, op=self.op, k=sql.Literal(k)).as_string(conn)

        def search(vector: Any) -> list[str]:
            return [r[0] for r in conn.execute(text, (vector,), prepare=True, binary=True).fetchall()]

        return search
