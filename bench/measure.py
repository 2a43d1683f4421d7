"""How the benchmark times searches: a serial pass (one query at a time), throughput with C
concurrent clients, and both of those for two search paths interleaved (vecface vs the raw client).

A *search function* here is ``f(query_vector)``: ``lambda q: store.search(q, k, flt)`` or a
backend's ``store.raw_searcher(k)``. Each concurrent client calls its own function (its own store
handle, so its own connection).
"""

from __future__ import annotations

import contextlib
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


class Clients:
    """C client threads, client j calling ``fns[j]``, started once and kept for every slice they run
    (so thread start-up is paid once, outside any timed slice). Use as a context manager."""

    def __init__(self, fns: Sequence[SearchFn], queries: np.ndarray):
        self.fns, self.queries, self.c = list(fns), queries, len(fns)
        self._start = threading.Barrier(self.c + 1)
        self._done = threading.Barrier(self.c + 1)
        self._end = 0.0
        self._closing = False
        self._counts = [0] * self.c
        self._errors: list[BaseException] = []
        self._threads = [threading.Thread(target=self._work, args=(j,), daemon=True) for j in range(self.c)]
        for t in self._threads:
            t.start()

    def _work(self, j: int) -> None:
        f, queries, nq = self.fns[j], self.queries, len(self.queries)
        while True:
            self._start.wait()
            if self._closing:
                return
            i = (j * nq) // self.c  # every slice runs the same queries from the same places
            n = 0
            try:
                stop = self._end
                while time.perf_counter() < stop:
                    f(queries[i % nq])
                    i += 1
                    n += 1
            except BaseException as e:  # reported by run() after the slice
                self._errors.append(e)
            self._counts[j] = n
            self._done.wait()

    def run(self, duration: float) -> dict[str, Any]:
        """One slice: every client calls its function on the queries in turn for ``duration`` seconds
        (clients start at different places in the query list). QPS = answered queries / elapsed s."""
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        self._end = t0 + duration
        self._start.wait()
        self._done.wait()
        wall = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
        if self._errors:
            raise self._errors[0]
        total = sum(self._counts)
        return {"clients": self.c, "queries": total, "seconds": wall, "qps": total / wall if wall > 0 else 0.0,
                "client_cpu_cores": cpu / wall if wall > 0 else 0.0}

    def close(self) -> None:
        self._closing = True
        try:
            self._start.wait(timeout=60)
        except threading.BrokenBarrierError:
            pass
        for t in self._threads:
            t.join(timeout=60)

    def __enter__(self) -> "Clients":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def throughput(fns: Sequence[SearchFn], queries: np.ndarray, duration: float) -> dict[str, Any]:
    """C = len(fns) threads, client j calling ``fns[j]`` on the queries in turn for ``duration`` seconds
    (clients start at different places in the query list). QPS = answered queries / elapsed seconds."""
    with Clients(fns, queries) as clients:
        return clients.run(duration)


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
                           slice_s: float | None = None, warmup_s: float = 0.0,
                           calls_per_slice: int = 10) -> dict[str, dict[str, Any]]:
    """Throughput of each path with the same clients, ``duration`` seconds per path in all, measured
    in slices A B B A A B B A ..., so a change in the machine's load weighs on both paths alike.

    Each path's clients are started once and kept; each path first runs one uncounted ``warmup_s``
    slice. Slices last ``slice_s`` seconds (None: a quarter of ``duration``), or longer where the
    warm-up showed that a client of the slower path would make fewer than ``calls_per_slice`` calls
    in that time; the same length for both paths. Per path: the slices summed (answered queries /
    seconds), each slice's QPS in order (``slice_qps``: slice i of one path ran right next to slice
    i of the other) and the slice length."""
    names = list(paths)
    parts: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    with contextlib.ExitStack() as stack:
        clients = {name: stack.enter_context(Clients(paths[name], queries)) for name in names}
        piece = slice_s if slice_s else duration / 4
        if warmup_s > 0:
            warm = [clients[name].run(warmup_s) for name in names]
            per_client = min(w["qps"] / w["clients"] for w in warm)
            if per_client > 0:  # calls per second of a client of the slower path
                piece = max(piece, calls_per_slice / per_client)
        rounds = max(1, round(duration / (2 * piece)))
        for name in (names + names[::-1]) * rounds:
            parts[name].append(clients[name].run(piece))
    out = {}
    for name, ps in parts.items():
        queries_done = sum(p["queries"] for p in ps)
        secs = sum(p["seconds"] for p in ps)
        cpu = sum(p["client_cpu_cores"] * p["seconds"] for p in ps)
        out[name] = {"clients": ps[0]["clients"], "queries": queries_done, "seconds": secs,
                     "qps": queries_done / secs if secs > 0 else 0.0,
                     "client_cpu_cores": cpu / secs if secs > 0 else 0.0,
                     "slice_s": piece, "slice_qps": [p["qps"] for p in ps]}
    return out
