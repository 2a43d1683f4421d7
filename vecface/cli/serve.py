"""``vecface serve``: the web search page for one collection (see :mod:`vecface.web`)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from ..errors import MissingDependency
from .common import Backend, Collection, Connection, Device, Model, handle_errors, with_connection


@handle_errors
@with_connection
def serve_cmd(
    backend: Backend = "faiss",
    collection: Collection = "photos",
    host: Annotated[str, typer.Option(help="address to listen on; 0.0.0.0 serves other machines too (the "
                                           "webcam then needs https or localhost in the browser)")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", "-p", min=0, max=65535, help="port to listen on")] = 8000,
    model: Model = None,
    device: Device = None,
    max_upload_mb: Annotated[float, typer.Option(min=0.01, help="largest image upload, in MB")] = 10.0,
    max_pixels: Annotated[int, typer.Option(min=1, help="largest uploaded image, in pixels")] = 40_000_000,
    allow_host: Annotated[Optional[list[str]], typer.Option(
        help="extra Host header value to serve (a DNS name this machine is reached by); repeatable")] = None,
    conn: Connection = None,
) -> None:
    """Start the web search page (and its JSON API, documented at /docs)."""
    from rich.console import Console

    try:
        import uvicorn
    except ImportError as e:
        raise MissingDependency(e.name or "uvicorn", extra="web", purpose="vecface serve") from None
    from ..web import LOCAL_HOSTS, create_app

    where = conn.target(backend, collection)
    hosts = ["*"] if host in ("0.0.0.0", "::", "") else [*LOCAL_HOSTS, host, *(allow_host or [])]
    app = create_app(backend, collection, store_options=where.connection, data_dir=where.home, model=model,
                     device=device, max_upload=int(max_upload_mb * 1024 * 1024), max_pixels=max_pixels,
                     allowed_hosts=hosts)
    shown = f"[{host}]" if ":" in host else host
    Console(stderr=True).print(
        f"vecface: {backend}/{collection} ({app.state.vecface.embedder.name}) on http://{shown}:{port}/ "
        f"(API docs: http://{shown}:{port}/docs); Ctrl-C stops", highlight=False)
    uvicorn.run(app, host=host, port=port, log_level="info", server_header=False)
