"""What the ``vecface`` commands share: their common options (defined once, as ``Annotated``
types), the store a command works on (:class:`Target`), and the one error handler."""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Callable, List, NoReturn, Optional

import typer

from ..errors import VecfaceError

EXIT_ERROR = 1  # a vecface error stopped the command (ingest adds 3: finished, some files skipped)

EMBEDDER_HELP = ("clip (whole image, CLIP), face-clip (CLIP on each face crop) or face-dlib "
                 "(dlib 128-d face descriptor)")

# ---- the store a command works on
PANEL = "Where the store is"
Backend = Annotated[str, typer.Option("--backend", "-b", help="faiss, pgvector or weaviate")]
Collection = Annotated[str, typer.Option("--collection", "-c", help="collection name")]
DataDir = Annotated[Optional[Path], typer.Option(
    "--data-dir", rich_help_panel=PANEL,
    help="vecface data directory (manifest, logs, FAISS files, embedded servers, thumbnails; "
    "default $VECFACE_HOME or the user data dir)")]
Dsn = Annotated[Optional[str], typer.Option(
    "--dsn", rich_help_panel=PANEL,
    help="pgvector: PostgreSQL connection string (default $VECFACE_PG_DSN, else the embedded server)")]
ReadDsn = Annotated[Optional[List[str]], typer.Option(
    "--read-dsn", rich_help_panel=PANEL,
    help="pgvector: a streaming replica to search (repeatable; default $VECFACE_PG_READ_DSNS)")]
Url = Annotated[Optional[str], typer.Option(
    "--url", rich_help_panel=PANEL,
    help="weaviate: server URL, or a cluster's node URLs separated by commas "
    "(default $VECFACE_WEAVIATE_URL, else the embedded server)")]
Replication = Annotated[Optional[int], typer.Option(
    "--replication", min=1, rich_help_panel=PANEL,
    help="weaviate: copies of each object when the collection is created (default $VECFACE_WEAVIATE_REPLICATION)")]
Shards = Annotated[Optional[int], typer.Option(
    "--shards", min=1, rich_help_panel=PANEL,
    help="weaviate: shards when the collection is created (default $VECFACE_WEAVIATE_SHARDS)")]
Consistency = Annotated[Optional[str], typer.Option(
    "--consistency", rich_help_panel=PANEL,
    help="weaviate: replicas that answer each read and write: one, quorum or all (default $VECFACE_WEAVIATE_CONSISTENCY)")]
FaissPath = Annotated[Optional[Path], typer.Option(
    "--faiss-path", rich_help_panel=PANEL, help="faiss: folder of the collections")]

# ---- the embedder
Model = Annotated[Optional[str], typer.Option(
    "--model", help="CLIP model name in the HF cache or a local sentence-transformers directory "
    "(default clip-ViT-B-32; for search: overrides the one recorded at ingest)")]
Device = Annotated[Optional[str], typer.Option("--device", help="torch device for CLIP (default cuda if present)")]
Tag = Annotated[Optional[str], typer.Option("--tag", help="label stored with every record / only records with it")]
AsJson = Annotated[bool, typer.Option("--json", help="print the result as JSON")]


@dataclass
class Target:
    """One collection in one backend: vecface's data directory for this command and the
    connection options given (``dsn``, ``url``, ``path``) to reach it."""

    backend: str
    collection: str
    home: Path
    connection: dict[str, Any]

    def open(self, dim: int | None = None, metric: str | None = None, *, create: bool = True):
        from ..registry import open_store

        return open_store(self.backend, self.collection, dim, metric, create=create, data_dir=self.home,
                          **self.connection)


# the connection options: (command parameter, annotation, store option, flag)
_CONNECTION = (("data_dir", DataDir, None, "--data-dir"), ("dsn", Dsn, "dsn", "--dsn"),
               ("read_dsn", ReadDsn, "read_dsns", "--read-dsn"), ("url", Url, "url", "--url"),
               ("replication", Replication, "replication_factor", "--replication"),
               ("shards", Shards, "shards", "--shards"), ("consistency", Consistency, "consistency", "--consistency"),
               ("faiss_path", FaissPath, "path", "--faiss-path"))


@dataclass(frozen=True)
class Connection:
    """The connection options a command was given (see :func:`with_connection`)."""

    data_dir: Path | None
    given: dict[str, Any]  # store option -> value, only those given

    def target(self, backend: str, collection: str) -> Target:
        """The :class:`Target` for ``backend``/``collection``; a connection flag the backend does not
        take is a usage error."""
        from ..config import data_dir as resolve_data_dir
        from ..registry import backend_params

        accepted = backend_params(backend)  # an unknown backend is the first error
        flags = {option: flag for _, _, option, flag in _CONNECTION}
        wrong = [flags[key] for key in self.given if key not in accepted]
        if wrong:
            raise typer.BadParameter(f"{', '.join(wrong)} do(es) not apply to the {backend} backend")
        return Target(backend, collection, resolve_data_dir(self.data_dir), dict(self.given))

    def options(self, backend: str) -> dict[str, Any]:
        """The options given that ``backend`` takes (for commands that reach several backends)."""
        from ..registry import backend_params

        return {k: v for k, v in self.given.items() if k in backend_params(backend)}


def with_connection(command: Callable[..., Any]) -> Callable[..., Any]:
    """Give a command the options that say where its store is (``--data-dir``, ``--dsn``,
    ``--read-dsn``, ``--url``, ``--replication``, ``--shards``, ``--consistency``, ``--faiss-path``),
    declared once here, and pass them to it as one :class:`Connection`, its ``conn`` parameter."""
    signature = inspect.signature(command, eval_str=True)
    own = [p for p in signature.parameters.values() if p.name != "conn"]
    added = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation)
             for name, annotation, _, _ in _CONNECTION]

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        values = {name: kwargs.pop(name, None) for name, _, _, _ in _CONNECTION}
        given = {option: values[name] for name, _, option, _ in _CONNECTION if option and values[name]}
        if "path" in given:
            given["path"] = str(given["path"])
        return command(*args, conn=Connection(values["data_dir"], given), **kwargs)

    wrapper.__signature__ = signature.replace(parameters=own + added)  # what typer reads
    wrapper.__annotations__ = {**{p.name: p.annotation for p in own}, **{p.name: p.annotation for p in added}}
    return wrapper


# ---- the one error handler

def show_error(error: VecfaceError) -> None:
    """A vecface error as one line on stderr (no traceback)."""
    from rich.console import Console
    from rich.markup import escape

    Console(stderr=True).print(f"[bold red]error:[/] {escape(str(error))}", highlight=False, soft_wrap=True)


def fail(error: VecfaceError, code: int = EXIT_ERROR) -> NoReturn:
    """Show ``error`` and end the command with exit code ``code``."""
    show_error(error)
    raise typer.Exit(code)


def handle_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a command so a :class:`VecfaceError` it raises goes through :func:`fail`."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except VecfaceError as e:
            fail(e)

    return wrapper
