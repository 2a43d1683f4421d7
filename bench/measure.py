"""How the benchmark times searches: a serial pass (one query at a time), throughput with C
concurrent clients, and both of those for two search paths interleaved (vecface vs the raw client).

A *search function* here is ``f(query_vector)``: ``lambda q: store.search(q, k, flt)`` or a
backend's ``store.raw_searcher(k)``. Each concurrent client calls its own function (its own store
handle, so its own connection).
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Sequence

import numpy as np

SearchFn = Callable[[np.ndarray], Any]


def searcher(store, k: int, flt=None) -> SearchFn:
    """vecface's search path as a search function."""
    return lambda q: store.search(q, k, flt)


def _ids_dists(hits) -> tuple[list[int], list[float]]:
    return [int(h.id) for h in hits], [float(h.distance) for h in hits]


def serial_pass(store, queries: np.ndarray, k: int, flt=None, warmup: int = 0, tick=None,
                budget_s: float | None = None, min_queries: int = 1):
    """Warm up, then run the queries once each, in order, timing each ``store.search`` call; stop early
    once ``budget_s`` seconds of queries have run and at least ``min_queries`` are done (slow points
    such as exact scans). Returns (latencies, ids, dists) for the queries that ran."""
    for q in queries[:warmup]:
        store.search(q, k, flt)
    lat, ids, dists = [], [], []
    spent = 0.0
    for j, q in enumerate(queries):
        if budget_s is not None and spent > budget_s and j >= min_queries:
            if tick:
                tick(len(queries) - j)
            break
        t = time.perf_counter()
        hits = store.search(q, k, flt)
        lat.append(time.perf_counter() - t)
        spent += lat[-1]
        i, d = _ids_dists(hits)
        ids.append(i)
        dists.append(d)
        if tick:
            tick(1)
    return lat, ids, dists


def throughput(fns: Sequence[SearchFn], queries: np.ndarray, duration: float) -> dict[str, Any]:
    """C = len(fns) threads, client j calling ``fns[j]`` on the queries in turn for ``duration`` seconds
    (clients start at different places in the query list). QPS = answered queries / elapsed seconds."""
    c = len(fns)
    counts = [0] * c
    errors: list[BaseException] = []
    barrier = threading.Barrier(c + 1)
    end = [0.0]
    nq = len(queries)

    def work(j: int) -> None:
        f = fns[j]
        i = (j * nq) // c
        n = 0
        try:
            barrier.wait()
            stop = end[0]
            while time.perf_counter() < stop:
                f(queries[i % nq])
                i += 1
                n += 1
        except BaseException as e:  # reported after join
            errors.append(e)
        counts[j] = n

    threads = [threading.Thread(target=work, args=(j,), daemon=True) for j in range(c)]
    for t in threads:
        t.start()
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    end[0] = t0 + duration
    barrier.wait()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    if errors:
        raise errors[0]
    total = sum(counts)
    return {"clients": c, "queries": total, "seconds": wall, "qps": total / wall if wall > 0 else 0.0,
            "client_cpu_cores": cpu / wall if wall > 0 else 0.0}


def interleaved_serial(paths: dict[str, SearchFn], queries: np.ndarray, warmup: int = 0,
                       tick=None) -> dict[str, list[float]]:
    """Every query once through each path, one call at a time, the paths alternating and their order
    flipping from one step to the next (so drift on a shared machine falls on both alike). At step j
    path i runs query (j + i x N / P) mod N (N queries, P paths): never the query another path has
    just run. Run back to back, the second call on one query finds its index pages, graph nodes or
    buffers still in the CPU's caches (on FAISS HNSW, 50k x 512, it ran in about a third of the
    first's time), so each path's latencies fell in two humps and its p50 swung with the hump it
    landed on. Returns each path's latencies in seconds, in query order."""
    names = list(paths)
    n = len(queries)
    for q in queries[:warmup]:
        for name in names:
            paths[name](q)
    shift = {name: (i * n) // len(names) for i, name in enumerate(names)}
    lat: dict[str, list[float]] = {name: [0.0] * n for name in names}
    for j in range(n):
        for name in (names if j % 2 == 0 else names[::-1]):
            i = (j + shift[name]) % n
            q = queries[i]
            t = time.perf_counter()
            paths[name](q)
            lat[name][i] = time.perf_counter() - t
        if tick:
            tick(1)
    return lat


def interleaved_throughput(paths: dict[str, Sequence[SearchFn]], queries: np.ndarray, duration: float,
                           rounds: int = 2) -> dict[str, dict[str, Any]]:
    """Throughput of each path with the same clients, ``duration`` seconds per path in all, measured
    in slices A B B A, ``rounds`` times over, and summed per path (answered queries / seconds), so a
    change in the machine's load during the measurement weighs on both paths alike."""
    names = list(paths)
    order = (names + names[::-1]) * max(1, rounds)
    piece = duration / (2 * max(1, rounds))
    parts: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for name in order:
        parts[name].append(throughput(paths[name], queries, piece))
    out = {}
    for name, ps in parts.items():
        queries_done = sum(p["queries"] for p in ps)
        secs = sum(p["seconds"] for p in ps)
        cpu = sum(p["client_cpu_cores"] * p["seconds"] for p in ps)
        out[name] = {"clients": ps[0]["clients"], "queries": queries_done, "seconds": secs,
                     "qps": queries_done / secs if secs > 0 else 0.0,
                     "client_cpu_cores": cpu / secs if secs > 0 else 0.0}
    return out
