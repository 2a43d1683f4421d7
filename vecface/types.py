"""Value types shared by every backend: metrics, records, hits, index specs, filters."""

from __future__ import annotations

import collections.abc as _abc
import enum
import json
import math
import re
import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence, Union

import numpy as np

from .errors import DimensionMismatch, InvalidArgument, InvalidName, NonFiniteVector


class Metric(enum.Enum):
    """A distance metric, with what each backend calls it.

    ``distance`` is always "smaller is closer":
    cosine: 1 - cos(a, b); l2: Euclidean distance (not squared); ip: -<a, b>.
    ``similarity`` is cos(a, b) for cosine, <a, b> for ip, and None for l2.
    """

    COSINE = ("cosine", "<=>", "vector_cosine_ops", "cosine")
    L2 = ("l2", "<->", "vector_l2_ops", "l2-squared")
    IP = ("ip", "<#>", "vector_ip_ops", "dot")

    def __init__(self, label: str, pg_operator: str, pg_opclass: str, weaviate_distance: str):
        self.label = label
        self.pg_operator = pg_operator
        self.pg_opclass = pg_opclass
        self.weaviate_distance = weaviate_distance

    @property
    def faiss_metric(self) -> int:
        import faiss

        # cosine is inner product over L2-normalised vectors
        return faiss.METRIC_L2 if self is Metric.L2 else faiss.METRIC_INNER_PRODUCT

    @property
    def normalises(self) -> bool:
        return self is Metric.COSINE

    @classmethod
    def parse(cls, value: "Metric | str") -> "Metric":
        if isinstance(value, Metric):
            return value
        key = str(value).strip().lower()
        aliases = {"cosine": cls.COSINE, "cos": cls.COSINE, "angular": cls.COSINE,
                   "l2": cls.L2, "euclidean": cls.L2,
                   "ip": cls.IP, "dot": cls.IP, "inner_product": cls.IP}
        if key not in aliases:
            raise InvalidArgument(f"unknown metric {value!r}; use one of cosine, l2, ip")
        return aliases[key]

    def similarity(self, distance: float) -> float | None:
        if self is Metric.COSINE:
            return 1.0 - distance
        if self is Metric.IP:
            return -distance
        return None

    def __str__(self) -> str:  # pragma: no cover - cosmetic
        return self.label


# ---------------------------------------------------------------- index specs (build time)

@dataclass(frozen=True)
class Exact:
    """No index: an exact (brute force) scan."""

    kind = "exact"


@dataclass(frozen=True)
class HNSW:
    """HNSW graph. Query-time knob: ``ef_search`` (see :meth:`VectorStore.set_query_params`)."""

    m: int = 16
    ef_construction: int = 64
    kind = "hnsw"

    def __post_init__(self):
        if self.m < 2 or self.ef_construction < 1:
            raise InvalidArgument("HNSW needs m >= 2 and ef_construction >= 1")


