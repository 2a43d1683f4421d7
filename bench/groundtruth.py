"""Exact nearest neighbours for the benchmark's queries, computed with FAISS flat over the base
set streamed in chunks (so a million vectors never sit in memory at once), for the unfiltered case
and every filter case in the same pass, and cached on disk keyed by the dataset's hash.

Distances follow vecface's convention (smaller is closer): cosine 1 - cos, l2 Euclidean,
ip -<a, b>. Ids are row numbers in the base set. Rows a filter leaves out are never returned;
when fewer than k rows pass a filter, the list is padded with id -1 and distance +inf.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from vecface.types import Metric

from .datasets import FILTER_CASES, Dataset


@dataclass
class GroundTruth:
    ids: np.ndarray  # (q, k) int64
    dist: np.ndarray  # (q, k) float32
    filtered: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # case -> (ids, dist)
    filter_share: dict[str, float] = field(default_factory=dict)  # case -> share of rows kept
    source: str = "computed"


def _prep(x: np.ndarray, metric: Metric) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    if metric is Metric.COSINE:
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x, dtype=np.float32)


def _to_distance(raw: np.ndarray, metric: Metric) -> np.ndarray:
    if metric is Metric.COSINE:
        return 1.0 - raw
    if metric is Metric.IP:
        return -raw
    return np.sqrt(np.maximum(raw, 0))


def _chunk_knn(base: np.ndarray, queries: np.ndarray, k: int, metric: Metric) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k of queries over one chunk: (distances (q, k'), local row numbers)."""
    import faiss

    index = faiss.IndexFlat(base.shape[1], metric.faiss_metric)
    index.add(base)
    raw, loc = index.search(queries, min(k, base.shape[0]))
    d = _to_distance(raw, metric).astype(np.float32)
    d[loc < 0] = np.inf
    return d, loc


def _merge(best_d, best_i, d, i, k):
    if best_d is None:
        return d, i
    cd = np.concatenate([best_d, d], axis=1)
    ci = np.concatenate([best_i, i], axis=1)
    order = np.argsort(cd, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(cd, order, 1), np.take_along_axis(ci, order, 1)


def _pad(d, i, nq, k):
    if d is None:
        return np.full((nq, k), np.inf, np.float32), np.full((nq, k), -1, np.int64)
    if d.shape[1] < k:
        d = np.concatenate([d, np.full((nq, k - d.shape[1]), np.inf, np.float32)], axis=1)
        i = np.concatenate([i, np.full((nq, k - i.shape[1]), -1, np.int64)], axis=1)
    i = np.where(np.isfinite(d), i, -1)
    return d.astype(np.float32), i.astype(np.int64)


def compute(ds: Dataset, queries: np.ndarray, k: int, *, chunk: int = 50_000,
            progress: Callable[[int], None] | None = None) -> GroundTruth:
    q = _prep(queries, ds.metric)
    nq = len(q)
    cases = FILTER_CASES if ds.has_tags else {}
    best = (None, None)
    fbest = {c: (None, None) for c in cases}
    kept = {c: 0 for c in cases}
    rows = 0
    for start, x, tags in ds.chunks(chunk):
        x = _prep(x, ds.metric)
        d, loc = _chunk_knn(x, q, k, ds.metric)
        best = _merge(*best, d, np.where(loc >= 0, loc + start, -1), k)
        if tags is not None:
            t = np.asarray(tags)
            for case, (tag, _) in cases.items():
                rows_idx = np.flatnonzero(t == tag)
                kept[case] += len(rows_idx)
                if len(rows_idx) == 0:
                    continue
                d, loc = _chunk_knn(np.ascontiguousarray(x[rows_idx]), q, k, ds.metric)
                glob = np.where(loc >= 0, rows_idx[np.maximum(loc, 0)] + start, -1)
                fbest[case] = _merge(*fbest[case], d, glob, k)
        rows += len(x)
        if progress:
            progress(len(x))
    d, i = _pad(*best, nq, k)
    gt = GroundTruth(i, d)
    for case in cases:
        fd, fi = _pad(*fbest[case], nq, k)
        gt.filtered[case] = (fi, fd)
        gt.filter_share[case] = kept[case] / max(1, rows)
    return gt


def cache_path(cache_dir: Path, ds: Dataset, nq: int, k: int) -> Path:
    return Path(cache_dir) / f"gt-{ds.fingerprint()}-q{nq}-k{k}.npz"


def load_or_compute(ds: Dataset, queries: np.ndarray, k: int, cache_dir: Path | None,
                    progress: Callable[[int], None] | None = None) -> GroundTruth:
    """Ground truth from the dataset itself (when shipped and unfiltered is all we need), the
    cache, or an exact FAISS computation (then cached)."""
    path = cache_path(cache_dir, ds, len(queries), k) if cache_dir else None
    if path is not None and path.exists():
        z = np.load(path, allow_pickle=False)
        meta = json.loads(str(z["meta"]))
        gt = GroundTruth(z["ids"], z["dist"], source=f"cache {path.name}")
        for j, case in enumerate(meta["cases"]):
            gt.filtered[case] = (z[f"ids_f{j}"], z[f"dist_f{j}"])
        gt.filter_share = meta["share"]
        return gt
    shipped = ds.ground_truth
    if shipped is not None and shipped[1] is not None and not ds.has_tags and shipped[0].shape[1] >= k:
        return GroundTruth(shipped[0][: len(queries), :k].astype(np.int64),
                           shipped[1][: len(queries), :k].astype(np.float32), source="shipped with the dataset")
    gt = compute(ds, queries, k, progress=progress)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {"ids": gt.ids, "dist": gt.dist}
        for j, (i, d) in enumerate(gt.filtered.values()):
            arrays[f"ids_f{j}"] = i
            arrays[f"dist_f{j}"] = d
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, meta=json.dumps({"cases": list(gt.filtered), "share": gt.filter_share}), **arrays)
        tmp.replace(path)
    return gt
