"""``vecface backends`` (which backends can be used here, and why not), ``vecface collections``
(a backend's collections, from the backend itself; or those ingested here, from the ingest
manifest) and ``vecface drop`` (delete one, with its manifest rows)."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..config import data_dir as resolve_data_dir
from .common import AsJson, Connection, handle_errors, with_connection


@handle_errors
@with_connection
def backends_cmd(conn: Connection = None) -> None:
    """List each backend, whether it is available here, and why not if not."""
    from ..registry import check_backends

    statuses = check_backends(pgvector={**conn.options("pgvector"), "data_dir": conn.data_dir},
                              weaviate={**conn.options("weaviate"), "data_dir": conn.data_dir})
    table = Table(title="vecface backends")
    table.add_column("backend")
    table.add_column("available")
    table.add_column("details")
    for st in statuses:
        table.add_row(st.name, "[green]yes[/]" if st.available else "[red]no[/]", escape(st.detail))
    Console().print(table)


@handle_errors
@with_connection
def collections_cmd(
    backend: Annotated[Optional[str], typer.Option(
        "--backend", "-b", help="list every collection this backend holds, from the backend itself")] = None,
    as_json: AsJson = False,
    conn: Connection = None,
) -> None:
    """List collections: with --backend, every collection that backend holds (embedder, count,
    index, size, from the backend itself, so also those ingested from another machine); without,
    the collections ingested here (the ingest manifest of the data directory). Files and records
    ingested from here come from the manifest."""
    from ..collection_info import spec_of
    from ..manifest import MANIFEST_NAME, Manifest
    from ..registry import backend_class, backend_options

    if backend is not None:
        where = conn.target(backend, "x")  # checks the backend and the flags
        found = backend_class(backend).list_collections(
            **backend_options(backend, data_dir=where.home, **where.connection))
    with Manifest(resolve_data_dir(conn.data_dir) / MANIFEST_NAME) as manifest:
        here = {(b, name): (spec, dim, created) for b, name, spec, dim, created in manifest.collections(backend)}
        rows = []
        for b, name in ([(backend, c.name) for c in found] if backend is not None else list(here)):
            files = manifest.files(b, name) if (b, name) in here else {}
            spec, dim, created = here.get((b, name), (None, None, None))
            row = {"backend": b, "collection": name, "embedder": spec.kind if spec else None,
                   "model": spec.model if spec else None, "dim": dim, "files": len(files) if spec else None,
                   "records": sum(len(s.ids) for s in files.values()) if spec else None, "created": created}
            rows.append(row)
        if backend is not None:
            for row, c in zip(rows, found):
                own = spec_of(c.info)
                row.update(dim=c.dim, metric=c.metric, index=c.index, count=c.count, size_bytes=c.size_bytes,
                           created=row["created"] or c.info.get("created"), problem=c.problem)
                if row["embedder"] is None and own is not None:
                    row.update(embedder=own.kind, model=own.model)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    cols = (("backend", "collection", "embedder", "dim", "metric", "index", "count", "size_bytes", "files", "created",
             "problem")
            if backend is not None else ("backend", "collection", "embedder", "dim", "files", "records", "created"))
    title = f"{backend} collections" if backend is not None else f"collections ingested here ({manifest.path})"
    table = Table(title=f"vecface {title}", title_justify="left")
    for col in cols:
        table.add_column(col.replace("_bytes", ""), justify="right" if col in _NUMERIC else "left")
    for r in rows:
        embedder = (r["embedder"] or "?") + (f" ({r['model']})" if r["model"] else "")
        cells = {**r, "embedder": embedder, "size_bytes": _size(r.get("size_bytes"))}
        table.add_row(*(escape("" if cells.get(c) is None else str(cells[c])) for c in cols))
    Console().print(table)
    if not rows:
        Console().print("no collection yet (vecface ingest FOLDER --collection NAME)", highlight=False)


_NUMERIC = ("dim", "files", "records", "count", "size_bytes")


def _size(n: int | None) -> str | None:
    if n is None:
        return None
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return None


@handle_errors
@with_connection
def drop_cmd(
    collection: Annotated[str, typer.Argument(help="the collection to delete")],
    backend: Annotated[str, typer.Option("--backend", "-b", help="its backend")] = "faiss",
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")] = False,
    conn: Connection = None,
) -> None:
    """Delete a collection and everything in it from its backend, and forget it in the ingest
    manifest here (its people go with it: they are kept in the store). Asks first unless --yes."""
    from ..manifest import MANIFEST_NAME, Manifest

    where = conn.target(backend, collection)
    store = where.open(create=False)
    try:
        count = store.count()
        if not yes and not typer.confirm(f"delete collection {collection!r} ({count} records) from {backend}?"):
            typer.echo("nothing deleted")
            raise typer.Exit(1)
        store.drop()
    finally:
        store.close()
    with Manifest(where.home / MANIFEST_NAME) as manifest:
        manifest.forget_collection(backend, collection)
    typer.echo(f"dropped {backend} collection {collection!r} ({count} records)")