@dataclass(frozen=True)
class IVFFlat:
    """Inverted lists over k-means centroids. ``lists=None`` means rows/1000 (at least 1),
    pgvector's rule for up to a million rows. Query-time knob: ``probes``."""

    lists: int | None = None
    kind = "ivfflat"

    def __post_init__(self):
        if self.lists is not None and self.lists < 1:
            raise InvalidArgument("IVFFlat needs lists >= 1")

    def resolve_lists(self, rows: int) -> int:
        return self.lists if self.lists is not None else max(1, rows // 1000)


IndexSpec = Union[Exact, HNSW, IVFFlat]


def parse_index(text: str | IndexSpec) -> IndexSpec:
    """'exact', 'hnsw', 'hnsw:m=32,ef_construction=128', 'ivfflat:lists=100'."""
    if isinstance(text, (Exact, HNSW, IVFFlat)):
        return text
    name, _, rest = str(text).partition(":")
    params: dict[str, int] = {}
    for part in filter(None, rest.split(",")):
        k, _, v = part.partition("=")
        try:
            params[k.strip()] = int(v)
        except ValueError:
            raise InvalidArgument(f"index parameter {part!r} is not key=integer") from None
    name = name.strip().lower()
    classes = {"exact": Exact, "flat": Exact, "hnsw": HNSW, "ivfflat": IVFFlat, "ivf": IVFFlat}
    if name not in classes:
        raise InvalidArgument(f"unknown index kind {name!r}; use exact, hnsw or ivfflat")
    try:
        return classes[name](**params)
    except TypeError as e:
        raise InvalidArgument(f"bad parameters for {name}: {e}") from None


def spec_to_dict(spec: IndexSpec) -> dict[str, Any]:
    """A JSON-able form of an index spec, as backends keep it in their catalogs."""
    return {"kind": spec.kind, **vars(spec)}


def spec_text(kind: str, params: Mapping[str, Any]) -> str:
    """The text form :func:`parse_index` reads: ``kind`` then ``:k=v,...`` for the parameters set."""
    text = ",".join(f"{k}={v}" for k, v in params.items() if v is not None)
    return kind + (":" + text if text else "")


def spec_from_dict(d: Mapping[str, Any]) -> IndexSpec:
    d = dict(d)
    return parse_index(spec_text(d.pop("kind"), d))


# ---------------------------------------------------------------- query params (query time)

@dataclass(frozen=True)
class QueryParams:
    """Query-time settings: ``ef_search`` for HNSW, ``probes`` for IVFFlat. None = backend default."""

    ef_search: int | None = None
    probes: int | None = None
    #: how a filtered search is run, where a backend has more than one way (its ``filter_strategies``)
    filter_strategy: str | None = None

    def __post_init__(self):
        if self.ef_search is not None and self.ef_search < 1:
            raise InvalidArgument("ef_search must be >= 1")
        if self.probes is not None and self.probes < 1:
            raise InvalidArgument("probes must be >= 1")


DEFAULT_EF_SEARCH = 40
DEFAULT_PROBES = 1


# ---------------------------------------------------------------- records and hits

@dataclass
class Record:
    """One stored item: a caller-chosen string id, a float32 vector, and JSON-able metadata.

    Well-known metadata keys: ``path`` (the source file), ``tag`` (a label to filter on),
    ``bbox`` ([top, right, bottom, left] of a face in the image). Anything else is kept as is.
    """

    id: str
    vector: Any
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def path(self) -> str | None:
        return self.metadata.get("path")

    @property
    def tag(self) -> str | None:
        return self.metadata.get("tag")

    @property
    def bbox(self) -> list[int] | None:
        return self.metadata.get("bbox")


class Hit:
    """One search result. ``distance``: smaller is closer (see :class:`Metric`).

    A plain ``__slots__`` object (a search makes k of them per query). ``metadata`` may be handed
    over as the record's JSON text by a backend that keeps it encoded (Weaviate; FAISS's hits read
    theirs from its columns by slot): it is then decoded the first time it is read, so a caller
    that only wants ids and distances never pays for it."""

    __slots__ = ("id", "distance", "similarity", "_meta")

    def __init__(self, id: str, distance: float, similarity: float | None,
                 metadata: dict[str, Any] | str | None = None):
        self.id = id
        self.distance = distance
        self.similarity = similarity
        self._meta = {} if metadata is None else metadata

    @property
    def metadata(self) -> dict[str, Any]:
        meta = self._meta
        if meta.__class__ is str:
            meta = self._meta = json.loads(meta)
        return meta

    @metadata.setter
    def metadata(self, value: dict[str, Any]) -> None:
        self._meta = value

    @property
    def path(self) -> str | None:
        return self.metadata.get("path")

    @property
    def bbox(self) -> list[int] | None:
        return self.metadata.get("bbox")

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "distance": self.distance, "similarity": self.similarity,
                "metadata": self.metadata}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Hit):
            return NotImplemented
        return (self.id, self.distance, self.similarity, self.metadata) == \
            (other.id, other.distance, other.similarity, other.metadata)

    __hash__ = None  # type: ignore[assignment]  # mutable, like the dataclass it replaces

    def __repr__(self) -> str:
        return (f"Hit(id={self.id!r}, distance={self.distance!r}, similarity={self.similarity!r}, "
                f"metadata={self.metadata!r})")


