"""``vecface people``: group a face collection into people and print them; ``name``, ``merge``,
``split``, ``unassign`` fix the result; ``list`` prints without grouping again (:mod:`vecface.people`)."""

from __future__ import annotations

import json
from typing import Annotated, List, Optional

import typer

from .common import AsJson, Backend, Collection, Connection, handle_errors, with_connection

people_app = typer.Typer(help="Group the faces of a collection into people, name, merge and split them.",
                         no_args_is_help=False)

Threshold = Annotated[Optional[float], typer.Option(
    "--threshold", help="same-person cosine distance (default: the embedder's; face-dlib 0.09, "
    "dlib's 0.6 on its raw descriptors); `vecface eval` suggests one for your photos")]


def _opened(conn: Connection, backend: str, collection: str):
    """The store of a command's options (a context manager that closes it). The people live in the
    store, so no local ingest manifest is needed: another data dir pointed at the same server works."""
    return conn.target(backend, collection).open(create=False)


def print_people(people, title: str, as_json: bool = False) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    if as_json:
        typer.echo(json.dumps([p.to_dict() for p in people], indent=2))
        return
    t = Table(title=escape(title), title_justify="left")
    for col, kw in (("person", {}), ("name", {}), ("faces", {"justify": "right"}),
                    ("representative face", {"overflow": "fold"}), ("bbox", {}), ("face id", {})):
        t.add_column(col, **kw)
    for p in people:
        t.add_row(p.id, escape(p.name or ""), str(p.faces), escape(p.path or ""),
                  "" if p.bbox is None else str(list(p.bbox)), p.representative or "")
    Console().print(t)


@people_app.callback(invoke_without_command=True)
@handle_errors
@with_connection
def people_cmd(
    ctx: typer.Context,
    backend: Backend = "faiss",
    collection: Collection = "photos",
    threshold: Threshold = None,
    fresh: Annotated[bool, typer.Option("--fresh", help="forget earlier groups and names (hand edits stay)")] = False,
    as_json: AsJson = False,
    conn: Connection = None,
) -> None:
    """Group the faces of a collection into people (no reference photo needed) and print each
    person with its face count and a representative face. Grouping again keeps ids and names."""
    if ctx.invoked_subcommand is not None:
        given = [p.opts[0] for p in ctx.command.params if p.name and p.opts
                 and getattr(ctx.get_parameter_source(p.name), "name", None) == "COMMANDLINE"]
        if given:  # they would be silently ignored: the subcommand takes its own
            raise typer.BadParameter(f"{', '.join(given)} go(es) after the subcommand: "
                                     f"vecface people {ctx.invoked_subcommand} {' '.join(given)} ...")
        return
    from ..people import group

    with _opened(conn, backend, collection) as store:
        report = group(store, threshold=threshold, fresh=fresh)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
        return
    print_people(report.people, f"{backend}/{collection}: {len(report.people)} people in {report.faces} faces "
                 f"(threshold {report.threshold:g}, {report.changed} face records updated)")


@people_app.command("list")
@handle_errors
@with_connection
def list_cmd(backend: Backend = "faiss", collection: Collection = "photos", as_json: AsJson = False,
             conn: Connection = None) -> None:
    """Print the people as last grouped (nothing is grouped again)."""
    from ..people import list_people

    with _opened(conn, backend, collection) as store:
        print_people(list_people(store), f"{backend}/{collection}: people", as_json)


@people_app.command("name")
@handle_errors
@with_connection
def name_cmd(person: Annotated[str, typer.Argument(help="person id (p3) or current name")],
             name: Annotated[str, typer.Argument(help='the name ("" removes it)')],
             backend: Backend = "faiss", collection: Collection = "photos", as_json: AsJson = False,
             conn: Connection = None) -> None:
    """Name a person (searchable with vecface search --person NAME)."""
    from ..people import rename

    with _opened(conn, backend, collection) as store:
        print_people([rename(store, person, name)], f"{backend}/{collection}: named", as_json)


@people_app.command("merge")
@handle_errors
@with_connection
def merge_cmd(keep: Annotated[str, typer.Argument(help="the person that stays (id or name)")],
              other: Annotated[str, typer.Argument(help="the person whose faces move to KEEP")],
              backend: Backend = "faiss", collection: Collection = "photos", as_json: AsJson = False,
              conn: Connection = None) -> None:
    """Two groups are one person: move OTHER's faces to KEEP."""
    from ..people import merge

    with _opened(conn, backend, collection) as store:
        merged = merge(store, keep, other)
    print_people([merged], f"{backend}/{collection}: merged", as_json)


@people_app.command("split")
@handle_errors
@with_connection
def split_cmd(faces: Annotated[List[str], typer.Argument(help="face record ids (vecface search --json shows them)")],
              backend: Backend = "faiss", collection: Collection = "photos", as_json: AsJson = False,
              conn: Connection = None) -> None:
    """These faces are someone else: make them a new person (kept apart when grouping again)."""
    from ..people import split

    with _opened(conn, backend, collection) as store:
        person = split(store, faces)
    print_people([person], f"{backend}/{collection}: split off", as_json)


@people_app.command("unassign")
@handle_errors
@with_connection
def unassign_cmd(faces: Annotated[List[str], typer.Argument(help="face record ids")],
                 backend: Backend = "faiss", collection: Collection = "photos", conn: Connection = None) -> None:
    """These faces belong to nobody (left out when grouping again)."""
    from ..people import unassign

    with _opened(conn, backend, collection) as store:
        n = unassign(store, faces)
    typer.echo(f"{n} face(s) taken out of their person")


@people_app.command("assign")
@handle_errors
@with_connection
def assign_cmd(backend: Backend = "faiss", collection: Collection = "photos", threshold: Threshold = None,
               conn: Connection = None) -> None:
    """Place faces ingested since the last grouping: the nearest known person within the
    threshold, else new people."""
    from ..people import assign_new

    with _opened(conn, backend, collection) as store:
        done = assign_new(store, threshold=threshold)
    typer.echo(f"{len(done)} new face(s) placed in {len(set(done.values()))} people")

