"""The ``vecface ingest`` and ``vecface search`` commands.

Added to the main Typer app with ``register(app)``. Exit codes of ``ingest``: 0 every image
stored (or already stored), 3 the run finished but some files were skipped (listed in the summary
and the log), 1 an error stopped the run.
"""

from __future__ import annotations

import inspect
import json
import os
from pathlib import Path
from typing import Any, Optional

import typer

from .errors import InvalidArgument, VecfaceError

EMBEDDER_HELP = "clip (whole image, CLIP), face-clip (CLIP on each face crop) or face-dlib (dlib 128-d face descriptor)"


def _err(msg: str) -> None:
    from rich.console import Console

    Console(stderr=True).print(f"[bold red]error:[/] {msg}", highlight=False, soft_wrap=True)


def _set_data_dir(data_dir: Optional[Path]) -> None:
    # one data directory for everything this command touches: the manifest, the default FAISS
    # folder, the embedded PostgreSQL/Weaviate servers, the logs
    if data_dir is not None:
        os.environ["VECFACE_HOME"] = str(Path(data_dir).expanduser().absolute())


def backend_options(backend: str, *, dsn: str | None = None, url: str | None = None,
                    faiss_path: Path | None = None) -> dict[str, Any]:
    """The connection options the chosen backend takes, from the CLI flags."""
    from .registry import backend_class

    accepted = set(inspect.signature(backend_class(backend).__init__).parameters)
    given = {"dsn": dsn, "url": url, "path": str(faiss_path) if faiss_path else None}
    wrong = [flag for flag, key in (("--dsn", "dsn"), ("--url", "url"), ("--faiss-path", "path"))
             if given[key] is not None and key not in accepted]
    if wrong:
        raise typer.BadParameter(f"{', '.join(wrong)} do(es) not apply to the {backend} backend")
    return {k: v for k, v in given.items() if v is not None and k in accepted}


