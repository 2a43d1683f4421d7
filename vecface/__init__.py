"""vecface: face and image similarity search over pgvector, Weaviate and FAISS."""

from importlib.metadata import PackageNotFoundError, version as _version

from .errors import *  # noqa: F401,F403 - the exception hierarchy is public API
from .registry import BACKENDS, check_backends, open_store
from .store import VectorStore
from .types import HNSW, Exact, Hit, IVFFlat, Metric, QueryParams, Record, parse_index

try:
    __version__ = _version("vecface")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+source"

__all__ = ["open_store", "check_backends", "BACKENDS", "VectorStore", "Metric", "Record", "Hit",
           "Exact", "HNSW", "IVFFlat", "QueryParams", "parse_index", "__version__"]
