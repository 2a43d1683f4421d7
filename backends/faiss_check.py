"""``VectorStore.check`` for FAISS: is every stored record returned by the index?

Every live slot is in the index by construction (labels are slots, and a view's index always holds
all of its slots), so a record the index does not return is a graph that cannot reach it (HNSW
may leave a node unreachable, exact duplicates especially) or an index file that lied. The check
searches each live record with its own vector; ``repair`` rebuilds the index over the live records
(a compaction) and searches the ones it missed again.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from vecface.store import CheckReport

from . import faiss_search as fs

#: a record counts as searchable when its own vector finds it among this many hits
PROBE_K = 10
_BATCH = 1024


def _missing(store: Any, slots: np.ndarray, progress: Callable[[int], None] | None) -> list[int]:
    view = store._view
    mask = view.cols.alive[: view.cols.n]
    sel = fs.Selection(mask.copy()) if view.cols.dead else None
    k = min(PROBE_K, view.cols.alive_count)
    params = fs.query_params(view.index, view.spec, max(store.query_params.ef_search or 0, 4 * PROBE_K),
                             store.query_params.probes, k, sel.sel if sel else None)
    rows = view.vectors.rows(view.cols.n)
    lost: list[int] = []
    for start in range(0, len(slots), _BATCH):
        chunk = slots[start:start + _BATCH]
        _, labels = view.index.search(np.ascontiguousarray(rows[chunk]), k, params=params)
        lost += chunk[~(labels == chunk[:, None]).any(axis=1)].tolist()
        if progress is not None:
            progress(len(chunk))
    return lost


def check(store: Any, *, repair: bool = False, progress: Callable[[int], None] | None = None) -> CheckReport:
    """Compare every stored record with what the index returns; with ``repair``, rebuild and retry."""
    store._refresh()
    with store._state.reading():
        cols = store._view.cols
        live = np.flatnonzero(cols.alive[: cols.n])
        lost = _missing(store, live, progress) if len(live) else []
        ids = cols.ids[lost].tolist()
    if not (repair and ids):
        return CheckReport(stored=len(live), unsearchable=ids, repaired=[], still_unsearchable=ids)
    with store._writing():
        store._compact(store._view.spec)
    with store._state.reading():
        slots = store._view.cols.slots_for(ids)
        still = store._view.cols.ids[_missing(store, np.array(sorted(slots.values()), dtype=np.int64), None)].tolist()
    gone = set(still)
    return CheckReport(stored=len(live), unsearchable=ids, repaired=[i for i in ids if i not in gone],
                       still_unsearchable=still)
