"""``vecface search``: the closest images or faces to a photo, a sentence or a stored record
(through :mod:`vecface.search`, the query service the web page uses too)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, List, Optional

import typer

from .common import AsJson, Backend, Collection, Connection, Device, Model, handle_errors, with_connection


@handle_errors
@with_connection
def search_cmd(
    image: Annotated[Optional[Path], typer.Argument(
        help="query photo (in face collections: the query face)")] = None,
    text: Annotated[Optional[str], typer.Option("--text", "-t", help="search by a sentence (CLIP collections)")] = None,
    record_id: Annotated[Optional[str], typer.Option("--id", help="search with a stored record's vector")] = None,
    k: Annotated[int, typer.Option("-k", "--k", min=1, help="number of hits")] = 10,
    tag: Annotated[Optional[str], typer.Option("--tag", help="only records with this tag")] = None,
    face: Annotated[Optional[int], typer.Option(
        "--face", min=1, help="which face of the query photo (numbered from 1, left to right)")] = None,
    person: Annotated[Optional[List[str]], typer.Option(
        "--person", help="only faces of this person: a name or id from vecface people (repeat for several)")] = None,
    since: Annotated[Optional[str], typer.Option(
        "--since", help="only photos taken on or after this date (YYYY-MM-DD or ISO date/time; EXIF, UTC if no zone)")] = None,
    until: Annotated[Optional[str], typer.Option(
        "--until", help="only photos taken on or before this date (a bare date includes the whole day)")] = None,
    camera: Annotated[Optional[str], typer.Option("--camera", help="only photos from this camera (EXIF make and model)")] = None,
    near: Annotated[Optional[str], typer.Option(
        "--near", help="only photos taken within --km of LAT,LON (EXIF GPS, decimal degrees)")] = None,
    km: Annotated[float, typer.Option("--km", help="the radius of --near, in km")] = 50.0,
    box: Annotated[Optional[str], typer.Option(
        "--box", help="only photos taken inside SOUTH,WEST,NORTH,EAST (EXIF GPS, decimal degrees)")] = None,
    backend: Backend = "faiss",
    collection: Collection = "photos",
    model: Model = None,
    device: Device = None,
    as_json: AsJson = False,
    conn: Connection = None,
) -> None:
    """Find the closest images or faces to a photo, a sentence or a stored record."""
    from ..search import open_collection, query_filter, search_id, search_image, search_text
    from ..whenwhere import Near

    if sum(x is not None for x in (image, text, record_id)) != 1:
        raise typer.BadParameter("give exactly one query: an IMAGE, --text \"...\" or --id RECORD_ID")
    if image is not None and not image.exists():
        raise typer.BadParameter(f"{image} does not exist")
    where = conn.target(backend, collection)
    place = Near.parse(near, km) if near else None
    if record_id is not None:  # the stored vector: no embedder needed
        with where.open(create=False) as store:
            flt = query_filter(store, person=person, since=since, until=until, camera=camera, box=box)
            result = search_id(store, record_id, k, tag=tag, filter=flt, near=place)
    else:
        store, emb = open_collection(backend, collection, data_dir=where.home, model=model, device=device,
                                     **where.connection)
        with store:
            flt = query_filter(store, person=person, since=since, until=until, camera=camera, box=box)
            if text is not None:
                result = search_text(store, emb, text, k, tag=tag, filter=flt, near=place)
            else:
                result = search_image(store, emb, image, k, tag=tag, face=face, filter=flt, near=place)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
    else:
        print_hits(result, backend, collection)


def print_hits(result, backend: str, collection: str) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    out = Console()
    q = result.query
    what = {"image": lambda: f"image {q.get('image')}" + (f" face {q['face']} {q['bbox']}" if "face" in q else ""),
            "text": lambda: f"text {q.get('text')!r}",
            "id": lambda: f"record {q.get('id')} ({q.get('path')})"}[q["mode"]]()
    t = Table(title=escape(f"{backend}/{collection}: {what}"), title_justify="left")
    for col, kw in (("rank", {"justify": "right"}), ("path", {"overflow": "fold"}), ("bbox", {}),
                    ("distance", {"justify": "right"}), ("similarity", {"justify": "right"}),
                    ("tag", {}), ("id", {})):
        t.add_column(col, **kw)
    for n, h in enumerate(result.hits, 1):
        distance = 0.0 if abs(h.distance) < 5e-5 else h.distance  # no "-0.0000" for rounding-level distances
        t.add_row(str(n), escape(h.path or ""), "" if h.bbox is None else str(list(h.bbox)), f"{distance:.4f}",
                  "" if h.similarity is None else f"{h.similarity:.4f}", escape(h.metadata.get("tag") or ""), h.id)
    out.print(t)
    if not result.hits:
        out.print("no hits", highlight=False)
    out.print(f"embed {result.embed_seconds * 1000:.1f} ms, search {result.search_seconds * 1000:.1f} ms",
              highlight=False)
