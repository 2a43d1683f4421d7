"""The naive baseline the bulk load is compared with: inserting rows one at a time, through each
backend's own ``VectorStore.insert_one_by_one`` (into a scratch place, never the benchmark's
collection).

The rate is timed between the first and the last row's progress tick, so creating and dropping the
backend's scratch table or collection is not counted: (rows - 1) / (last tick - first tick).
"""

from __future__ import annotations

import time
from typing import Any

from vecface.errors import UnsupportedOperation

from .datasets import Dataset


def one_at_a_time(store, ds: Dataset, load: dict[str, Any], rows: int, progress) -> dict[str, Any]:
    """The baseline entry for ``store``'s backend: method (in the backend's words), seconds, rows/s and
    the bulk path's speed-up over it, or ``skipped`` with the reason."""
    backend = store.backend
    rows = min(rows, ds.n)
    bulk = load.get("vectors_per_s")
    base = {"backend": backend, "rows": rows, "bulk_vectors_per_s": bulk}
    if store.in_process:
        return {**base, "method": None,
                "skipped": f"{backend} is in-process: no per-row network path to compare"}
    _, x, tags = next(ds.chunks(rows))
    ids = [f"row{i}" for i in range(len(x))]
    metas = [{"tag": t} if t else {} for t in (tags or [None] * len(x))]
    ticks: list[float] = []
    try:
        with progress.task(f"{backend}: baseline, one row at a time ({len(x)} rows)", len(x)) as advance:
            def tick(n: int = 1) -> None:
                ticks.append(time.perf_counter())
                advance(n)

            t0 = time.perf_counter()
            method = store.insert_one_by_one(ids, x, metas, tick)
            whole = time.perf_counter() - t0
    except UnsupportedOperation as e:
        return {**base, "method": None, "skipped": str(e)}
    except Exception as e:
        return {**base, "method": None, "skipped": f"{type(e).__name__}: {e}"}
    if len(ticks) >= 2 and ticks[-1] > ticks[0]:
        secs, timed = ticks[-1] - ticks[0], len(ticks) - 1
    else:  # the backend did not tick per row: the whole call, scratch setup included
        secs, timed = whole, len(x)
    vps = timed / secs if secs > 0 else None
    return {**base, "rows": len(x), "method": method, "seconds": secs, "vectors_per_s": vps,
            "bulk_speedup": (bulk / vps) if bulk and vps else None}
