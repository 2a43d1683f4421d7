"""Where the pgvector backend keeps things, and the DDL that makes them.

Everything lives in a schema of vecface's own, ``vecface``: the catalog ``vecface.collections``
(name, dim, metric, index) and one table per collection. Every name vecface creates in that schema
starts with a prefix that says what it is, followed by the collection name, so no two can be
equal (collection names are ``[a-z][a-z0-9_]*``, see ``validate_name``; the catalog's name has no
underscore after its first letter):

    c_<name>            the collection's table
    p_<name>            its primary key (constraint and index)
    v_<name>            its vector index (HNSW or IVFFlat)
    w_<name>_<8 hex>    a partial vector index for one filter value (see pg_partial)
    f_<name>__<column>  a btree on a filter column (column names hold no "__")
    r_<name>, q_<name>  the scratch table of the load baselines (one row at a time, raw COPY) and its
                        primary key
    g_<name>__<column>  a btree of that scratch table on a filter column

The table: ``id text``, ``embedding vector(d)`` kept inline up to 1,536 dimensions (storage PLAIN, see
MAX_INLINE_DIM), the filter columns ``tag, path, person, camera text, taken timestamptz, lat, lon double
precision`` (filled from ``vecface.filters.filter_columns``) and ``metadata jsonb`` (the record's
metadata as given).

The layout before this one (catalog ``public.vecface_collections``, tables ``public.vecface_<name>``)
is migrated on the first connection that finds it: each table is moved into the schema and renamed,
its constraint and indexes renamed, the catalog rows copied; tables without the filter columns get
them added and filled from their metadata when the collection is opened.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

import psycopg
from psycopg import sql

from vecface.errors import InvalidArgument, UnsupportedIndex
from vecface.filters import filter_columns

SCHEMA = "vecface"
CATALOG = sql.Identifier(SCHEMA, "collections")
LEGACY_CATALOG = "public.vecface_collections"

#: pgvector's limits (0.8): a vector column holds at most 16,000 dimensions; its HNSW and IVFFlat
#: indexes take at most 2,000 (4,000 for halfvec, which vecface does not use)
MAX_STORED_DIM = 16_000
MAX_INDEXED_DIM = 2_000

#: vectors up to this size are kept in the row (storage PLAIN: no TOAST lookup when a search reads a
#: hit's distance, no compression attempt when a row is written); larger ones stay pgvector's default
#: (EXTERNAL: out of line, uncompressed). 1,536 floats leave room in an 8 kB page for the other columns
MAX_INLINE_DIM = 1_536

#: the table's columns, in COPY order
COLUMNS = ("id", "embedding", "tag", "path", "person", "camera", "taken", "lat", "lon", "metadata")
FILTER_COLUMN_TYPES = {"person": "text", "camera": "text", "taken": "timestamptz",
                       "lat": "double precision", "lon": "double precision"}
#: filter columns with a btree: an exact search over the rows a selective filter keeps reads only those
#: (lat and lon, usually filtered together as a box, are checked on the rows the scan yields)
INDEXED_FILTERS = ("tag", "person", "camera", "taken")


class Names:
    """The identifiers of one collection (see the module docstring)."""

    def __init__(self, collection: str):
        self.collection = collection
        self.table = sql.Identifier(SCHEMA, f"c_{collection}")
        self.table_text = f"{SCHEMA}.c_{collection}"
        self.pkey = sql.Identifier(f"p_{collection}")
        self.vector_index = sql.Identifier(SCHEMA, f"v_{collection}")
        self.vector_index_text = f"{SCHEMA}.v_{collection}"
        self.vector_index_local = sql.Identifier(f"v_{collection}")
        self.scratch = sql.Identifier(SCHEMA, f"r_{collection}")
        self.scratch_pkey = sql.Identifier(f"q_{collection}")
        self.stage = sql.Identifier(f"s_{collection}")  # a temporary table, in pg_temp

    def filter_index(self, column: str) -> sql.Identifier:
        return sql.Identifier(f"f_{self.collection}__{column}")

    def scratch_index(self, column: str) -> sql.Identifier:
        return sql.Identifier(f"g_{self.collection}__{column}")


# ---------------------------------------------------------------- limits

def check_storable(dim: int) -> None:
    if dim > MAX_STORED_DIM:
        raise InvalidArgument(
            f"the pgvector backend cannot store {dim}-dimensional vectors: pgvector's vector type holds "
            f"at most {MAX_STORED_DIM:,} dimensions (and its HNSW and IVFFlat indexes at most "
            f"{MAX_INDEXED_DIM:,}; 4,000 as halfvec)")


def check_indexable(dim: int, kind: str) -> None:
    if kind != "exact" and dim > MAX_INDEXED_DIM:
        raise UnsupportedIndex(
            f"pgvector's {kind} index takes vectors of at most {MAX_INDEXED_DIM:,} dimensions "
            f"(4,000 as halfvec); this collection has {dim}. Use the exact index (a full scan)")


# ---------------------------------------------------------------- catalog

def ensure_catalog(conn: psycopg.Connection) -> None:
    """Create the schema and catalog if missing, and migrate the old layout if present. Read-only
    (standby) servers are left alone. Costs one query when there is nothing to do."""
    ready, legacy, standby = conn.execute(
        "SELECT to_regclass('vecface.collections') IS NOT NULL, to_regclass(%s) IS NOT NULL, "
        "pg_is_in_recovery()", (LEGACY_CATALOG,)).fetchone()
    if standby or (ready and not legacy):
        return
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('vecface catalog'))")
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {s}").format(s=sql.Identifier(SCHEMA)))
        conn.execute(sql.SQL(
            "CREATE TABLE IF NOT EXISTS {c} (name text PRIMARY KEY, dim int NOT NULL, "
            "metric text NOT NULL, index jsonb NOT NULL)").format(c=CATALOG))
        if conn.execute("SELECT to_regclass(%s) IS NOT NULL", (LEGACY_CATALOG,)).fetchone()[0]:
            _migrate_legacy(conn)


def _migrate_legacy(conn: psycopg.Connection) -> None:
    for name, dim, metric, index in conn.execute(
            f"SELECT name, dim, metric, index FROM {LEGACY_CATALOG}").fetchall():
        old = f"vecface_{name}"
        oid = conn.execute("SELECT to_regclass(%s)::oid", (f"public.{old}",)).fetchone()[0]
        if oid is None:
            continue
        n = Names(name)
        conn.execute(sql.SQL("ALTER TABLE {t} SET SCHEMA {s}").format(
            t=sql.Identifier("public", old), s=sql.Identifier(SCHEMA)))
        conn.execute(sql.SQL("ALTER TABLE {t} RENAME TO {new}").format(
            t=sql.Identifier(SCHEMA, old), new=sql.Identifier(f"c_{name}")))
        for idx, primary, method in conn.execute(
                "SELECT c.relname, i.indisprimary, a.amname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                "JOIN pg_am a ON a.oid = c.relam WHERE i.indrelid = %s", (oid,)).fetchall():
            if primary:
                conn.execute(sql.SQL("ALTER TABLE {t} RENAME CONSTRAINT {old} TO {new}").format(
                    t=n.table, old=sql.Identifier(idx), new=n.pkey))
            elif method in ("hnsw", "ivfflat"):
                conn.execute(sql.SQL("ALTER INDEX {i} RENAME TO {new}").format(
                    i=sql.Identifier(SCHEMA, idx), new=n.vector_index_local))
            else:  # the old tag btree: made again under its new name by ensure_columns
                conn.execute(sql.SQL("DROP INDEX {i}").format(i=sql.Identifier(SCHEMA, idx)))
        conn.execute(sql.SQL("INSERT INTO {c} (name, dim, metric, index) VALUES (%s, %s, %s, %s) "
                             "ON CONFLICT (name) DO NOTHING").format(c=CATALOG),
                     (name, dim, metric, psycopg.types.json.Jsonb(index)))
    conn.execute(f"DROP TABLE {LEGACY_CATALOG}")


def describe(conn: psycopg.Connection, name: str) -> tuple[int, str, dict[str, Any]] | None:
    return conn.execute(sql.SQL("SELECT dim, metric, index FROM {c} WHERE name = %s").format(c=CATALOG),
                        (name,)).fetchone()


def read_info(conn: psycopg.Connection, name: str) -> dict[str, Any] | None:
    """The collection's description (the catalog's ``info`` jsonb column; None where the column
    or the value is missing: ``to_jsonb`` of the row reads it without the column having to exist)."""
    row = conn.execute(sql.SQL("SELECT to_jsonb(c) -> 'info' FROM {c} c WHERE name = %s").format(c=CATALOG),
                       (name,)).fetchone()
    return row[0] if row and isinstance(row[0], dict) else None


def write_info(conn: psycopg.Connection, name: str, info: dict[str, Any]) -> None:
    """Set the collection's description, adding the catalog's ``info`` column if missing."""
    from psycopg.types.json import Jsonb

    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('vecface catalog'))")
        conn.execute(sql.SQL("ALTER TABLE {c} ADD COLUMN IF NOT EXISTS info jsonb").format(c=CATALOG))
        conn.execute(sql.SQL("UPDATE {c} SET info = %s WHERE name = %s").format(c=CATALOG), (Jsonb(info), name))


def collection_names(conn: psycopg.Connection) -> list[str]:
    if not conn.execute("SELECT to_regclass('vecface.collections') IS NOT NULL").fetchone()[0]:
        return []
    return [r[0] for r in conn.execute(sql.SQL("SELECT name FROM {c}").format(c=CATALOG))]


# ---------------------------------------------------------------- tables

def create_collection(conn: psycopg.Connection, n: Names, dim: int, metric: str) -> None:
    """The table, its filter indexes and its catalog row, in one transaction."""
    from psycopg.types.json import Jsonb

    check_storable(dim)
    with conn.transaction():
        conn.execute(sql.SQL(
            "CREATE TABLE IF NOT EXISTS {t} (id text NOT NULL, embedding vector({d}) NOT NULL, "
            "tag text, path text, person text, camera text, taken timestamptz, "
            "lat double precision, lon double precision, metadata jsonb NOT NULL DEFAULT '{{}}', "
            "CONSTRAINT {p} PRIMARY KEY (id))").format(t=n.table, d=sql.Literal(dim), p=n.pkey))
        if dim <= MAX_INLINE_DIM:
            conn.execute(sql.SQL("ALTER TABLE {t} ALTER COLUMN embedding SET STORAGE PLAIN").format(t=n.table))
        create_filter_indexes(conn, n)
        conn.execute(sql.SQL("INSERT INTO {c} (name, dim, metric, index) VALUES (%s, %s, %s, %s) "
                             "ON CONFLICT (name) DO NOTHING").format(c=CATALOG),
                     (n.collection, dim, metric, Jsonb({"kind": "exact"})))


def drop_filter_indexes(conn: psycopg.Connection, n: Names) -> None:
    """Before a bulk load into an empty table: the btrees are built once afterwards, in bulk."""
    for col in INDEXED_FILTERS:
        conn.execute(sql.SQL("DROP INDEX IF EXISTS {s}.{i}").format(s=sql.Identifier(SCHEMA), i=n.filter_index(col)))


def create_filter_indexes(conn: psycopg.Connection, n: Names) -> None:
    for col in INDEXED_FILTERS:
        conn.execute(sql.SQL("CREATE INDEX IF NOT EXISTS {i} ON {t} ({c})").format(
            i=n.filter_index(col), t=n.table, c=sql.Identifier(col)))


def create_scratch(conn: psycopg.Connection, n: Names, filter_btrees: bool) -> None:
    """The load baselines' scratch table (``r_<name>``, made again if left over): the collection's
    columns and storage, its primary key and, with ``filter_btrees``, the filter btrees: the shape the
    collection has while vecface loads it (no vector index yet)."""
    conn.execute(sql.SQL("DROP TABLE IF EXISTS {r}").format(r=n.scratch))
    conn.execute(sql.SQL("CREATE TABLE {r} (LIKE {t} INCLUDING DEFAULTS INCLUDING STORAGE, "
                         "CONSTRAINT {k} PRIMARY KEY (id))").format(r=n.scratch, t=n.table, k=n.scratch_pkey))
    for col in INDEXED_FILTERS if filter_btrees else ():
        conn.execute(sql.SQL("CREATE INDEX {i} ON {r} ({c})").format(
            i=n.scratch_index(col), r=n.scratch, c=sql.Identifier(col)))


def drop_scratch(conn: psycopg.Connection, n: Names) -> None:
    conn.execute(sql.SQL("DROP TABLE IF EXISTS {r}").format(r=n.scratch))


def ensure_columns(conn: psycopg.Connection, n: Names) -> None:
    """A table made before the filter columns existed gets them, filled from each row's metadata
    with the same rules as new rows (``filter_columns``), and its filter btrees. Two catalog queries
    when nothing is missing."""
    have = {r[0] for r in conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attnum > 0 AND NOT attisdropped",
        (n.table_text,)).fetchall()}
    missing = [c for c in FILTER_COLUMN_TYPES if c not in have]
    indexes = conn.execute("SELECT count(*) FROM pg_class WHERE relnamespace = %s::regnamespace AND relname = ANY(%s)",
                           (SCHEMA, [f"f_{n.collection}__{c}" for c in INDEXED_FILTERS])).fetchone()[0]
    if not have or (not missing and indexes == len(INDEXED_FILTERS)) or conn.execute(
            "SELECT pg_is_in_recovery()").fetchone()[0]:
        return
    with conn.transaction():
        conn.execute(sql.SQL("LOCK TABLE {t} IN SHARE ROW EXCLUSIVE MODE").format(t=n.table))
        for col in missing:
            conn.execute(sql.SQL("ALTER TABLE {t} ADD COLUMN IF NOT EXISTS {c} {ty}").format(
                t=n.table, c=sql.Identifier(col), ty=sql.SQL(FILTER_COLUMN_TYPES[col])))
        rows = conn.execute(sql.SQL("SELECT id, metadata FROM {t} WHERE metadata ?| %s").format(t=n.table),
                            (list(FILTER_COLUMN_TYPES),)).fetchall() if missing else []
        if rows:
            with conn.cursor() as cur:
                cur.executemany(sql.SQL(
                    "UPDATE {t} SET person = %s, camera = %s, taken = %s, lat = %s, lon = %s WHERE id = %s"
                ).format(t=n.table), [(*column_params(m)[2:], i) for i, m in rows])
        create_filter_indexes(conn, n)  # also where a bulk load was cut off before it made them


# ---------------------------------------------------------------- values

_MIN_TS = _dt.datetime(1, 1, 2, tzinfo=_dt.timezone.utc).timestamp()
_MAX_TS = _dt.datetime(9999, 12, 30, tzinfo=_dt.timezone.utc).timestamp()


def _clamp(seconds: float | None) -> float | None:
    """Epoch seconds kept within what Python's datetime (and so a query bound) can express."""
    return None if seconds is None else min(max(seconds, _MIN_TS), _MAX_TS)


