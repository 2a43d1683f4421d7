"""Grouping vectors into people: dlib's Chinese whispers over the pairs within a same-person
threshold, and the default threshold of each embedder. Used by :mod:`vecface.people` (a
collection's people) and :mod:`vecface.evaluate` (how well that works on labelled photos)."""

from __future__ import annotations

from collections import Counter

import numpy as np

from .errors import InvalidArgument, MissingDependency

#: The same-person threshold per embedder, as a cosine distance between stored (L2-normalised) vectors.
#: face-dlib: dlib's documented 0.6 Euclidean on its raw descriptors, whose length is about 1.4
#: (measured on scikit-image's and matplotlib's portraits), is 0.6^2 / (2 * 1.4^2) = 0.09 here.
#: face-clip and clip were not trained for identity: their figures are rough guesses; measure
#: yours with ``vecface eval`` (it prints a suggested threshold and its false-match rate).
DEFAULT_THRESHOLDS = {"face-dlib": 0.09, "face-clip": 0.08, "clip": 0.08}
NEIGHBOURS = 50  # edges per face: the nearest this many within the threshold


def threshold_for(kind: str | None) -> float:
    """The default same-person cosine distance of an embedder kind (see DEFAULT_THRESHOLDS)."""
    return DEFAULT_THRESHOLDS.get(kind or "", DEFAULT_THRESHOLDS["face-dlib"])


def check_threshold(threshold: float) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold < 2:
        raise InvalidArgument(f"the same-person threshold is a cosine distance between 0 and 2, got {threshold!r}")
    return float(threshold)


def cluster(vectors: np.ndarray, threshold: float, *, neighbours: int = NEIGHBOURS) -> np.ndarray:
    """Group L2-normalised ``vectors`` (n, d): label per row, 0 for the largest group, then 1, ...

    Edges join each vector to its ``neighbours`` nearest others within ``threshold`` (cosine
    distance); dlib's Chinese whispers splits that graph. Blocks of 1024 rows keep memory bounded.
    """
    threshold = check_threshold(threshold)
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    n = len(x)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    try:
        import dlib
    except ImportError as e:
        raise MissingDependency("dlib-bin", extra="face", purpose="grouping faces into people") from e
    edges: list[tuple[int, int]] = [(i, i) for i in range(n)]  # every face is a vertex, alone or not
    floor = np.float32(1.0 - threshold)  # similarity of the threshold: compare similarities, no 1 - s copy
    for start in range(0, n, 1024):
        sims = x[start:start + 1024] @ x.T
        rows, cols = np.nonzero(sims >= floor)  # few per row: only these are sorted, where too many
        crowded = np.flatnonzero(np.bincount(rows, minlength=len(sims)) > neighbours + 1)
        if len(crowded):
            near = np.argpartition(-sims[crowded], neighbours, axis=1)[:, :neighbours + 1]
            keep = ~np.isin(rows, crowded)
            rows = np.concatenate([rows[keep], np.repeat(crowded, neighbours + 1)])
            cols = np.concatenate([cols[keep], near.ravel()])
            ok = sims[rows, cols] >= floor
            rows, cols = rows[ok], cols[ok]
        other = cols != rows + start
        edges.extend(zip((rows[other] + start).tolist(), cols[other].tolist()))
    labels = np.asarray(dlib.chinese_whispers(edges), dtype=np.int64)
    sizes = Counter(labels.tolist())
    order = {lab: rank for rank, (lab, _) in enumerate(sorted(sizes.items(), key=lambda kv: (-kv[1], kv[0])))}
    return np.asarray([order[lab] for lab in labels.tolist()], dtype=np.int64)


def representative(vectors: np.ndarray) -> int:
    """The row closest to the group's mean direction: the most typical face of a person."""
    return int(np.argmax(vectors @ vectors.mean(axis=0)))
