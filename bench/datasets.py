"""Benchmark datasets: a base set streamed in chunks, held-out queries, tags, optional ground truth.

Every dataset offers the same small interface (:class:`Dataset`): ``n``, ``dim``, ``metric``,
``chunks(size)`` yielding ``(start, vectors, tags)`` so a million 512-d vectors never need to sit
in memory at once, ``queries`` (a small array), ``ground_truth`` (``(neighbors, distances)`` when
the file ships them, else None), ``describe()`` and ``fingerprint()`` (a hash of everything that
determines the vectors, used to key cached ground truth).

Kinds (``open_dataset(spec)``):

- ``synthetic`` (the offline default), see :class:`Synthetic`.
- ``path/to/base.npy`` (queries from ``--queries-file`` or ``<stem>_queries.npy`` / ``queries.npy``
  beside it, else the last rows are held out).
- ``path/to/base.fvecs`` (queries from ``*_query.fvecs``, ground truth from ``*_groundtruth.ivecs``
  when present, as in the TEXMEX sift/gist files).
- ``path/to/file.hdf5`` in the ann-benchmarks layout: datasets ``train``, ``test``, ``neighbors``,
  ``distances`` and attribute ``distance`` (``angular`` -> cosine, ``euclidean`` -> l2, ``dot``).
- ``images:path/to/folder``: images embedded by a vecface embedder (anything with ``dim`` and
  ``embed_images(paths)``), vectors cached under the cache directory.

The synthetic generator
-----------------------
Real image/face embeddings are neither uniform on the sphere (far too hard for an ANN index: no
structure to exploit) nor a few tight blobs (far too easy, and HNSW graphs split into islands).
They have many identities, a low intrinsic dimension and noise. ``Synthetic`` draws:

- a random ``rank``-dimensional subspace (default 64) of the ``dim``-dimensional space;
- ``identities`` cluster centres in that subspace (default ``max(200, n // 40)``: 2,500 at 100k)
  with Zipf-like sizes (some identities have many pictures, most have few);
- each vector = centre + ``spread`` x Gaussian in the subspace + ``noise`` x isotropic Gaussian in
  all ``dim`` dimensions, L2-normalised;
- a ``tag`` per row, independent of the vector: ``t50`` (50%), ``t10`` (10%), ``t01`` (1%) and
  ``rest`` (39%), for the filtered-search case;
- queries: fresh draws from the same identities (held out: never in the base set).

Rows are generated in fixed blocks of 10,000, each from its own seeded generator, so any chunking
gives identical vectors (and, for a fixed ``identities``, a smaller n is a prefix of a larger one),
and generation streams.

Tuning (the issue asks for FAISS HNSW(M=16, ef_construction=64, ef_search=40) recall@10 between
0.85 and 0.97 at 100k x 512, roughly what CLIP data gives). Measured on this machine with
``.venv/bin/python -m vecface.bench.tune --n 100000 --dim 512``:

    n=100000 dim=512 rank=64 spread=1.15 noise=0.05 identities=2500, 1000 queries:
    FAISS HNSW(16, 64) recall@10: ef 10 0.711, ef 20 0.826, ef 40 0.892, ef 80 0.933, ef 160 0.963

and through the harness (``vecface bench --n 100000``, vecface's FAISS backend, 500 queries):
ef 40 0.889; pgvector HNSW 0.903, Weaviate HNSW 0.880 at ef 40. At the default 50k: FAISS 0.930.

Identities grow with n (n // 40) in the same 64-d subspace, so larger sets are denser and harder:
at 1,000,000 FAISS HNSW gives 0.562 at ef 40 and 0.852 at ef 400. For a million rows as hard as
the 100k set, try fixing the identities (``--dataset synthetic:identities=2500``; not measured).

The transition is sharp: spread 1.0 gives 0.969 at ef 40 (too easy: identities well apart), 1.5
gives 0.605 (identities merge into one 64-d Gaussian); rank 48 / spread 0.5 gave 0.999.
"""

from __future__ import annotations

import abc
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from vecface.errors import InvalidArgument
from vecface.types import Metric

