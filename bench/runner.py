"""The benchmark harness: for every backend x index kind, load, build, sweep, filter, compare.

Per backend (one collection, loaded once, through the public VectorStore interface):

1. **load** the base set with the bulk ``upsert_arrays`` path, streamed from the dataset in
   chunks; only the upsert calls are timed (not data generation), and no vector index exists yet.
2. per index kind (``exact`` first, then ``ivfflat``, ``hnsw``; kinds the backend lacks are
   skipped with a note):
   - **build** the index over the loaded rows (timed); **time to first query** = build time + the
     first query's latency; **cold open**: a new handle opened on the collection until its first
     answer; **index size** where the backend tells it.
   - a **sweep** of the query parameter (``ef_search`` / ``probes``) on that one built index,
     never rebuilding: per value, a warm-up, then every query once, serially (latency
     percentiles, recall by id, distance-tolerant recall), then **throughput** with C concurrent
     clients for a fixed duration, each client a thread with its own store handle (its own
     connection), C = 1, 2, 4, 8 by default. The client process's CPU use is recorded; an
     out-of-process backend whose client used nearly every core is flagged client-bound.
   - **filtered search** at the sweep's operating point: filters keeping ~50%, 10%, 1% of rows,
     recall against the exact filtered ground truth, once per filter strategy the backend offers.
   - **overhead**: vecface's search against the backend's raw client call on the same index and
     queries, interleaved (see :mod:`vecface.bench.overhead`), for the kinds in ``overhead_at``.
3. **baselines**: the engine's raw bulk load of the same data right before and right after step 1
   (the ratio is to their mean time), and the backend's one-row-at-a-time insert on a sample, each
   as a ratio to the bulk path.

The runner knows backends only through the VectorStore contract (capabilities and hooks).
"""

from __future__ import annotations

import datetime as _dt
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import numpy as np

from vecface.errors import UnknownCollection, VecfaceError
from vecface.registry import BACKENDS, backend_class, open_store
from vecface.types import Exact, IVFFlat, parse_index

from . import groundtruth
from .baselines import one_at_a_time, per_s, raw_bulk, raw_run, timed_load
from .config import KNOB, SCHEMA, BenchConfig, Target
from .datasets import Dataset, default_cache_dir, open_dataset
from .overhead import overhead_phase
from .progress import Progress
from .provenance import machine_info, software_versions
from .sweep import filtered_phase, sweep_phase

INDEX_ORDER = {"exact": 0, "ivfflat": 1, "hnsw": 2}


def set_knob(handles, kind: str, value: int | None, strategy: str | None = None) -> str | None:
    """Set index ``kind``'s query-time knob to ``value`` (and a filter strategy) on every distinct
    handle; returns the knob's name (None for exact search)."""
    param = KNOB.get(kind)
    knobs = {param: value} if param else {}
    for h in {id(h): h for h in handles}.values():
        h.set_query_params(**knobs, filter_strategy=strategy)
    return param


def _drop_existing(backend: str, name: str, options: dict[str, Any]) -> None:
    try:
        s = open_store(backend, name, None, create=False, **options)
    except UnknownCollection:
        return
    s.drop()


