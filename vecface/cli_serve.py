"""The ``vecface serve`` command: the web search page for one collection.

Added to the main Typer app with ``register(app)``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from .errors import VecfaceError


def register(app: typer.Typer) -> None:
    """Add ``serve`` to ``app``."""

    @app.command("serve")
    def serve_cmd(
        backend: str = typer.Option("faiss", "--backend", "-b", help="faiss, pgvector or weaviate"),
        collection: str = typer.Option("photos", "--collection", "-c", help="collection name (ingested first)"),
        host: str = typer.Option("127.0.0.1", "--host", help="address to listen on; 0.0.0.0 serves other "
                                 "machines too (the webcam then needs https or localhost in the browser)"),
        port: int = typer.Option(8000, "--port", "-p", min=0, max=65535, help="port to listen on"),
        data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="vecface data directory "
                                                "(manifest, FAISS files, embedded servers, thumbnail cache)"),
        model: Optional[str] = typer.Option(None, "--model", help="override the CLIP model directory recorded at ingest"),
        device: Optional[str] = typer.Option(None, "--device", help="torch device for CLIP"),
        dsn: Optional[str] = typer.Option(None, "--dsn", help="pgvector: PostgreSQL connection string"),
        url: Optional[str] = typer.Option(None, "--url", help="weaviate: server URL"),
        faiss_path: Optional[Path] = typer.Option(None, "--faiss-path", help="faiss: folder of the collections"),
        max_upload_mb: float = typer.Option(10.0, "--max-upload-mb", min=0.01, help="largest image upload, in MB"),
        max_pixels: int = typer.Option(40_000_000, "--max-pixels", min=1, help="largest uploaded image, in pixels"),
        allow_host: Optional[list[str]] = typer.Option(None, "--allow-host", help="extra Host header value to "
                                                       "serve (a DNS name this machine is reached by); repeatable"),
    ) -> None:
        """Start the web search page (and its JSON API, documented at /docs)."""
        from rich.console import Console

        from .cli_search import backend_options

        err = Console(stderr=True)
        if data_dir is not None:  # one data dir for the manifest, stores, servers and thumbnails
            os.environ["VECFACE_HOME"] = str(Path(data_dir).expanduser().absolute())
        try:
            import uvicorn
        except ImportError:
            err.print("[bold red]error:[/] vecface serve needs the web extra: pip install 'vecface[web]'")
            raise typer.Exit(1)
        try:
            from .web.app import LOCAL_HOSTS, create_app

            hosts = list(LOCAL_HOSTS) + [host] + list(allow_host or [])
            if host in ("0.0.0.0", "::", ""):
                hosts = ["*"]
            opts = backend_options(backend, dsn=dsn, url=url, faiss_path=faiss_path)
            app = create_app(backend, collection, store_options=opts, model=model, device=device,
                             max_upload=int(max_upload_mb * 1024 * 1024), max_pixels=max_pixels,
                             allowed_hosts=hosts)
        except VecfaceError as e:
            err.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
            raise typer.Exit(1)
        svc = app.state.vecface
        shown = f"[{host}]" if ":" in host else host
        err.print(f"vecface: {backend}/{collection} ({svc.embedder.name}) on http://{shown}:{port}/ "
                  f"(API docs: http://{shown}:{port}/docs); Ctrl-C stops", highlight=False)
        uvicorn.run(app, host=host, port=port, log_level="info", server_header=False)


def main() -> None:
    """``python -m vecface.cli_serve serve ...``: this command on its own."""
    app = typer.Typer(add_completion=False, no_args_is_help=True)

    @app.callback()
    def _group() -> None:
        """vecface web search page."""

    register(app)
    app()


if __name__ == "__main__":
    main()
