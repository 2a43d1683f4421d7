"""``vecface check COLLECTION``: is every stored record found by the vector index? ``--repair``
re-indexes the ones that are not (Weaviate after a server was killed, see backends/weaviate_check)."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from .common import EXIT_ERROR, AsJson, Backend, Connection, handle_errors, with_connection

MAX_LISTED = 20


@handle_errors
@with_connection
def check_cmd(
    collection: Annotated[str, typer.Argument(help="the collection to check")],
    backend: Backend = "faiss",
    repair: Annotated[bool, typer.Option("--repair", help="re-index the records the index misses")] = False,
    as_json: AsJson = False,
    conn: Connection = None,
) -> None:
    """Compare the stored records with what the vector index returns; exit 1 if some stay unsearchable."""
    t = conn.target(backend, collection)
    console = Console(stderr=True)
    with t.open(create=False) as store:
        total = store.count()
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      console=console, transient=True, disable=as_json) as bar:
            task = bar.add_task(f"checking {collection}", total=total)
            report = store.check(repair=repair, progress=lambda n: bar.advance(task, n))
    if as_json:
        print(json.dumps({"collection": collection, "backend": backend, "stored": report.stored,
                          "unsearchable": report.unsearchable, "repaired": report.repaired,
                          "still_unsearchable": report.still_unsearchable, "ok": report.ok}))
    else:
        out = Console()
        out.print(f"{collection}: {report.stored} stored, {len(report.unsearchable)} not found by the vector index"
                  + (f", {len(report.repaired)} repaired" if repair else ""), highlight=False)
        for i in report.still_unsearchable[:MAX_LISTED]:
            out.print(f"  unsearchable: {i}", highlight=False, markup=False)
        if report.unsearchable and not repair:
            out.print("run again with --repair to re-index them", highlight=False)
    if not report.ok:
        raise typer.Exit(EXIT_ERROR)
