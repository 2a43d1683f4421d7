"""The baselines the bulk load is compared with, each through a hook of the backend's own, into a
scratch place (never the benchmark's collection):

- **raw bulk load** (``VectorStore.raw_loader``): the engine's own bulk path without vecface, fed
  the same dataset in the same chunks, timed the same way (only the load calls: not data
  generation, not making or dropping the scratch place). It runs twice, right before and right
  after vecface's load, so a machine that gets busier or quieter during the run weighs on both
  sides alike; the report gives vecface's rate as a ratio to the two runs' mean time.
- **one row at a time** (``VectorStore.insert_one_by_one``) on a sample, timed between the first
  and the last row's progress tick, so creating and dropping the backend's scratch table or
  collection is not counted: (rows - 1) / (last tick - first tick).
"""

from __future__ import annotations

import time
from typing import Any, Callable

from vecface.errors import UnsupportedOperation

from .datasets import Dataset


def per_s(n: int, secs: float) -> float | None:
    """``n`` over ``secs``, or None when no time was measured."""
    return n / secs if secs > 0 else None


def timed_load(ds: Dataset, batch_size: int, load: Callable[..., Any], tick: Callable[[int], Any]) -> tuple[int, float]:
    """Feed every row of ``ds`` to ``load(ids, vectors, metadata)`` in chunks of at least 10,000 rows
    (as the dataset makes them); only the calls are timed. Returns (rows, seconds)."""
    elapsed, rows = 0.0, 0
    for start, x, tags in ds.chunks(max(batch_size, 10_000)):
        ids = ds.ids(start, len(x))
        metas = [{"tag": t} for t in tags] if tags is not None else None
        t = time.perf_counter()
        load(ids, x, metas)
        elapsed += time.perf_counter() - t
        rows += len(x)
        tick(len(x))
    return rows, elapsed


def raw_run(store, ds: Dataset, batch_size: int, progress, label: str) -> dict[str, Any]:
    """One raw bulk load of the whole dataset through ``store.raw_loader``: method, rows and
    seconds, or ``skipped`` with the reason."""
    try:
        with store.raw_loader(batch_size) as raw, \
                progress.task(f"{label}: baseline, raw bulk load ({raw.method})", ds.n) as tick:
            rows, secs = timed_load(ds, batch_size, raw, tick)
    except UnsupportedOperation as e:
        return {"skipped": str(e)}
    except Exception as e:
        return {"skipped": f"{type(e).__name__}: {e}"}
    return {"method": raw.method, "rows": rows, "seconds": secs}


def raw_bulk(load: dict[str, Any], runs: list[dict[str, Any]]) -> dict[str, Any]:
    """vecface's load against the raw bulk loads (:func:`raw_run`) timed around it: method, rows per
    run, the runs' mean seconds, rows/s at that mean, each run's rows/s (``runs_vectors_per_s``,
    in order) and vecface's bulk rate over the raw one (``bulk_vs_raw``); or ``skipped``."""
    bulk = load.get("vectors_per_s")
    base = {"backend": load["backend"], "bulk_vectors_per_s": bulk}
    skipped = [r["skipped"] for r in runs if "skipped" in r]
    if skipped or not runs:
        return {**base, "method": None, "skipped": skipped[0] if skipped else "no raw run"}
    rows, secs = runs[0]["rows"], sum(r["seconds"] for r in runs) / len(runs)
    vps = per_s(rows, secs)
    return {**base, "method": runs[0]["method"], "rows": rows, "seconds": secs, "vectors_per_s": vps,
            "runs_vectors_per_s": [per_s(r["rows"], r["seconds"]) for r in runs],
            "bulk_vs_raw": (bulk / vps) if bulk and vps else None}


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
    vps = per_s(timed, secs)
    return {**base, "rows": len(x), "method": method, "seconds": secs, "vectors_per_s": vps,
            "bulk_speedup": (bulk / vps) if bulk and vps else None}
