"""``vecface ingest``: embed every image under one or more folders into a collection.

Exit codes: 0 every image stored (or already stored), 3 the run finished but some files were
skipped (listed in the summary and the log), 1 an error stopped the run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import InvalidArgument, UnknownCollection
from .common import (
    EMBEDDER_HELP,
    AsJson,
    Backend,
    Collection,
    Connection,
    Device,
    Model,
    Tag,
    handle_errors,
    with_connection,
)


@handle_errors
@with_connection
def ingest_cmd(
    paths: Annotated[list[Path], typer.Argument(help="folders (scanned recursively) or image files")],
    backend: Backend = "faiss",
    collection: Collection = "photos",
    embedder: Annotated[Optional[str], typer.Option(
        "--embedder", "-e", help=EMBEDDER_HELP + "; default: the collection's, else clip")] = None,
    model: Model = None,
    tag: Tag = None,
    batch_size: Annotated[int, typer.Option(min=1, help="images embedded and committed per batch")] = 32,
    workers: Annotated[Optional[int], typer.Option(
        min=0, help="worker processes reading, decoding and embedding images, each loading the model once "
                    "(default: one per core; 0: all in this process)")] = None,
    device: Device = None,
    detector: Annotated[Optional[str], typer.Option(help="face detector: hog (default), cnn or haar")] = None,
    upsample: Annotated[Optional[int], typer.Option(help="dlib detector upsampling (default 1)")] = None,
    min_score: Annotated[Optional[float], typer.Option(
        help="drop dlib detections below this score (default hog 0.5, cnn 0.0)")] = None,
    min_face: Annotated[Optional[int], typer.Option(help="smallest face side in pixels (default 20)")] = None,
    scale_factor: Annotated[Optional[float], typer.Option(help="haar scale factor (default 1.1)")] = None,
    min_neighbors: Annotated[Optional[int], typer.Option(help="haar min neighbours (default 5)")] = None,
    jitter: Annotated[Optional[int], typer.Option(help="dlib descriptor jitters (default 0)")] = None,
    max_side: Annotated[Optional[int], typer.Option(
        help="downscale photos to this long side before detection (default 1600)")] = None,
    max_pixels: Annotated[Optional[int], typer.Option(
        help="refuse images larger than this (decompression bombs; default 100000000)")] = None,
    ray: Annotated[Optional[str], typer.Option(
        "--ray", metavar="ADDRESS", help="do the work on a Ray cluster: its address (host:port), 'auto' (the "
                                         "cluster this machine is part of) or 'local' (start Ray here); "
                                         "needs vecface[ray] and the photos at the same path on every node")] = None,
    prune: Annotated[bool, typer.Option(
        "--prune", help="also delete the records of files under PATHS that are gone from disk")] = False,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="show a progress bar")] = True,
    as_json: AsJson = False,
    conn: Connection = None,
) -> None:
    """Embed every image under PATHS into a collection (idempotent and resumable)."""
    from ..embedders import make_embedder
    from ..ingest import ingest_paths
    from ..manifest import MANIFEST_NAME, Manifest
    from ..collection_info import stored_spec
    from ..search import resolve_spec

    where = conn.target(backend, collection)
    missing = [str(p) for p in paths if not p.expanduser().exists()]
    if missing:  # before anything is opened or stored
        raise InvalidArgument(f"{', '.join(missing)} do(es) not exist")
    det = dict(detector=detector, upsample=upsample, min_score=min_score, min_size=min_face,
               scale_factor=scale_factor, min_neighbors=min_neighbors, jitter=jitter, max_side=max_side)
    with Manifest(where.home / MANIFEST_NAME) as manifest:
        stored = None  # not ingested from here: the collection's own description, if it exists
        if manifest.embedder(backend, collection) is None:
            try:
                with where.open(create=False) as existing:
                    stored = stored_spec(existing)
            except UnknownCollection:
                pass
        spec = resolve_spec(manifest, backend, collection, embedder, model, stored)
        emb = make_embedder(spec, device=device, **{k: v for k, v in det.items() if v is not None})
        with where.open(emb.dim, "cosine") as store:
            # the people are updated once, after every path (not once per path)
            reports, pruned = ingest_paths(store, paths, emb, prune=prune, manifest=manifest, tag=tag,
                                           batch_size=batch_size, workers=workers,
                                           progress=progress and not as_json, max_pixels=max_pixels,
                                           log_dir=where.home / "logs", ray=ray)
    if as_json:
        out = [r.to_dict() for r in reports]
        doc = out[0] if len(out) == 1 else {"runs": out}
        typer.echo(json.dumps({**doc, **pruned.to_dict()} if pruned is not None else
                              (out[0] if len(out) == 1 else out), indent=2))
    else:
        if pruned is not None:
            typer.echo(f"pruned {pruned.files} file(s) gone from disk: {pruned.records} record(s) deleted")
        for report in reports:
            print_report(report)
    raise typer.Exit(max(r.exit_code for r in reports))


def print_report(report) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    out = Console()
    t = Table(title=escape(f"ingest {report.root} -> {report.backend}/{report.collection} ({report.embedder})"),
              show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column(justify="right")
    for label, value in (("image files found", report.files_seen), ("stored (new or changed)", report.files_stored),
                         ("of which replaced", report.files_replaced), ("already stored", report.files_unchanged),
                         ("skipped", len(report.skipped)), ("records stored", report.records_stored),
                         ("old records deleted", report.records_deleted),
                         ("time", f"{report.seconds:.1f} s ({report.images_per_second:.1f} images/s)")):
        t.add_row(label, str(value))
    out.print(t)
    if report.skipped:
        s = Table(title=f"skipped files ({len(report.skipped)})", title_justify="left")
        s.add_column("file", overflow="fold")
        s.add_column("reason", overflow="fold")
        shown = report.skipped[:30]
        for sk in shown:
            s.add_row(escape(sk.path), escape(sk.reason))
        if len(report.skipped) > len(shown):
            s.add_row(f"... {len(report.skipped) - len(shown)} more", "see the log")
        out.print(s)
        counts = ", ".join(f"{n} {why}" for why, n in sorted(report.skipped_by_reason().items()))
        out.print(f"skipped: {counts}", highlight=False)
    out.print(f"log: {report.log_path}", highlight=False)