BLOCK = 10_000
TAGS = ("t50", "t10", "t01", "rest")
TAG_P = (0.50, 0.10, 0.01, 0.39)
# filter cases of the benchmark: name -> (filter, expected share of rows kept)
FILTER_CASES = {"50%": ("t50", 0.50), "10%": ("t10", 0.10), "1%": ("t01", 0.01)}


def default_cache_dir() -> Path:
    from vecface.config import data_dir

    return data_dir() / "bench-cache"


class Dataset(abc.ABC):
    name: str = "?"
    n: int
    dim: int
    metric: Metric

    @abc.abstractmethod
    def chunks(self, size: int = BLOCK, limit: int | None = None) -> Iterator[tuple[int, np.ndarray, list[str] | None]]:
        """Yield ``(start, vectors[float32, (m, dim)], tags or None)`` over the base set, in order."""

    @property
    @abc.abstractmethod
    def queries(self) -> np.ndarray: ...

    @property
    def ground_truth(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(neighbors int64 (q, K), distances (q, K)) when the dataset ships them, else None."""
        return None

    @property
    def has_tags(self) -> bool:
        return False

    @abc.abstractmethod
    def describe(self) -> dict[str, Any]: ...

    def fingerprint(self) -> str:
        """A hash of what determines the base and query vectors (and tags)."""
        blob = json.dumps(self._identity(), sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def _identity(self) -> dict[str, Any]:
        return self.describe()

    def ids(self, start: int, count: int) -> list[str]:
        return [str(i) for i in range(start, start + count)]


# ---------------------------------------------------------------- synthetic

@dataclass
class Synthetic(Dataset):
    n: int = 100_000
    dim: int = 512
    n_queries: int = 1000
    seed: int = 0
    rank: int = 64
    spread: float = 1.15
    noise: float = 0.05
    identities: int | None = None
    metric: Metric = field(default=Metric.COSINE)
    name: str = "synthetic"

    def __post_init__(self):
        if self.n < 1 or self.dim < 2:
            raise InvalidArgument("synthetic data needs n >= 1 and dim >= 2")
        self.rank = min(self.rank, self.dim)
        self._n_ids = self.identities or max(200, self.n // 40)
        rng = np.random.default_rng([self.seed, 0xC0FFEE])
        basis, _ = np.linalg.qr(rng.normal(size=(self.dim, self.rank)))
        self._basis = basis.T.astype(np.float32)  # (rank, dim), orthonormal rows
        self._centres = rng.normal(size=(self._n_ids, self.rank)).astype(np.float32)
        weights = 1.0 / np.arange(1, self._n_ids + 1) ** 0.5  # Zipf-like identity sizes
        rng.shuffle(weights)
        self._p = weights / weights.sum()
        self._queries: np.ndarray | None = None

    def _draw(self, rng: np.random.Generator, m: int) -> np.ndarray:
        who = rng.choice(self._n_ids, size=m, p=self._p)
        z = self._centres[who] + self.spread * rng.normal(size=(m, self.rank)).astype(np.float32)
        x = z @ self._basis + self.noise * rng.normal(size=(m, self.dim)).astype(np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        return x.astype(np.float32, copy=False)

    def _block(self, b: int) -> tuple[np.ndarray, list[str]]:
        rng = np.random.default_rng([self.seed, 1, b])
        m = min(BLOCK, self.n - b * BLOCK)
        # always draw a whole block, so the rows do not depend on n (a smaller n is a prefix)
        x = self._draw(rng, BLOCK)[:m]
        tags = rng.choice(len(TAGS), size=BLOCK, p=TAG_P)[:m]
        return x, [TAGS[t] for t in tags]

    def chunks(self, size: int = BLOCK, limit: int | None = None):
        total = self.n if limit is None else min(limit, self.n)
        buf_x: list[np.ndarray] = []
        buf_t: list[str] = []
        have = 0
        start = 0
        for b in range((total + BLOCK - 1) // BLOCK):
            x, t = self._block(b)
            buf_x.append(x)
            buf_t.extend(t)
            have += len(x)
            while have >= size or (b == (total + BLOCK - 1) // BLOCK - 1 and have > 0):
                cat = np.concatenate(buf_x) if len(buf_x) > 1 else buf_x[0]
                take = min(size, have, total - start)
                yield start, cat[:take], buf_t[:take]
                start += take
                rest = cat[take:]
                buf_x = [rest] if len(rest) else []
                buf_t = buf_t[take:]
                have = len(rest)
                if start >= total:
                    return

    @property
    def queries(self) -> np.ndarray:
        if self._queries is None:
            self._queries = self._draw(np.random.default_rng([self.seed, 2]), self.n_queries)
        return self._queries

    @property
    def has_tags(self) -> bool:
        return True

    GENERATOR = 2  # bump whenever the generated vectors change: it keys the ground-truth cache

    def describe(self) -> dict[str, Any]:
        return {"kind": "synthetic", "generator": self.GENERATOR, "n": self.n, "dim": self.dim, "queries": self.n_queries,
                "metric": self.metric.label, "seed": self.seed, "rank": self.rank, "spread": self.spread,
                "noise": self.noise, "identities": self._n_ids,
                "tags": dict(zip(TAGS, TAG_P)),
                "about": (f"{self._n_ids} identities (Zipf-like sizes) in a random {self.rank}-d subspace "
                          f"of {self.dim}-d space, spread {self.spread}, isotropic noise {self.noise}, "
                          "L2-normalised; queries are held-out draws from the same identities")}


# ---------------------------------------------------------------- files

def _split_held_out(base: np.ndarray, n_queries: int) -> tuple[np.ndarray, np.ndarray, str]:
    """For a file with no query set: its last rows (at most a tenth) become the queries."""
    h = min(n_queries, max(1, base.shape[0] // 10))
    return base[:-h], np.asarray(base[-h:]), f"last {h} rows held out"


class ArrayDataset(Dataset):
    """A base array (possibly a memory map) and a query array, with optional ground truth."""

    def __init__(self, name: str, base: np.ndarray, queries: np.ndarray, metric: Metric,
                 source: dict[str, Any], gt: tuple[np.ndarray, np.ndarray] | None = None,
                 n: int | None = None):
        self.name = name
        self._base = base
        self.n = min(int(n), base.shape[0]) if n else int(base.shape[0])
        self.dim = int(base.shape[1])
        self._queries = np.ascontiguousarray(queries, dtype=np.float32)
        self.metric = metric
        self._source = source
        # shipped ground truth is only valid for the whole base set
        self._gt = gt if self.n == base.shape[0] else None

    def chunks(self, size: int = BLOCK, limit: int | None = None):
        total = self.n if limit is None else min(limit, self.n)
        for start in range(0, total, size):
            x = np.asarray(self._base[start:min(total, start + size)], dtype=np.float32)
            yield start, np.ascontiguousarray(x), None

    @property
    def queries(self) -> np.ndarray:
        return self._queries

    @property
    def ground_truth(self):
        return self._gt

    def describe(self) -> dict[str, Any]:
        return {**self._source, "n": self.n, "dim": self.dim, "queries": len(self._queries),
                "metric": self.metric.label, "ground_truth_shipped": self._gt is not None}

    def _identity(self) -> dict[str, Any]:
        d = self.describe()
        p = self._source.get("path")
        if p and os.path.exists(p):
            st = os.stat(p)
            d["file"] = [st.st_size, int(st.st_mtime)]
        # a cheap content hash: first and last rows and the queries
        h = hashlib.sha256()
        h.update(np.asarray(self._base[: min(64, self.n)], dtype=np.float32).tobytes())
        h.update(np.asarray(self._base[max(0, self.n - 64): self.n], dtype=np.float32).tobytes())
        h.update(self._queries.tobytes())
        d["content"] = h.hexdigest()
        return d


def read_fvecs(path: str | os.PathLike[str], dtype=np.float32) -> np.ndarray:
    """Memory-map a TEXMEX ``.fvecs`` (or ``.ivecs`` with dtype=int32) file as (n, d)."""
    raw = np.memmap(path, dtype=np.int32, mode="r")
    if raw.size == 0:
        return np.zeros((0, 0), dtype=dtype)
    d = int(raw[0])
    if d <= 0 or raw.size % (d + 1):
        raise InvalidArgument(f"{path} is not an fvecs/ivecs file (bad dimension header {d})")
    return raw.reshape(-1, d + 1)[:, 1:].view(dtype)


def write_fvecs(path: str | os.PathLike[str], x: np.ndarray) -> None:
    x = np.asarray(x)
    dtype = np.int32 if np.issubdtype(x.dtype, np.integer) else np.float32
    out = np.empty((x.shape[0], x.shape[1] + 1), dtype=np.int32)
    out[:, 0] = x.shape[1]
    out[:, 1:] = x.astype(dtype).view(np.int32)
    out.tofile(path)


def _sibling(path: Path, suffixes: list[str]) -> Path | None:
    for s in suffixes:
        cand = path.with_name(s)
        if cand.exists():
            return cand
    return None


def open_npy(path: str, n_queries: int, metric: Metric, n: int | None, queries_file: str | None = None) -> ArrayDataset:
    p = Path(path)
    base = np.load(p, mmap_mode="r")
    if base.ndim != 2:
        raise InvalidArgument(f"{p} holds shape {base.shape}; a base set is (n, dim)")
    qf = Path(queries_file) if queries_file else _sibling(p, [f"{p.stem}_queries.npy", "queries.npy"])
    if qf is not None:
        q = np.load(qf)[:n_queries]
        src = {"kind": "npy", "path": str(p), "queries_path": str(qf)}
    else:
        base, q, note = _split_held_out(base, n_queries)
        src = {"kind": "npy", "path": str(p), "queries_path": note}
    return ArrayDataset(p.stem, base, q, metric, src, n=n)


def open_fvecs(path: str, n_queries: int, metric: Metric, n: int | None, queries_file: str | None = None) -> ArrayDataset:
    p = Path(path)
    base = read_fvecs(p)
    stem = p.stem.replace("_base", "").replace("_learn", "")
    qf = Path(queries_file) if queries_file else _sibling(p, [f"{stem}_query.fvecs", "query.fvecs"])
    # a shipped groundtruth.ivecs has no distances (needed for tolerant recall), so ground truth
    # is always computed exactly (and cached) instead of read
    if qf is not None:
        q = np.asarray(read_fvecs(qf))[:n_queries]
        src = {"kind": "fvecs", "path": str(p), "queries_path": str(qf)}
    else:
        base, q, note = _split_held_out(base, n_queries)
        src = {"kind": "fvecs", "path": str(p), "queries_path": note}
    return ArrayDataset(stem, base, q, metric, src, n=n)


_ANN_METRICS = {"angular": Metric.COSINE, "cosine": Metric.COSINE, "euclidean": Metric.L2,
                "l2": Metric.L2, "dot": Metric.IP, "ip": Metric.IP}


def open_hdf5(path: str, n_queries: int, n: int | None) -> ArrayDataset:
    try:
        import h5py
    except ImportError as e:  # pragma: no cover
        from vecface.errors import MissingDependency

        raise MissingDependency("h5py", extra="bench", purpose="ann-benchmarks HDF5 datasets") from e
    f = h5py.File(path, "r")
    for key in ("train", "test"):
        if key not in f:
            raise InvalidArgument(f"{path} has no '{key}' dataset; expected the ann-benchmarks layout")
    dist = f.attrs.get("distance", "angular")
    dist = dist.decode() if isinstance(dist, bytes) else str(dist)
    metric = _ANN_METRICS.get(dist.lower())
    if metric is None:
        raise InvalidArgument(f"{path}: distance {dist!r} is not one vecface supports (angular, euclidean, dot)")
    q = np.asarray(f["test"][:n_queries], dtype=np.float32)
    gt = None
    # ann-benchmarks' angular distance is 1 - cos and euclidean is the plain L2 distance: the same
    # convention as vecface's, so shipped neighbours and distances are used as they are
    if "neighbors" in f and "distances" in f and metric in (Metric.COSINE, Metric.L2):
        gt = (np.asarray(f["neighbors"][:n_queries], dtype=np.int64),
              np.asarray(f["distances"][:n_queries], dtype=np.float32))
    src = {"kind": "hdf5", "path": str(path), "distance": dist}
    ds = ArrayDataset(Path(path).stem, f["train"], q, metric, src, gt=gt, n=n)
    ds._h5 = f  # keep the file open for chunks()
    return ds


# ---------------------------------------------------------------- image folder

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def _default_embedder():
    """vecface's default (CLIP) embedder, imported only when an image dataset is used."""
    try:
        from vecface.embedders import make_embedder
    except ImportError as e:
        raise InvalidArgument("no vecface embedder is available (vecface.embedders); pass embedder=") from e
    return make_embedder("clip")


def open_images(folder: str, n_queries: int, cache_dir: Path, embedder: Any = None,
                n: int | None = None, progress: Callable[[int, int], None] | None = None) -> ArrayDataset:
    root = Path(folder)
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if len(paths) < 2:
        raise InvalidArgument(f"{root} holds fewer than 2 images")
    emb = embedder if embedder is not None else _default_embedder()
    if not hasattr(emb, "embed_images") or not hasattr(emb, "dim"):
        raise InvalidArgument("an embedder needs .dim and .embed_images(paths)")
    ident = getattr(emb, "name", None) or type(emb).__name__
    h = hashlib.sha256(json.dumps([ident, int(emb.dim)] + [
        [str(p.relative_to(root)), p.stat().st_size, int(p.stat().st_mtime)] for p in paths]).encode()).hexdigest()[:16]
    cache = Path(cache_dir) / f"images-{h}.npy"
    if cache.exists():
        x = np.load(cache)
    else:
        out = []
        step = 32
        for s in range(0, len(paths), step):
            v = emb.embed_images([str(p) for p in paths[s:s + step]])
            out.append(np.asarray(v, dtype=np.float32).reshape(-1, int(emb.dim)))
            if progress:
                progress(min(len(paths), s + step), len(paths))
        x = np.concatenate(out)
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.save(cache, x)
    base, q, note = _split_held_out(x, n_queries)
    src = {"kind": "images", "path": str(root), "embedder": ident, "images": len(paths),
           "cache": str(cache), "queries_path": note.replace("rows", "images")}
    return ArrayDataset(root.name or "images", base, q, Metric.COSINE, src, n=n)


def open_dataset(spec: str = "synthetic", *, n: int | None = None, dim: int | None = None,
                 n_queries: int = 1000, seed: int = 0, metric: str | None = None,
                 cache_dir: Path | None = None, embedder: Any = None, queries_file: str | None = None) -> Dataset:
    """``synthetic`` | ``synthetic:rank=48,spread=0.5,noise=0.05,identities=2500`` | a .npy, .fvecs,
    .hdf5/.h5 path | ``images:FOLDER``."""
    m = Metric.parse(metric) if metric else Metric.COSINE
    if spec.startswith("synthetic"):
        params: dict[str, Any] = {}
        _, _, rest = spec.partition(":")
        for part in filter(None, rest.split(",")):
            k, _, v = part.partition("=")
            params[k.strip()] = float(v) if k.strip() in ("spread", "noise") else int(v)
        return Synthetic(n=n or 100_000, dim=dim or 512, n_queries=n_queries, seed=seed, metric=m, **params)
    if spec.startswith("images:"):
        return open_images(spec[len("images:"):], n_queries, cache_dir or default_cache_dir(), embedder, n=n)
    p = Path(spec)
    if not p.exists():
        raise InvalidArgument(f"dataset {spec!r}: no such file (use 'synthetic', a .npy/.fvecs/.hdf5 file, or images:DIR)")
    suffix = p.suffix.lower()
    if suffix == ".npy":
        return open_npy(spec, n_queries, m, n, queries_file)
    if suffix == ".fvecs":
        return open_fvecs(spec, n_queries, m, n, queries_file)
    if suffix in (".hdf5", ".h5"):
        return open_hdf5(spec, n_queries, n)
    raise InvalidArgument(f"dataset {spec!r}: unknown file type {suffix!r}")
