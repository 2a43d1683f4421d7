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
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import psycopg
from psycopg import sql

from vecface.errors import InvalidArgument, UnsupportedOperation
from vecface.types import HNSW, IndexSpec, IVFFlat

from .pg_schema import INDEXED_FILTERS, SCHEMA, Names

#: the filter columns a partial index may select on (text columns with a btree; ``taken`` is a range)
COLUMNS = tuple(c for c in INDEXED_FILTERS if c != "taken")
_COMMENT_KEY = "vecface_filter_index"


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


def drop(conn: psycopg.Connection, n: Names, column: str, value: str) -> bool:
    """Drop the partial index of ``column = value``; whether there was one."""
    name = _name(n, column, value)
    existed = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f"{SCHEMA}.{name}",)).fetchone()[0]
    conn.execute(sql.SQL("DROP INDEX IF EXISTS {i}").format(i=sql.Identifier(SCHEMA, name)))
    return bool(existed)


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


def matches(flt: dict[str, Any] | None, have: frozenset[tuple[str, str]]) -> tuple[str, str] | None:
    """The (column, value) of a partial index that serves exactly this (normalised) filter, if any."""
    if not have or not flt or len(flt) != 1:
        return None
    (column, cond), = flt.items()
    if isinstance(cond, list) and len(cond) == 1 and (column, cond[0]) in have:
        return column, cond[0]
    return None
