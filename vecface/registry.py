"""Backends are registered by name and imported only when used."""

from __future__ import annotations

import importlib
import inspect
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import InvalidArgument, MissingDependency, UnknownBackend, VecfaceError
from .store import VectorStore

# name -> (module, class). Modules are imported lazily, so a missing optional package only
# matters for the backend that needs it.
BACKENDS: dict[str, tuple[str, str]] = {
    "faiss": ("vecface.backends.faiss_store", "FaissStore"),
    "pgvector": ("vecface.backends.pg_store", "PgVectorStore"),
    "weaviate": ("vecface.backends.weaviate_store", "WeaviateStore"),
}


def backend_class(name: str) -> type[VectorStore]:
    if name not in BACKENDS:
        raise UnknownBackend(f"unknown backend {name!r}; known: {', '.join(BACKENDS)}")
    module, cls = BACKENDS[name]
    try:
        mod = importlib.import_module(module)
    except MissingDependency:
        raise
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise MissingDependency(e.name or str(e), extra=name, purpose=f"the {name} backend") from e
    return getattr(mod, cls)


def backend_params(backend: str) -> set[str]:
    """The keyword options ``backend``'s store takes."""
    return set(inspect.signature(backend_class(backend).__init__).parameters) - {"self", "collection", "dim",
                                                                                  "metric", "create"}


def backend_options(backend: str, *, data_dir: str | os.PathLike[str] | None = None, **given: Any) -> dict[str, Any]:
    """Options for ``open_store(backend, ...)``: the ``given`` ones not None (an option the backend
    does not take raises InvalidArgument), plus vecface's data directory, passed as ``data_dir``
    where the backend takes one, else as its folder ``<data dir>/<backend>`` (FAISS's ``path``)."""
    accepted = backend_params(backend)
    options = {k: v for k, v in given.items() if v is not None}
    unknown = [k for k in options if k not in accepted]
    if unknown:
        raise InvalidArgument(f"the {backend} backend takes no option(s) {', '.join(unknown)}")
    if data_dir is not None:
        if "data_dir" in accepted:
            options.setdefault("data_dir", str(data_dir))
        elif "path" in accepted:
            options.setdefault("path", str(Path(data_dir) / backend))
    return options


def open_store(backend: str, collection: str, dim: int | None = None, metric: Any = None, *,
               create: bool = True, **options: Any) -> VectorStore:
    """Open (or create) ``collection`` in ``backend``.

    Backend options: every backend ``data_dir``; faiss ``path``, ``lock_timeout``; pgvector ``dsn``,
    ``read_dsns``, ``read_your_writes``, ``load_streams``, ``maintenance_work_mem``; weaviate ``url``,
    ``grpc_port``, ``api_key``, ``replication_factor``, ``shards``, ``consistency``. Options left as
    None use the backend's default.
    """
    options = backend_options(backend, **options)
    return backend_class(backend)(collection, dim, metric, create=create, **options)


@dataclass
class BackendStatus:
    name: str
    available: bool
    detail: str


def check_backends(**options_by_backend: dict[str, Any]) -> list[BackendStatus]:
    """Whether each backend can be used here, and why not (never raises)."""
    out = []
    for name in BACKENDS:
        try:
            cls = backend_class(name)
            detail = cls.probe(**{k: v for k, v in options_by_backend.get(name, {}).items() if v is not None})
            out.append(BackendStatus(name, True, detail))
        except VecfaceError as e:
            out.append(BackendStatus(name, False, str(e)))
        except Exception as e:  # a probe must never crash the listing
            out.append(BackendStatus(name, False, f"{type(e).__name__}: {e}"))
    return out