def timestamp(seconds: float | None) -> _dt.datetime | None:
    """Epoch seconds as an aware datetime for a timestamptz parameter (clamped, see _clamp)."""
    seconds = _clamp(seconds)
    return None if seconds is None else _dt.datetime.fromtimestamp(seconds, tz=_dt.timezone.utc)


_TYPED = frozenset(("person", "camera", "taken", "lat", "lon"))


def column_values(metadata: dict[str, Any]) -> tuple[Any, ...]:
    """(tag, path, person, camera, taken, lat, lon) for one record as stored, ``taken`` as (clamped)
    epoch seconds."""
    if _TYPED.isdisjoint(metadata):  # the common case, on the load path: only tag and path
        tag, path = metadata.get("tag"), metadata.get("path")
        return (tag if isinstance(tag, str) else None, path if isinstance(path, str) else None,
                None, None, None, None, None)
    c = filter_columns(metadata)
    return (c["tag"], c["path"], c["person"], c["camera"], _clamp(c["taken"]), c["lat"], c["lon"])


def column_params(metadata: dict[str, Any]) -> tuple[Any, ...]:
    """column_values as SQL parameters (``taken`` as a datetime)."""
    tag, path, person, camera, taken, lat, lon = column_values(metadata)
    return tag, path, person, camera, timestamp(taken), lat, lon
