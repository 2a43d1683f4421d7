"""The ``vecface`` command line: one typer ``app``; each command lives in its own module
(:mod:`.ingest`, :mod:`.search`, :mod:`.serve`, :mod:`.info`, :mod:`.servers`), shares its
options and its one error handler through :mod:`.common`, and is registered here together with
the benchmark's commands (``vecface.bench.cli``)."""

from __future__ import annotations

import typer
from rich.console import Console

from .. import __version__
from ..bench.cli import bench_app, register as register_bench
from ..bench.embed import register_embed
from ..config import quiet_runtime_dir_warning
from ..errors import VecfaceError
from .common import EXIT_ERROR, show_error
from .check import check_cmd
from .eval import eval_cmd
from .index import index_cmd
from .info import backends_cmd, collections_cmd, drop_cmd
from .ingest import ingest_cmd
from .people import people_app
from .search import search_cmd
from .serve import serve_cmd
from .servers import pg_app, weaviate_app

quiet_runtime_dir_warning()

app = typer.Typer(
    help="Face and image similarity search over pgvector, Weaviate and FAISS, and a benchmark that compares them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        Console().print(f"vecface {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version and exit."),
) -> None:
    """vecface: find faces and images across vector stores, and benchmark the stores."""


app.command("ingest")(ingest_cmd)
app.command("search")(search_cmd)
app.command("index")(index_cmd)
app.command("serve")(serve_cmd)
app.command("backends")(backends_cmd)
app.command("collections")(collections_cmd)
app.command("drop")(drop_cmd)
app.command("check")(check_cmd)
app.add_typer(weaviate_app, name="weaviate")
app.add_typer(pg_app, name="pg")
app.add_typer(people_app, name="people")
app.command("eval")(eval_cmd)
register_embed(bench_app)
register_bench(app)


def run() -> None:
    """The ``vecface`` entry point."""
    try:
        app()
    except VecfaceError as e:  # from a command registered without handle_errors (bench)
        show_error(e)
        raise SystemExit(EXIT_ERROR) from None
