"""Backends are registered by name and imported only when used."""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
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


def open_store(backend: str, collection: str, dim: int | None = None, metric: Any = None, *,
               create: bool = True, **options: Any) -> VectorStore:
    """Open (or create) ``collection`` in ``backend``.

    Backend options: faiss ``path``; pgvector ``dsn``, ``data_dir``; weaviate ``url``,
    ``grpc_port``, ``api_key``, ``data_dir``. Options left as None use the backend's default.
    """
    cls = backend_class(backend)
    accepted = set(inspect.signature(cls.__init__).parameters)
    unknown = [k for k in options if k not in accepted]
    if unknown:
        raise InvalidArgument(f"the {backend} backend takes no option(s) {', '.join(unknown)}")
    options = {k: v for k, v in options.items() if v is not None}
    return cls(collection, dim, metric, create=create, **options)


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
