"""What the ``vecface`` commands share: their common options (defined once, as ``Annotated``
types), the store a command works on (:class:`Target`), and the one error handler."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Callable, NoReturn, Optional

import typer

from ..errors import VecfaceError

EXIT_ERROR = 1  # a vecface error stopped the command (ingest adds 3: finished, some files skipped)

EMBEDDER_HELP = ("clip (whole image, CLIP), face-clip (CLIP on each face crop) or face-dlib "
                 "(dlib 128-d face descriptor)")

# ---- the store a command works on
Backend = Annotated[str, typer.Option("--backend", "-b", help="faiss, pgvector or weaviate")]
Collection = Annotated[str, typer.Option("--collection", "-c", help="collection name")]
DataDir = Annotated[Optional[Path], typer.Option(
    "--data-dir", help="vecface data directory (manifest, logs, FAISS files, embedded servers, thumbnails; "
    "default $VECFACE_HOME or the user data dir)")]
Dsn = Annotated[Optional[str], typer.Option(
    "--dsn", help="pgvector: PostgreSQL connection string (default $VECFACE_PG_DSN, else the embedded server)")]
Url = Annotated[Optional[str], typer.Option(
    "--url", help="weaviate: server URL (default $VECFACE_WEAVIATE_URL, else the embedded server)")]
FaissPath = Annotated[Optional[Path], typer.Option("--faiss-path", help="faiss: folder of the collections")]

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


_FLAGS = {"dsn": "--dsn", "url": "--url", "path": "--faiss-path"}


def target(backend: str, collection: str, data_dir: Path | None, dsn: str | None = None, url: str | None = None,
           faiss_path: Path | None = None) -> Target:
    """The :class:`Target` of a command's options; a connection flag the backend does not take is
    a usage error."""
    from ..config import data_dir as resolve_data_dir
    from ..registry import backend_params

    accepted = backend_params(backend)  # an unknown backend is the first error
    given = {"dsn": dsn, "url": url, "path": str(faiss_path) if faiss_path else None}
    wrong = [_FLAGS[key] for key, value in given.items() if value is not None and key not in accepted]
    if wrong:
        raise typer.BadParameter(f"{', '.join(wrong)} do(es) not apply to the {backend} backend")
    return Target(backend, collection, resolve_data_dir(data_dir), {k: v for k, v in given.items() if v is not None})


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
