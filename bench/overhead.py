"""The price of the abstraction: vecface's ``store.search`` against the engine's own client call
(``store.raw_searcher(k)``: the same index, the same query parameters, nothing of vecface around it),
on the same built index and the same queries, interleaved.

Serially: every query through both paths, alternating (latency p50/p90 of each). Concurrently: C
clients, each with its own store handle and its own raw searcher from that handle, measured in slices
A B B A A B B A ... (QPS of each), the clients started once per path and warmed up by one uncounted
slice. The ratios vecface/raw are computed from the recorded figures by
:func:`vecface.bench.metrics.overhead_ratios` (the QPS ratio: the median of the ratios of slices
taken side by side).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from vecface.errors import UnsupportedOperation

from . import metrics
from .measure import interleaved_serial, interleaved_throughput, searcher

PATHS = ("vecface", "raw")


def measure_overhead(handles: Sequence[Any], queries: np.ndarray, k: int, concurrency: Sequence[int],
                     duration: float, warmup: int, *, slice_s: float, warmup_s: float,
                     tick=None) -> dict[str, Any]:
    """One comparison on ``handles`` (store handles on one collection, query parameters already set;
    ``handles[0]`` serves the serial pass): ``duration`` seconds per path and client count, in slices
    of ``slice_s`` or longer, after a ``warmup_s`` slice per path (``cfg.overhead_slice_s`` and
    ``cfg.overhead_warmup_s``; see :func:`~vecface.bench.measure.interleaved_throughput`). Raises
    UnsupportedOperation where the backend has no raw searcher."""
    raws = [h.raw_searcher(k) for h in handles]
    ours = [searcher(h, k) for h in handles]
    lat = interleaved_serial({"vecface": ours[0], "raw": raws[0]}, queries, warmup=warmup, tick=tick)
    entry: dict[str, Any] = {
        "queries": len(queries), "k": k,
        "serial": {name: metrics.percentiles_ms(lat[name]) for name in PATHS},
        "throughput": [],
    }
    for c in concurrency:
        tp = interleaved_throughput({"vecface": ours[:c], "raw": raws[:c]}, queries, duration, slice_s=slice_s,
                                    warmup_s=warmup_s)
        entry["throughput"].append({"clients": c, **tp})
    entry["ratios"] = metrics.overhead_ratios(entry)
    return entry


def overhead_phase(run: dict[str, Any], handles: Sequence[Any], queries: np.ndarray, cfg, set_knob,
                   progress) -> dict[str, Any]:
    """The overhead entry for one backend x index (``run`` gives its labels): sets the knob to
    ``cfg.overhead_at[kind]`` on every handle, then :func:`measure_overhead`; a backend without a raw
    searcher, or one that fails, gets an entry saying so."""
    kind = run["index"]
    value = cfg.overhead_at[kind]
    param = set_knob(handles, kind, value)
    base = {"backend": run["backend"], "index": kind, "index_spec": run["index_spec"], "param": param,
            "value": value if param else None}
    qs = queries[: cfg.overhead_queries]
    label = f"{run['backend']}/{kind}"
    try:
        with progress.task(f"{label}: vecface vs raw client ({param}={value}, {len(qs)} queries serial + "
                           f"C={','.join(map(str, cfg.overhead_concurrency))} x {cfg.overhead_duration:g}s per path)",
                           len(qs)) as tick:
            return {**base, **measure_overhead(handles, qs, cfg.k, cfg.overhead_concurrency, cfg.overhead_duration,
                                               warmup=min(cfg.warmup, len(qs)), tick=tick,
                                               slice_s=cfg.overhead_slice_s, warmup_s=cfg.overhead_warmup_s)}
    except UnsupportedOperation as e:
        return {**base, "skipped": str(e)}
    except Exception as e:  # one failed comparison must not end the benchmark
        progress.log(f"[red]{label} overhead failed[/]: {type(e).__name__}: {e}")
        return {**base, "skipped": f"failed: {type(e).__name__}: {e}"}