# ---------------------------------------------------------------- validation helpers

_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,47}$")


def validate_name(name: str) -> str:
    """Collection names: lowercase letter first, then lowercase letters, digits, underscores;
    at most 48 characters. Safe as a SQL identifier, a Weaviate class and a directory name."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise InvalidName(
            f"invalid collection name {name!r}: use 1-48 characters, a lowercase letter first, "
            "then lowercase letters, digits or underscores"
        )
    return name


def as_matrix(vectors: Any, dim: int, metric: Metric | None = None, what: str = "vector") -> np.ndarray:
    """Convert to a C-contiguous float32 (n, dim) array; check dimension and finiteness.
    For cosine, rows are L2-normalised (a zero vector has no direction and is rejected)."""
    arr = _float32(vectors, what)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise InvalidArgument(f"{what} must be 1-d or 2-d, got shape {arr.shape}")
    if arr.shape[1] != dim:
        raise DimensionMismatch(dim, arr.shape[1], what)
    if not np.isfinite(arr).all():
        bad = int(np.flatnonzero(~np.isfinite(arr).all(axis=1))[0])
        raise NonFiniteVector(f"{what} {bad} holds NaN or infinity")
    if metric is Metric.COSINE:
        arr = _unit_rows(arr, what)
    return np.ascontiguousarray(arr, dtype=np.float32)


def as_query(vector: Any, dim: int, metric: Metric, what: str = "query vector") -> np.ndarray:
    """One query vector as a (1, dim) C-contiguous float32 array, checked and (cosine) normalised as
    :func:`as_matrix` does. The usual case (a contiguous 1-d float32 array of the right length,
    neither tiny nor huge) costs one dot product: its value is finite only when every element is,
    and it is the squared norm. A vector already of unit length (within ``_UNIT_SQUARE``: an
    embedder's output, a stored vector) is used as it is, without a copy; another is divided by its
    norm. Anything else takes :func:`as_matrix`'s careful path (and its errors).

    The dot product is ``np.vecdot``, which keeps the GIL for its half microsecond: ``np.vdot`` and
    ``np.dot`` release it around their loop, and a thread that releases the GIL while others wait for
    it may have to wait its turn to get it back, so with 8 threads searching on 2 cores each release
    cost more than the whole product (QPS over the raw FAISS call at C = 8: 0.90 with vdot, 0.92 with
    vecdot; the median of eight rounds in one process, the two taking turns: docs/faiss.md)."""
    if vector.__class__ is np.ndarray and vector.ndim == 1 and vector.shape[0] == dim \
            and vector.dtype is _F32 and vector.strides[0] == 4:
        sq = float(_vecdot(vector, vector))
        if _SAFE_SQUARE < sq < math.inf:
            if metric is not Metric.COSINE or -_UNIT_SQUARE < sq - 1.0 < _UNIT_SQUARE:
                return vector.reshape(1, dim)
            return (vector / math.sqrt(sq)).reshape(1, dim)
    arr = _float32(vector, what)
    if arr.ndim != 1:
        raise InvalidArgument(f"search takes one vector; use search_many for shape {arr.shape}")
    return as_matrix(arr, dim, metric, what)


def _float32(vectors: Any, what: str) -> np.ndarray:
    """``vectors`` as a float32 array; InvalidArgument when they are not numbers."""
    try:
        return np.asarray(vectors, dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise InvalidArgument(f"{what} is not numeric: {e}") from None


def _unit_rows(arr: np.ndarray, what: str) -> np.ndarray:
    """Rows scaled to unit length. One pass in the usual case; rows whose float32 norm overflows
    (values near 1e38) or underflows are scaled by their largest magnitude first, so they are not
    stored as zeros or infinities."""
    norms = np.sqrt(np.einsum("ij,ij->i", arr, arr))
    if arr.size and np.isfinite(norms).all() and norms.min() > _SAFE_NORM:
        return arr / norms[:, None]
    peak = np.abs(arr).max(axis=1, keepdims=True) if arr.size else np.ones((arr.shape[0], 1), np.float32)
    if (peak == 0).any():
        raise InvalidArgument(f"{what} is all zeros; cosine distance is undefined for it")
    arr = arr / peak
    return arr / np.linalg.norm(arr, axis=1, keepdims=True)


# below this float32 norm, squaring has lost precision (subnormal range): take the careful path
_SAFE_NORM = 1e-18
_SAFE_SQUARE = _SAFE_NORM ** 2
#: a cosine query whose squared norm is within this of 1 is taken as unit length (its distances then
#: differ by at most 5e-6 relative, below the rounding of a float32 dot product of 512 terms; a
#: float32 vector divided by its norm lands within 1e-6)
_UNIT_SQUARE = 1e-5
_F32 = np.dtype(np.float32)
_vecdot = getattr(np, "vecdot", np.matmul)  # numpy 2's vecdot; 1.26's matmul keeps the GIL too
# a huge vector's square overflows float32 in as_query's product, which then warns; as_query takes the
# careful path for it (scaled first, no overflow), so that warning is vecface's own, not the caller's
warnings.filterwarnings("ignore", "overflow encountered in (vecdot|matmul)", RuntimeWarning, r"vecface\.types\Z")


#: the most results one query may ask for (Weaviate's own QUERY_MAXIMUM_RESULTS default); a larger k
#: is a mistake, and would make an in-process engine allocate k x queries results
MAX_K = 10_000


def validate_k(k: int) -> int:
    if k.__class__ is int and 0 < k <= MAX_K:  # the usual case, checked first
        return k
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise InvalidArgument(f"k must be a positive integer, got {k!r}")
    if k > MAX_K:
        raise InvalidArgument(f"k must be at most {MAX_K}, got {k}")
    return int(k)


def validate_ids(ids: Sequence[str] | str) -> list[str]:
    if isinstance(ids, str):
        ids = [ids]
    out = list(ids)
    for i in out:
        if not isinstance(i, str) or not i:
            raise InvalidArgument(f"ids are non-empty strings, got {i!r}")
    return out


def clean_metadata(meta: Mapping[str, Any] | None) -> dict[str, Any]:
    """One record's metadata, checked: a mapping with string keys, ``path``/``tag`` strings, ``bbox`` 4
    integers, and JSON-serialisable (no NaN or infinity)."""
    return clean_metadata_batch([meta])[0]


def clean_metadata_batch(metas: Sequence[Mapping[str, Any] | None]) -> list[dict[str, Any]]:
    """:func:`clean_metadata` for many records at once: the per-record checks, then one JSON
    serialisation of the whole batch (a record is only serialised alone to name the one that failed)."""
    out = [_checked_fields(m) for m in metas]
    try:
        json.dumps(out, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        for m in out:
            try:
                json.dumps(m, allow_nan=False)
            except (TypeError, ValueError, RecursionError) as e:
                raise InvalidArgument(f"metadata must be JSON-serialisable: {e}") from None
        raise
    return out


def _checked_fields(meta: Mapping[str, Any] | None) -> dict[str, Any]:
    # a plain dict (the usual case) skips the slower abstract Mapping check
    if meta is None:
        return {}
    if meta.__class__ is not dict and not isinstance(meta, _abc.Mapping):
        raise InvalidArgument(f"metadata must be a mapping (a dict of field: value), got {type(meta).__name__}")
    meta = dict(meta)
    for key in meta:
        if key.__class__ is not str and not isinstance(key, str):
            raise InvalidArgument("metadata keys must be strings")
    for key in ("path", "tag"):
        value = meta.get(key)
        if value is not None and value.__class__ is not str and not isinstance(value, str):
            raise InvalidArgument(f"metadata {key!r} must be a string")
    if meta.get("bbox") is not None:
        bbox = meta["bbox"]
        if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
            raise InvalidArgument("metadata 'bbox' must be 4 integers [top, right, bottom, left]")
        try:
            meta["bbox"] = [int(v) for v in bbox]
        except (TypeError, ValueError, OverflowError):
            raise InvalidArgument("metadata 'bbox' must be 4 integers [top, right, bottom, left]") from None
    return meta


def finite_or_none(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)