class Runner:
    def __init__(self, cfg: BenchConfig, progress: Progress | None = None,
                 checkpoint: Callable[[dict[str, Any]], None] | None = None):
        """``checkpoint(results)`` is called after every backend x index, so a long run that is
        interrupted still leaves the figures it has."""
        self.checkpoint = checkpoint
        self.cfg = cfg.resolved()
        self.p = progress or Progress(enabled=False)
        self.cores = os.cpu_count() or 1
        self.results: dict[str, Any] = {}

    # -- setup
    def _dataset(self) -> Dataset:
        cfg = self.cfg
        return open_dataset(cfg.dataset, n=cfg.default_n(), dim=cfg.dim, n_queries=self._nq(),
                            seed=cfg.seed, metric=cfg.metric, cache_dir=self.cache_dir)

    def _nq(self) -> int:
        """Queries the run needs: the sweep's, and the overhead comparison's where only it runs."""
        cfg = self.cfg
        return cfg.overhead_queries if "overhead" in cfg.phases and "sweep" not in cfg.phases else cfg.queries

    @property
    def cache_dir(self) -> Path:
        return Path(self.cfg.cache_dir) if self.cfg.cache_dir else default_cache_dir()

    def _backends(self) -> tuple[list[Target], list[dict[str, Any]]]:
        wanted = self.cfg.backends or list(BACKENDS)
        ok, skipped = [], []
        for t in self.cfg.targets(wanted):
            try:
                detail = backend_class(t.backend).probe(**t.options)
                ok.append(t)
                self.p.log(f"[green]{t.name}[/]: {detail}")
            except Exception as e:  # a broken or missing backend must not end the benchmark
                why = str(e) if isinstance(e, VecfaceError) else f"{type(e).__name__}: {e}"
                skipped.append({"backend": t.name, "index": None, "reason": f"backend unavailable: {why}"})
                self.p.log(f"[yellow]skipping {t.name}[/]: {why}")
        return ok, skipped

    def run(self) -> dict[str, Any]:
        cfg = self.cfg
        started = time.perf_counter()
        ds = self._dataset()
        queries = np.ascontiguousarray(ds.queries[: self._nq()], dtype=np.float32)
        with self.p.task(f"ground truth ({ds.n:,} x {ds.dim}, {len(queries)} queries)", ds.n) as tick:
            gt = groundtruth.load_or_compute(ds, queries, cfg.k, self.cache_dir, progress=tick)
        backends, skipped = self._backends()
        specs = sorted((parse_index(s) for s in cfg.indexes), key=lambda s: INDEX_ORDER[s.kind])
        res: dict[str, Any] = {
            "schema": SCHEMA,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join(["vecface", *sys.argv[1:]]) if sys.argv and "vecface" in sys.argv[0] else None,
            "params": {**{k: v for k, v in asdict(cfg).items() if k not in ("backend_options", "topologies")},
                       "backends_run": [t.name for t in backends], "indexes": [str(s) for s in specs]},
            "topologies": [{"name": t.name, "backend": t.backend, "topology": t.label} for t in backends]
            if cfg.topologies else [],
            "dataset": {**ds.describe(), "name": ds.name, "fingerprint": ds.fingerprint(),
                        "ground_truth": gt.source, "filter_share": gt.filter_share},
            "provenance": {"versions": software_versions(), "machine": machine_info(), "servers": {}},
            "loads": [], "runs": [], "baselines": [], "overhead": [], "skipped": skipped,
        }
        self.results = res
        for i, target in enumerate(backends):
            try:
                self._run_backend(target, i, ds, queries, gt, specs, res)
            except Exception as e:
                res["skipped"].append({"backend": target.name, "index": None,
                                       "reason": f"failed: {type(e).__name__}: {e}"})
                self.p.log(f"[red]{target.name} failed[/]: {type(e).__name__}: {e}")
        res["wall_s"] = time.perf_counter() - started
        return res

    def _run_backend(self, target: Target, i: int, ds: Dataset, queries, gt, specs, res) -> None:
        """One target: a backend on one topology. Its results are filed under ``target.name``
        (the backend, or ``backend (topology)``), with ``engine`` and ``topology`` beside it."""
        cfg = self.cfg
        backend, opts = target.backend, target.options
        name = f"{cfg.collection}_{backend}" + (f"_{i}" if target.label else "")
        _drop_existing(backend, name, opts)
        store = open_store(backend, name, ds.dim, ds.metric, **opts)
        try:
            try:
                res["provenance"]["servers"].update(store.server_versions())
            except Exception as e:  # provenance is best effort, never fatal
                res["provenance"]["servers"][backend] = f"unknown ({e})"
            load = self._load(store, ds, target.name)
            res["loads"].append(load)
            for spec in specs:
                if spec.kind not in store.supported_indexes:
                    res["skipped"].append({"backend": target.name, "index": spec.kind,
                                           "reason": f"{backend} has no {spec.kind} index (supports "
                                                     f"{', '.join(store.supported_indexes)})"})
                    continue
                try:
                    run = self._run_index(target, store, name, opts, spec, queries, gt, load, res)
                    res["runs"].append(run)
                    if self.checkpoint:
                        self.checkpoint(res)
                except Exception as e:
                    res["skipped"].append({"backend": target.name, "index": spec.kind,
                                           "reason": f"failed: {type(e).__name__}: {e}"})
                    self.p.log(f"[red]{target.name}/{spec.kind} failed[/]: {type(e).__name__}: {e}")
            if "baselines" in cfg.phases:
                res["baselines"].append({**one_at_a_time(store, ds, load, cfg.baseline_rows, self.p),
                                         "backend": target.name})
        finally:
            try:
                store.drop()
            except Exception:
                store.close()

    # -- load
    def _load(self, store, ds: Dataset, backend: str) -> dict[str, Any]:
        cfg = self.cfg
        raw = "baselines" in cfg.phases  # the raw bulk load right before and right after vecface's
        before = raw_run(store, ds, cfg.batch_size, self.p, backend) if raw else None
        with self.p.task(f"{backend}: bulk load (upsert_arrays, batch {cfg.batch_size})", ds.n) as tick:
            rows, elapsed = timed_load(ds, cfg.batch_size, lambda i, x, m: store.upsert_arrays(
                i, x, m, batch_size=cfg.batch_size), tick)
        load = {"backend": backend, "engine": store.backend, "rows": rows, "seconds": elapsed,
                "vectors_per_s": per_s(rows, elapsed), "batch_size": cfg.batch_size,
                "storage_bytes": store.storage_bytes()}
        if raw:  # no after-run where the run before was skipped: its ratio would be dropped anyway
            runs = [before] if "skipped" in before else [before, raw_run(store, ds, cfg.batch_size, self.p, backend)]
            load["raw"] = raw_bulk(load, runs)
        return load

    # -- one index
    def _run_index(self, target: Target, store, name, opts, spec, queries, gt, load, res) -> dict[str, Any]:
        cfg = self.cfg
        backend = target.backend
        label = f"{target.name}/{spec.kind}"
        rows = load["rows"]
        with self.p.task(f"{label}: build {spec}", None):
            t = time.perf_counter()
            store.build_index(spec)
            build_s = time.perf_counter() - t
        t = time.perf_counter()
        store.search(queries[0], cfg.k)
        first_q = time.perf_counter() - t
        size = store.index_size_bytes()
        t = time.perf_counter()
        cold = open_store(backend, name, None, create=False, **opts)
        cold.search(queries[0], cfg.k)
        cold_s = time.perf_counter() - t
        run: dict[str, Any] = {
            "backend": target.name, "engine": backend, "topology": target.label,
            "index": spec.kind, "index_spec": str(spec), "rows": rows,
            "params": {k: v for k, v in vars(spec).items()},
            "build_s": build_s, "first_query_s": first_q, "time_to_first_query_s": build_s + first_q,
            "cold_open_first_query_s": cold_s, "index_size_bytes": size,
            "in_process": store.in_process, "sweep": [], "filtered": [], "notes": [],
        }
        if isinstance(spec, IVFFlat):
            run["params"]["lists"] = min(spec.resolve_lists(rows), rows)
        if store.build_note and not isinstance(spec, Exact):
            run["notes"].append(store.build_note)
        overhead = "overhead" in cfg.phases and spec.kind in cfg.overhead_at
        handles = self._handles(store, cold, backend, name, opts, size, overhead, run)
        try:
            if "sweep" in cfg.phases:
                sweep_phase(run, store, handles, spec, queries, gt, cfg, set_knob, self.cores, self.p)
            if "filtered" in cfg.phases:
                filtered_phase(run, store, spec, queries, gt, cfg, set_knob, self.p)
            if overhead:
                res["overhead"].append(overhead_phase(run, handles, queries, cfg, set_knob, self.p))
        finally:
            for h in {id(h): h for h in handles}.values():
                h.close()
        return run

    def _handles(self, store, cold, backend, name, opts, size, overhead: bool, run) -> list:
        """One store handle per concurrent client (each its own connection), the cold-opened one first.
        In-process backends load the index into every handle, so their clients share one handle when
        that many copies would not fit comfortably in memory."""
        cfg = self.cfg
        counts = (cfg.concurrency if "sweep" in cfg.phases else []) + (cfg.overhead_concurrency if overhead else [])
        cmax = max(counts, default=1)
        share = bool(store.in_process and size
                     and size * cmax > 0.25 * (machine_info()["memory_bytes"] or 1 << 34))
        if share:
            run["notes"].append(f"{backend} clients share one handle (index {size / 2**20:.0f} MiB x {cmax} "
                                "copies would not fit comfortably in memory).")
        handles = [cold]
        try:
            for _ in range(cmax - 1):
                handles.append(cold if share else open_store(backend, name, None, create=False, **opts))
        except BaseException:
            for h in {id(h): h for h in handles}.values():
                h.close()
            raise
        return handles


def run_benchmark(cfg: BenchConfig, progress: Progress | None = None,
                  checkpoint: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    return Runner(cfg, progress, checkpoint).run()
