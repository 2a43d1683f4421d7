"""``vecface backends`` (which backends can be used here, and why not) and ``vecface collections``
(the collections ingested here, from the ingest manifest)."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .common import AsJson, DataDir, Dsn, Url, handle_errors


@handle_errors
def backends_cmd(dsn: Dsn = None, url: Url = None, data_dir: DataDir = None) -> None:
    """List each backend, whether it is available here, and why not if not."""
    from ..registry import check_backends

    statuses = check_backends(pgvector={"dsn": dsn, "data_dir": data_dir},
                              weaviate={"url": url, "data_dir": data_dir})
    table = Table(title="vecface backends")
    table.add_column("backend")
    table.add_column("available")
    table.add_column("details")
    for st in statuses:
        table.add_row(st.name, "[green]yes[/]" if st.available else "[red]no[/]", escape(st.detail))
    Console().print(table)


@handle_errors
def collections_cmd(
    backend: Annotated[Optional[str], typer.Option("--backend", "-b", help="only this backend's")] = None,
    data_dir: DataDir = None,
    as_json: AsJson = False,
) -> None:
    """List the collections ingested here (recorded in the ingest manifest of the data directory):
    backend, name, embedder, dimension, files and records stored, and when the first ingest ran."""
    from ..config import data_dir as resolve_data_dir
    from ..manifest import MANIFEST_NAME, Manifest
    from ..registry import backend_class

    if backend is not None:
        backend_class(backend)  # an unknown name is an error, not an empty list
    with Manifest(resolve_data_dir(data_dir) / MANIFEST_NAME) as manifest:
        rows = []
        for b, name, spec, dim, created in manifest.collections(backend):
            files = manifest.files(b, name)
            rows.append({"backend": b, "collection": name, "embedder": spec.kind, "model": spec.model, "dim": dim,
                         "files": len(files), "records": sum(len(s.ids) for s in files.values()),
                         "created": created})
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title=f"vecface collections ({manifest.path})", title_justify="left")
    for col in ("backend", "collection", "embedder", "dim", "files", "records", "created"):
        table.add_column(col, justify="right" if col in ("dim", "files", "records") else "left")
    for r in rows:
        embedder = r["embedder"] + (f" ({r['model']})" if r["model"] else "")
        table.add_row(r["backend"], r["collection"], escape(embedder), str(r["dim"]), str(r["files"]),
                      str(r["records"]), r["created"])
    Console().print(table)
    if not rows:
        Console().print("no collection ingested here yet (vecface ingest FOLDER --collection NAME)", highlight=False)
