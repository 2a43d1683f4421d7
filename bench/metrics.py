"""Recall, latency percentiles, Pareto frontiers and overhead ratios: plain numpy, no backend in sight.

Recall by id: for each query, the share of the true k nearest ids that the backend returned
in its first k hits; averaged over queries. When a filter leaves fewer than k rows, the true
list is shorter and the denominator is its length.

Distance-tolerant recall (ann-benchmarks' "knn" recall with a relative epsilon): a returned hit
counts when its distance is at most the k-th true distance times (1 + 1e-3) (``d + eps*|d|``, so
negative inner-product distances are handled too, plus 1e-6 absolute for float32 rounding). It
forgives ties and near-ties, which matter on real data where many neighbours are equally close.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

EPSILON = 1e-3
ABS_TOL = 1e-6


def recall_by_id(found: Sequence[Sequence[int]], true_ids: np.ndarray, k: int) -> float:
    """Mean over queries of |found[:k] ∩ true[:k]| / |true[:k]| (true ids < 0 are padding)."""
    scores = []
    for got, want in zip(found, true_ids):
        want = [int(w) for w in want[:k] if w >= 0]
        if not want:
            continue
        scores.append(len(set(int(g) for g in list(got)[:k]) & set(want)) / len(want))
    return float(np.mean(scores)) if scores else float("nan")


def recall_tolerant(found_dist: Sequence[Sequence[float]], true_dist: np.ndarray, k: int,
                    epsilon: float = EPSILON) -> float:
    """Mean over queries of (#returned distances <= threshold) / min(k, #true neighbours)."""
    scores = []
    for got, want in zip(found_dist, true_dist):
        want = np.asarray(want[:k], dtype=np.float64)
        want = want[np.isfinite(want)]
        if len(want) == 0:
            continue
        kth = want[-1]
        threshold = kth + epsilon * abs(kth) + ABS_TOL
        hits = sum(1 for d in list(got)[:k] if d <= threshold)
        scores.append(min(hits, len(want)) / len(want))
    return float(np.mean(scores)) if scores else float("nan")


def percentiles_ms(latencies_s: Sequence[float]) -> dict[str, float]:
    a = np.asarray(latencies_s, dtype=np.float64) * 1000.0
    if a.size == 0:
        return {key: float("nan") for key in ("p50", "p90", "p95", "p99", "mean", "max")}
    p50, p90, p95, p99 = np.percentile(a, [50, 90, 95, 99])
    return {"p50": float(p50), "p90": float(p90), "p95": float(p95), "p99": float(p99), "mean": float(a.mean()),
            "max": float(a.max())}


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indexes of the points (recall, qps) that no other point beats on both, by recall."""
    order = sorted(range(len(points)), key=lambda i: (-points[i][0], -points[i][1]))
    best_qps = -np.inf
    keep = []
    for i in order:
        if points[i][1] > best_qps:
            keep.append(i)
            best_qps = points[i][1]
    return sorted(keep, key=lambda i: points[i][0])


def sweep_values(kind: str, lists: int | None = None, quick: bool = False) -> list[int]:
    """The query parameter values swept on one built index."""
    if kind == "hnsw":
        return [10, 40, 160] if quick else [10, 20, 40, 80, 160, 400]
    if kind == "ivfflat":
        lists = max(1, int(lists or 1))
        vals = []
        p = 1
        while p < lists:
            vals.append(p)
            p *= 4 if quick else 2
        vals.append(lists)
        return vals
    return [0]


def summary_point(sweep: list[dict[str, Any]], target: float = 0.9) -> dict[str, Any] | None:
    """The sweep point with the best throughput among those with recall >= target, else the most
    accurate point."""
    if not sweep:
        return None
    ok = [s for s in sweep if (s.get("recall") or 0) >= target]
    if ok:
        return max(ok, key=lambda s: s.get("best_qps") or 0)
    return max(sweep, key=lambda s: s.get("recall") or 0)


def _ratio(a: Any, b: Any) -> float | None:
    if a is None or b is None or not np.isfinite(a) or not np.isfinite(b) or b <= 0:
        return None
    return float(a) / float(b)


def slice_ratios(t: dict[str, Any]) -> list[float]:
    """vecface / raw QPS of each pair of slices taken side by side in one throughput entry (slice i of
    one path ran right next to slice i of the other); empty for entries recorded without slices."""
    pairs = zip(t["vecface"].get("slice_qps") or [], t["raw"].get("slice_qps") or [])
    return [r for r in (_ratio(a, b) for a, b in pairs) if r is not None]


def _qps_ratio(t: dict[str, Any]) -> dict[str, Any]:
    """The median of the slice pairs' ratios (a burst of load from elsewhere that hits one slice moves
    one pair, not the result), with their middle half (``spread``: 25th and 75th percentile) and the
    ratio of the summed QPS (``summed``); results recorded without slices: the summed ratio."""
    summed = _ratio(t["vecface"]["qps"], t["raw"]["qps"])
    pairs = slice_ratios(t)
    if not pairs:
        return {"clients": t["clients"], "ratio": summed, "summed": summed}
    q25, q50, q75 = np.percentile(pairs, [25, 50, 75])
    return {"clients": t["clients"], "ratio": float(q50), "summed": summed, "spread": [float(q25), float(q75)]}


def overhead_ratios(entry: dict[str, Any]) -> dict[str, Any]:
    """vecface / raw from one overhead entry's recorded figures: latency ratios (``p50``, ``p90``;
    1.10 = vecface takes 10% longer per query) and QPS ratios per client count (``qps``; 0.91 =
    vecface answers 9% fewer queries per second; see :func:`_qps_ratio`)."""
    ours, raw = entry["serial"]["vecface"], entry["serial"]["raw"]
    return {"p50": _ratio(ours.get("p50"), raw.get("p50")), "p90": _ratio(ours.get("p90"), raw.get("p90")),
            "qps": [_qps_ratio(t) for t in entry.get("throughput", [])]}