def register(app: typer.Typer) -> None:
    """Add ``ingest`` and ``search`` to ``app``."""

    @app.command("ingest")
    def ingest_cmd(
        path: Path = typer.Argument(..., help="a folder (scanned recursively) or one image file"),
        backend: str = typer.Option("faiss", "--backend", "-b", help="faiss, pgvector or weaviate"),
        collection: str = typer.Option("photos", "--collection", "-c", help="collection name"),
        embedder: Optional[str] = typer.Option(None, "--embedder", "-e",
                                               help=EMBEDDER_HELP + "; default: the collection's, else clip"),
        model: Optional[str] = typer.Option(None, "--model", help="CLIP model name in the HF cache or a local "
                                            "sentence-transformers directory (default clip-ViT-B-32)"),
        tag: Optional[str] = typer.Option(None, "--tag", help="label stored with every record, to filter on"),
        batch_size: int = typer.Option(32, "--batch-size", min=1, help="images embedded and committed per batch"),
        workers: int = typer.Option(2, "--workers", min=1, help="threads reading and decoding images"),
        device: Optional[str] = typer.Option(None, "--device", help="torch device for CLIP (default cuda if present)"),
        detector: Optional[str] = typer.Option(None, "--detector", help="face detector: hog (default), cnn or haar"),
        upsample: Optional[int] = typer.Option(None, "--upsample", help="dlib detector upsampling (default 1)"),
        min_score: Optional[float] = typer.Option(None, "--min-score", help="drop dlib detections below this "
                                                  "score (default hog 0.5, cnn 0.0)"),
        min_face: Optional[int] = typer.Option(None, "--min-face", help="smallest face side in pixels (default 20)"),
        scale_factor: Optional[float] = typer.Option(None, "--scale-factor", help="haar scale factor (default 1.1)"),
        min_neighbors: Optional[int] = typer.Option(None, "--min-neighbors", help="haar min neighbours (default 5)"),
        jitter: Optional[int] = typer.Option(None, "--jitter", help="dlib descriptor jitters (default 0)"),
        max_side: Optional[int] = typer.Option(None, "--max-side", help="downscale photos to this long side "
                                               "before detection (default 1600)"),
        max_pixels: Optional[int] = typer.Option(None, "--max-pixels", help="refuse images larger than this "
                                                 "(decompression bombs; default 100000000)"),
        data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="vecface data directory "
                                                "(manifest, logs, FAISS files, embedded servers)"),
        dsn: Optional[str] = typer.Option(None, "--dsn", help="pgvector: PostgreSQL connection string "
                                          "(default: the embedded server)"),
        url: Optional[str] = typer.Option(None, "--url", help="weaviate: server URL (default: the embedded one)"),
        faiss_path: Optional[Path] = typer.Option(None, "--faiss-path", help="faiss: folder of the collections"),
        progress: bool = typer.Option(True, "--progress/--no-progress", help="show a progress bar"),
        as_json: bool = typer.Option(False, "--json", help="print the report as JSON"),
    ) -> None:
        """Embed every image under PATH into a collection (idempotent and resumable)."""
        from .embedders import EmbedderSpec, make_embedder
        from .ingest import EXIT_ERROR, ingest_folder
        from .manifest import Manifest
        from .registry import open_store

        _set_data_dir(data_dir)
        det = {k: v for k, v in dict(detector=detector, upsample=upsample, min_score=min_score, min_size=min_face,
                                     scale_factor=scale_factor, min_neighbors=min_neighbors, jitter=jitter,
                                     max_side=max_side).items() if v is not None}
        try:
            opts = backend_options(backend, dsn=dsn, url=url, faiss_path=faiss_path)
            with Manifest() as manifest:
                known = manifest.embedder(backend, collection)
                if embedder is None:
                    spec = known[0] if known else EmbedderSpec("clip")
                else:
                    spec = EmbedderSpec(embedder, model, {})
                    if known and known[0].kind == embedder and model is None:
                        spec = known[0]
                asked = model or spec.model
                if asked and Path(asked).expanduser().is_dir():
                    asked = str(Path(asked).expanduser().resolve())
                if known and known[0].identity() != EmbedderSpec(spec.kind, asked).identity():
                    was = known[0]
                    raise InvalidArgument(
                        f"collection {collection!r} was ingested with --embedder {was.kind}"
                        + (f" --model {was.model}" if was.model else "")
                        + "; use another --collection for another embedder or model")
                emb = make_embedder(spec, model=model, device=device, **det)
                with open_store(backend, collection, emb.dim, "cosine", **opts) as store:
                    report = ingest_folder(store, path, emb, tag=tag, batch_size=batch_size, workers=workers,
                                           progress=progress and not as_json, manifest=manifest,
                                           max_pixels=max_pixels)
        except VecfaceError as e:
            _err(str(e))
            raise typer.Exit(EXIT_ERROR)
        if as_json:
            typer.echo(json.dumps(report.to_dict(), indent=2))
        else:
            _print_report(report)
        raise typer.Exit(report.exit_code)

    @app.command("search")
    def search_cmd(
        image: Optional[Path] = typer.Argument(None, help="query photo (in face collections: the query face)"),
        text: Optional[str] = typer.Option(None, "--text", "-t", help="search by a sentence (CLIP collections)"),
        record_id: Optional[str] = typer.Option(None, "--id", help="search with a stored record's vector"),
        k: int = typer.Option(10, "-k", "--k", min=1, help="number of hits"),
        tag: Optional[str] = typer.Option(None, "--tag", help="only records with this tag"),
        face: Optional[int] = typer.Option(None, "--face", min=1, help="which face of the query photo "
                                           "(numbered from 1, left to right)"),
        backend: str = typer.Option("faiss", "--backend", "-b", help="faiss, pgvector or weaviate"),
        collection: str = typer.Option("photos", "--collection", "-c", help="collection name"),
        model: Optional[str] = typer.Option(None, "--model", help="override the CLIP model directory recorded at ingest"),
        device: Optional[str] = typer.Option(None, "--device", help="torch device for CLIP"),
        data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="vecface data directory"),
        dsn: Optional[str] = typer.Option(None, "--dsn", help="pgvector: PostgreSQL connection string"),
        url: Optional[str] = typer.Option(None, "--url", help="weaviate: server URL"),
        faiss_path: Optional[Path] = typer.Option(None, "--faiss-path", help="faiss: folder of the collections"),
        as_json: bool = typer.Option(False, "--json", help="print the hits as JSON"),
    ) -> None:
        """Find the closest images or faces to a photo, a sentence or a stored record."""
        from .registry import open_store
        from .search import open_collection, search_id, search_image, search_text

        _set_data_dir(data_dir)
        given = [x for x in (image, text, record_id) if x is not None]
        if len(given) != 1:
            _err("give exactly one query: an IMAGE, --text \"...\" or --id RECORD_ID")
            raise typer.Exit(2)
        try:
            opts = backend_options(backend, dsn=dsn, url=url, faiss_path=faiss_path)
            if record_id is not None:
                with open_store(backend, collection, create=False, **opts) as store:
                    result = search_id(store, record_id, k, tag=tag)
            else:
                store, emb = open_collection(backend, collection, model=model, device=device, **opts)
                with store:
                    if text is not None:
                        result = search_text(store, emb, text, k, tag=tag)
                    else:
                        if not image.exists():
                            raise typer.BadParameter(f"{image} does not exist")
                        result = search_image(store, emb, image, k, tag=tag, face=face)
        except VecfaceError as e:
            _err(str(e))
            raise typer.Exit(1)
        if as_json:
            typer.echo(json.dumps(result.to_dict(), indent=2))
        else:
            _print_hits(result, backend, collection)


def _print_report(report) -> None:
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


def _print_hits(result, backend: str, collection: str) -> None:
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
        t.add_row(str(n), escape(h.path or ""), "" if h.bbox is None else str(list(h.bbox)), f"{0.0 if abs(h.distance) < 5e-5 else h.distance:.4f}",
                  "" if h.similarity is None else f"{h.similarity:.4f}", h.metadata.get("tag") or "", h.id)
    out.print(t)
    if not result.hits:
        out.print("no hits", highlight=False)
    out.print(f"embed {result.embed_seconds * 1000:.1f} ms, search {result.search_seconds * 1000:.1f} ms", highlight=False)


def main() -> None:
    """``python -m vecface.cli_search ingest|search ...``: these two commands on their own."""
    app = typer.Typer(add_completion=False, no_args_is_help=True)
    register(app)
    app()


if __name__ == "__main__":
    main()
