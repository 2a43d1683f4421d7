"""The ``vecface`` command line."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from . import __version__
from .config import quiet_runtime_dir_warning
from .errors import VecfaceError

quiet_runtime_dir_warning()

app = typer.Typer(
    help="Face and image similarity search over pgvector, Weaviate and FAISS, and a benchmark that compares them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)


def _version(value: bool) -> None:
    if value:
        console.print(f"vecface {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version and exit."),
) -> None:
    """vecface: find faces and images across vector stores, and benchmark the stores."""


@app.command()
def backends(
    dsn: str = typer.Option(None, envvar="VECFACE_PG_DSN", help="PostgreSQL DSN (default: the embedded server)."),
    url: str = typer.Option(None, envvar="VECFACE_WEAVIATE_URL", help="Weaviate URL (default: the embedded server)."),
    data_dir: str = typer.Option(None, help="vecface's data directory (default: $VECFACE_HOME or the user data dir)."),
) -> None:
    """List each backend, whether it is available here, and why not if not."""
    from .registry import check_backends

    statuses = check_backends(pgvector={"dsn": dsn, "data_dir": data_dir},
                              weaviate={"url": url, "data_dir": data_dir},
                              faiss={"path": None})
    table = Table(title="vecface backends")
    table.add_column("backend")
    table.add_column("available")
    table.add_column("details")
    for st in statuses:
        table.add_row(st.name, "[green]yes[/]" if st.available else "[red]no[/]", escape(st.detail))
    console.print(table)


def run() -> None:
    """Entry point: vecface errors are shown as one line, not a traceback."""
    try:
        app()
    except VecfaceError as e:
        err_console.print(f"[red]error:[/] {escape(str(e))}")
        raise SystemExit(1)


# ---- commands contributed by other modules (each module has a register(app) function)
from .cli_search import register as _register_search  # noqa: E402  ingest, search
from .cli_serve import register as _register_serve  # noqa: E402  serve
from .backends.weaviate_server import register as _register_weaviate  # noqa: E402  weaviate install/start/status
from .bench.cli import bench_app as _bench_app, register as _register_bench  # noqa: E402  bench, report
from .bench.embed import register_embed as _register_embed  # noqa: E402  bench embed

_register_search(app)
_register_serve(app)
_register_weaviate(app)
_register_embed(_bench_app)
_register_bench(app)
