"""``vecface index``: build (or replace) a collection's vector index after an ingest, and the
filter indexes over one value's rows (pgvector's partial indexes); with no spec, show what it has."""

from __future__ import annotations

import time
from typing import Annotated, Optional

import typer

from ..errors import InvalidArgument
from .common import Connection, handle_errors, with_connection


def column_value(text: str) -> tuple[str, str]:
    """``tag=party`` -> ("tag", "party")."""
    column, sep, value = text.partition("=")
    if not sep or not column.strip() or not value:
        raise InvalidArgument(f"a filter index is COLUMN=VALUE (e.g. tag=party), not {text!r}")
    return column.strip(), value


@handle_errors
@with_connection
def index_cmd(
    collection: Annotated[str, typer.Argument(help="the collection")],
    spec: Annotated[Optional[str], typer.Argument(
        help="the index to build: hnsw, hnsw:m=32,ef_construction=128, ivfflat, ivfflat:lists=100, "
             "or exact (no index); left out: show the collection's index")] = None,
    backend: Annotated[str, typer.Option("--backend", "-b", help="its backend")] = "faiss",
    filter_index: Annotated[Optional[list[str]], typer.Option(
        "--filter-index", help="COLUMN=VALUE (tag, person or camera): also a vector index over only those "
                               "rows, used by searches filtered on exactly that value (pgvector; repeatable)")] = None,
    drop_filter_index: Annotated[Optional[list[str]], typer.Option(
        "--drop-filter-index", help="COLUMN=VALUE: drop that filter index (repeatable)")] = None,
    conn: Connection = None,
) -> None:
    """Build a collection's vector index over the records it holds (records added later are indexed
    as they arrive; ingest alone leaves a new collection with exact search), or show it."""
    adds = [column_value(t) for t in filter_index or []]
    drops = [column_value(t) for t in drop_filter_index or []]
    with conn.target(backend, collection).open(create=False) as store:
        if spec is not None:
            started = time.perf_counter()
            store.build_index(spec)
            typer.echo(f"built {store.index} over {store.count():,} records in "
                       f"{time.perf_counter() - started:.1f} s")
        for column, value in drops:
            gone = store.drop_filter_index(column, value)
            typer.echo(f"dropped the filter index {column}={value}" if gone else f"no filter index {column}={value}")
        for column, value in adds:
            started = time.perf_counter()
            store.build_filter_index(column, value)
            typer.echo(f"built the filter index {column}={value} in {time.perf_counter() - started:.1f} s")
        if spec is None and not adds and not drops:
            typer.echo(f"{backend} collection {collection!r}: {store.count():,} records, index {store.index}")
            for column, value in store.filter_indexes:
                typer.echo(f"  filter index {column}={value}")
