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
     recall against the exact filtered ground truth.
3. **baselines** on a sample: pgvector row-by-row INSERT (one statement per row, one commit) and
   Weaviate one-object-at-a-time insert, as ratios to the bulk path's vectors/s.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

import vecface
from vecface.errors import UnknownCollection, VecfaceError
from vecface.registry import BACKENDS, backend_class, open_store
from vecface.types import HNSW, Exact, IVFFlat, parse_index

from . import groundtruth, metrics
from .datasets import FILTER_CASES, Dataset, default_cache_dir, open_dataset

SCHEMA = "vecface-bench/1"
INDEX_ORDER = {"exact": 0, "ivfflat": 1, "hnsw": 2}
IN_PROCESS = {"faiss"}


@dataclass
class BenchConfig:
    backends: list[str] | None = None  # None: every registered backend that is available
    indexes: list[str] = field(default_factory=lambda: ["hnsw", "ivfflat", "exact"])
    dataset: str = "synthetic"
    n: int | None = None
    dim: int | None = None
    queries: int = 500
    exact_queries: int = 100
    k: int = 10
    concurrency: list[int] = field(default_factory=lambda: [1, 2, 4, 8])
    duration: float = 1.0
    warmup: int = 50
    filter_queries: int = 200
    batch_size: int = 5000
    baseline_rows: int = 2000
    seed: int = 0
    quick: bool = False
    out: str = "vecface-report"
    metric: str | None = None
    cache_dir: str | None = None
    collection: str = "vfbench"
    backend_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    sweep: dict[str, list[int]] | None = None  # kind -> values, overriding the defaults
    point_budget_s: float = 10.0  # a serial pass stops after this long (once min_queries are done)
    min_queries: int = 20
    stop_recall: float = 0.995  # an IVFFlat probes sweep stops once recall@k reaches this
    keep_answers: bool = False  # store every returned id/distance in the results (for tests)

    def resolved(self) -> "BenchConfig":
        if self.quick:
            self.queries = min(self.queries, 200)
            self.exact_queries = min(self.exact_queries, 50)
            self.duration = min(self.duration, 0.5)
            self.concurrency = [c for c in self.concurrency if c <= 2] or [1]
            self.filter_queries = min(self.filter_queries, 100)
            self.baseline_rows = min(self.baseline_rows, 300)
            self.warmup = min(self.warmup, 20)
            self.point_budget_s = min(self.point_budget_s, 3.0)
            self.min_queries = min(self.min_queries, 20)
        return self


# ---------------------------------------------------------------- progress

class Progress:
    """Rich progress bars for every phase (or nothing, for tests)."""

    def __init__(self, enabled: bool = True, console: Any = None):
        self.enabled = enabled
        self._p = None
        self._console = console
        if enabled:
            from rich.console import Console
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress as RP, SpinnerColumn,
                                       TextColumn, TimeElapsedColumn, TimeRemainingColumn)

            self._console = console or Console(stderr=True)
            self._p = RP(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                         TimeElapsedColumn(), TimeRemainingColumn(), console=self._console, transient=False)

    def __enter__(self):
        if self._p:
            self._p.start()
        return self

    def __exit__(self, *exc):
        if self._p:
            self._p.stop()

    @contextmanager
    def task(self, description: str, total: float | None) -> Iterator[Callable[[float], None]]:
        if not self._p:
            yield lambda n=1: None
            return
        plain = not self._console.is_terminal  # a log file: one line per phase instead of live bars
        if plain:
            self._console.print(f"> {description}")
        t0 = time.perf_counter()
        tid = self._p.add_task(description, total=total)
        try:
            yield lambda n=1: self._p.advance(tid, n)
        finally:
            if plain:
                self._console.print(f"  done in {time.perf_counter() - t0:.1f} s")
            if total is not None:
                self._p.update(tid, completed=total)
            else:
                self._p.update(tid, total=1, completed=1)

    def log(self, msg: str) -> None:
        if self._p:
            self._p.console.print(msg)


# ---------------------------------------------------------------- provenance

def _pkg_version(name: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:
        return None


def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        mem = None
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_bytes": mem, "os": platform.platform(),
            "python": platform.python_version(), "hostname_hash": hex(hash(platform.node()) & 0xFFFF)}


def software_versions() -> dict[str, Any]:
    v = {"vecface": vecface.__version__, "numpy": np.__version__, "python": platform.python_version()}
    try:
        import faiss

        v["faiss"] = faiss.__version__
    except ImportError:
        v["faiss"] = None
    for pkg in ("psycopg", "pgvector", "weaviate-client", "h5py", "matplotlib"):
        # "pgvector" alone names the server extension (provenance.servers); this is the Python adapter
        v[pkg + "-python" if pkg == "pgvector" else pkg] = _pkg_version(pkg)
    return v


# ---------------------------------------------------------------- measuring helpers

def _ids_dists(hits) -> tuple[list[int], list[float]]:
    return [int(h.id) for h in hits], [float(h.distance) for h in hits]


def serial_pass(store, queries: np.ndarray, k: int, flt=None, warmup: int = 0, tick=None,
                budget_s: float | None = None, min_queries: int = 1):
    """Warm up, then run the queries once each, in order, timing each call; stop early once
    ``budget_s`` seconds of queries have run and at least ``min_queries`` are done (slow points
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


def throughput(handles: list, queries: np.ndarray, k: int, duration: float, flt=None) -> dict[str, Any]:
    """C = len(handles) threads, each searching through its own handle for ``duration`` seconds."""
    c = len(handles)
    counts = [0] * c
    errors: list[BaseException] = []
    barrier = threading.Barrier(c + 1)
    end = [0.0]
    nq = len(queries)

    def work(j: int) -> None:
        h = handles[j]
        i = (j * nq) // c
        n = 0
        try:
            barrier.wait()
            stop = end[0]
            while time.perf_counter() < stop:
                h.search(queries[i % nq], k, flt)
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


def _drop_existing(backend: str, name: str, options: dict[str, Any]) -> None:
    try:
        s = open_store(backend, name, None, create=False, **options)
    except UnknownCollection:
        return
    s.drop()


# ---------------------------------------------------------------- the run

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
        n = cfg.n
        if n is None and cfg.dataset.startswith("synthetic"):
            n = 10_000 if cfg.quick else DEFAULT_N
        return open_dataset(cfg.dataset, n=n, dim=cfg.dim, n_queries=cfg.queries, seed=cfg.seed,
                            metric=cfg.metric, cache_dir=self.cache_dir)

    @property
    def cache_dir(self) -> Path:
        return Path(self.cfg.cache_dir) if self.cfg.cache_dir else default_cache_dir()

    def _backends(self) -> tuple[list[str], list[dict[str, Any]]]:
        wanted = self.cfg.backends or list(BACKENDS)
        ok, skipped = [], []
        for name in wanted:
            try:
                cls = backend_class(name)
                opts = {k: v for k, v in self.cfg.backend_options.get(name, {}).items() if v is not None}
                detail = cls.probe(**opts)
                ok.append(name)
                self.p.log(f"[green]{name}[/]: {detail}")
            except VecfaceError as e:
                skipped.append({"backend": name, "index": None, "reason": f"backend unavailable: {e}"})
                self.p.log(f"[yellow]skipping {name}[/]: {e}")
            except Exception as e:  # a broken backend must not end the benchmark
                skipped.append({"backend": name, "index": None, "reason": f"backend unavailable: {type(e).__name__}: {e}"})
                self.p.log(f"[yellow]skipping {name}[/]: {type(e).__name__}: {e}")
        return ok, skipped

    def run(self) -> dict[str, Any]:
        cfg = self.cfg
        started = time.perf_counter()
        ds = self._dataset()
        queries = np.ascontiguousarray(ds.queries[: cfg.queries], dtype=np.float32)
        with self.p.task(f"ground truth ({ds.n:,} x {ds.dim}, {len(queries)} queries)", ds.n) as tick:
            gt = groundtruth.load_or_compute(ds, queries, cfg.k, self.cache_dir, progress=tick)
        backends, skipped = self._backends()
        specs = sorted((parse_index(s) for s in cfg.indexes), key=lambda s: INDEX_ORDER[s.kind])
        res: dict[str, Any] = {
            "schema": SCHEMA,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join(["vecface", *sys.argv[1:]]) if sys.argv and "vecface" in sys.argv[0] else None,
            "params": {**{k: v for k, v in asdict(cfg).items() if k != "backend_options"},
                       "backends_run": backends, "indexes": [str(s) for s in specs]},
            "dataset": {**ds.describe(), "name": ds.name, "fingerprint": ds.fingerprint(),
                        "ground_truth": gt.source, "filter_share": gt.filter_share},
            "provenance": {"versions": software_versions(), "machine": machine_info(), "servers": {}},
            "loads": [], "runs": [], "baselines": [], "skipped": skipped,
        }
        self.results = res
        for backend in backends:
            try:
                self._run_backend(backend, ds, queries, gt, specs, res)
            except Exception as e:
                res["skipped"].append({"backend": backend, "index": None,
                                       "reason": f"failed: {type(e).__name__}: {e}"})
                self.p.log(f"[red]{backend} failed[/]: {type(e).__name__}: {e}")
        res["wall_s"] = time.perf_counter() - started
        return res

    def _run_backend(self, backend: str, ds: Dataset, queries, gt, specs, res) -> None:
        cfg = self.cfg
        opts = {k: v for k, v in cfg.backend_options.get(backend, {}).items() if v is not None}
        cls = backend_class(backend)
        name = f"{cfg.collection}_{backend}"
        _drop_existing(backend, name, opts)
        store = open_store(backend, name, ds.dim, ds.metric, **opts)
        try:
            if hasattr(store, "server_versions"):
                try:
                    res["provenance"]["servers"].update(store.server_versions())
                except Exception as e:  # provenance is best effort, never fatal
                    res["provenance"]["servers"][backend] = f"unknown ({e})"
            load = self._load(store, ds, backend)
            res["loads"].append(load)
            for spec in specs:
                if spec.kind not in cls.supported_indexes:
                    res["skipped"].append({"backend": backend, "index": spec.kind,
                                           "reason": f"{backend} has no {spec.kind} index (supports "
                                                     f"{', '.join(cls.supported_indexes)})"})
                    continue
                try:
                    res["runs"].append(self._run_index(backend, store, name, opts, spec, queries, gt, load))
                    if self.checkpoint:
                        self.checkpoint(res)
                except Exception as e:
                    res["skipped"].append({"backend": backend, "index": spec.kind,
                                           "reason": f"failed: {type(e).__name__}: {e}"})
                    self.p.log(f"[red]{backend}/{spec.kind} failed[/]: {type(e).__name__}: {e}")
            res["baselines"].append(self._baseline(backend, store, ds, load, opts))
        finally:
            try:
                store.drop()
            except Exception:
                store.close()

    # -- load
    def _load(self, store, ds: Dataset, backend: str) -> dict[str, Any]:
        cfg = self.cfg
        elapsed = 0.0
        rows = 0
        with self.p.task(f"{backend}: bulk load (upsert_arrays, batch {cfg.batch_size})", ds.n) as tick:
            for start, x, tags in ds.chunks(max(cfg.batch_size, 10_000)):
                ids = ds.ids(start, len(x))
                metas = [{"tag": t} for t in tags] if tags is not None else None
                t = time.perf_counter()
                store.upsert_arrays(ids, x, metas, batch_size=cfg.batch_size)
                elapsed += time.perf_counter() - t
                rows += len(x)
                tick(len(x))
        out = {"backend": backend, "rows": rows, "seconds": elapsed,
               "vectors_per_s": rows / elapsed if elapsed > 0 else None, "batch_size": cfg.batch_size}
        if hasattr(store, "table_size_bytes"):
            out["table_size_bytes"] = store.table_size_bytes()
        return out

    # -- one index
    def _values(self, spec, rows: int) -> tuple[str | None, list[int]]:
        if self.cfg.sweep and spec.kind in self.cfg.sweep:
            vals = list(self.cfg.sweep[spec.kind])
        else:
            lists = min(spec.resolve_lists(rows), rows) if isinstance(spec, IVFFlat) else None
            vals = metrics.sweep_values(spec.kind, lists, self.cfg.quick)
        param = {"hnsw": "ef_search", "ivfflat": "probes"}.get(spec.kind)
        return param, vals

    def _set(self, store, param: str | None, value: int) -> None:
        if param == "ef_search":
            store.set_query_params(ef_search=value)
        elif param == "probes":
            store.set_query_params(probes=value)

    def _run_index(self, backend, store, name, opts, spec, queries, gt, load) -> dict[str, Any]:
        cfg = self.cfg
        label = f"{backend}/{spec.kind}"
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
            "backend": backend, "index": spec.kind, "index_spec": str(spec), "rows": rows,
            "params": {k: v for k, v in vars(spec).items()},
            "build_s": build_s, "first_query_s": first_q, "time_to_first_query_s": build_s + first_q,
            "cold_open_first_query_s": cold_s, "index_size_bytes": size,
            "in_process": backend in IN_PROCESS, "sweep": [], "filtered": [], "notes": [],
        }
        if isinstance(spec, IVFFlat):
            run["params"]["lists"] = min(spec.resolve_lists(rows), rows)
        if backend == "weaviate" and not isinstance(spec, Exact):
            run["notes"].append("Weaviate cannot change a collection's index in place: its build is a copy of "
                                "every object into a new collection with the new index (HNSW built as it imports).")
        # client handles, one per concurrent client (own connection); FAISS handles each load the
        # index into memory, so they are shared when that would not fit comfortably
        cmax = max(cfg.concurrency) if cfg.concurrency else 1
        handles = [cold]
        share = False
        if backend in IN_PROCESS and size and size * cmax > 0.25 * (machine_info()["memory_bytes"] or 1 << 34):
            share = True
            run["notes"].append(f"FAISS clients share one handle (index {size / 2**20:.0f} MiB x {cmax} "
                                "copies would not fit comfortably in memory).")
        try:
            for _ in range(cmax - 1):
                handles.append(cold if share else open_store(backend, name, None, create=False, **opts))
            param, values = self._values(spec, rows)
            qs = queries if not isinstance(spec, Exact) else queries[: cfg.exact_queries]
            run["queries"] = len(qs)
            truth_ids, truth_d = gt.ids[: len(qs)], gt.dist[: len(qs)]
            with self.p.task(f"{label}: sweep {param or 'exact'} {values} (serial + {len(cfg.concurrency)} "
                             f"concurrency levels x {cfg.duration:g}s)", len(values) * len(qs)) as tick:
                for v in values:
                    self._set(store, param, v)
                    lat, ids, dists = serial_pass(store, qs, cfg.k, warmup=min(cfg.warmup, len(qs)), tick=tick,
                                                  budget_s=cfg.point_budget_s, min_queries=cfg.min_queries)
                    nq = len(ids)
                    point = {"param": param, "value": v if param else None,
                             "recall": metrics.recall_by_id(ids, truth_ids[:nq], cfg.k),
                             "recall_tolerant": metrics.recall_tolerant(dists, truth_d[:nq], cfg.k),
                             "queries": nq, "latency_ms": metrics.percentiles_ms(lat),
                             "serial_qps": len(qs) / sum(lat) if sum(lat) > 0 else None,
                             "throughput": []}
                    if cfg.keep_answers:
                        point["answers"] = {"ids": ids, "distances": dists}
                    for c in cfg.concurrency:
                        for h in {id(h): h for h in handles[:c]}.values():
                            self._set(h, param, v)
                        tp = throughput(handles[:c], qs, cfg.k, cfg.duration)
                        if backend in IN_PROCESS:
                            tp["client_bound"] = None
                        else:
                            tp["client_bound"] = bool(tp["client_cpu_cores"] >= 0.8 * self.cores)
                        point["throughput"].append(tp)
                    point["best_qps"] = max((t["qps"] for t in point["throughput"]), default=point["serial_qps"])
                    run["sweep"].append(point)
                    if param == "probes" and point["recall"] >= cfg.stop_recall and v != values[-1]:
                        run["notes"].append(f"The probes sweep stopped at {v}: recall@k reached {point['recall']:.3f} "
                                            f"(>= {cfg.stop_recall}); more probes only cost time.")
                        tick(len(qs) * (len(values) - values.index(v) - 1))
                        break
            if any(t.get("client_bound") for s in run["sweep"] for t in s["throughput"]):
                run["notes"].append(f"The benchmark client used >= 80% of the {self.cores} cores at some concurrency "
                                    "levels: there the client, not the backend, limits throughput (and client and "
                                    "server share this machine's cores).")
            self._filtered(run, store, spec, param, values, queries, gt, label)
        finally:
            for h in {id(h): h for h in handles}.values():
                h.close()
        return run

    def _filtered(self, run, store, spec, param, values, queries, gt, label) -> None:
        cfg = self.cfg
        if not gt.filtered:
            return
        op = metrics.summary_point(run["sweep"])
        value = op["value"] if op else None
        if param:
            self._set(store, param, value)
        qs = queries[: min(cfg.filter_queries, cfg.exact_queries if isinstance(spec, Exact) else len(queries))]
        with self.p.task(f"{label}: filtered search (50%/10%/1% of rows, {param or 'exact'}={value})",
                         len(qs) * len(gt.filtered)) as tick:
            for case, (tag, _) in FILTER_CASES.items():
                if case not in gt.filtered:
                    continue
                fi, fd = gt.filtered[case]
                flt = {"tag": tag}
                lat, ids, dists = serial_pass(store, qs, cfg.k, flt, warmup=min(3, len(qs)), tick=tick,
                                              budget_s=cfg.point_budget_s / 2, min_queries=min(20, len(qs)))
                nq = len(ids)
                run["filtered"].append({
                    "case": case, "filter": flt, "share": gt.filter_share.get(case), "param": param, "value": value,
                    "queries": nq, "recall": metrics.recall_by_id(ids, fi[:nq], cfg.k),
                    "recall_tolerant": metrics.recall_tolerant(dists, fd[:nq], cfg.k),
                    "latency_ms": metrics.percentiles_ms(lat)})
                if cfg.keep_answers:
                    run["filtered"][-1]["answers"] = {"ids": ids, "distances": dists}

    # -- baselines
    def _baseline(self, backend: str, store, ds: Dataset, load: dict[str, Any], opts) -> dict[str, Any]:
        rows = min(self.cfg.baseline_rows, ds.n)
        bulk = load.get("vectors_per_s")
        base = {"backend": backend, "rows": rows, "bulk_vectors_per_s": bulk}
        if backend == "faiss":
            return {**base, "method": None, "skipped": "FAISS is in-process: no per-row network path to compare"}
        x, tags = next(ds.chunks(rows))[1:]
        tags = tags or [None] * len(x)
        try:
            with self.p.task(f"{backend}: baseline, one row at a time ({rows} rows)", rows) as tick:
                if backend == "pgvector":
                    method, secs = "row-by-row INSERT, one transaction", self._pg_rowbyrow(store, x, tags, tick)
                elif backend == "weaviate":
                    method, secs = "collection.data.insert per object", self._weaviate_one(store, x, tags, opts, tick)
                else:
                    return {**base, "method": None, "skipped": f"no one-at-a-time baseline for {backend}"}
        except Exception as e:
            return {**base, "method": None, "skipped": f"{type(e).__name__}: {e}"}
        vps = rows / secs if secs > 0 else None
        return {**base, "method": method, "seconds": secs, "vectors_per_s": vps,
                "bulk_speedup": (bulk / vps) if bulk and vps else None}

    def _pg_rowbyrow(self, store, x, tags, tick) -> float:
        from psycopg.types.json import Jsonb

        c = store._c()
        table = f"vecface_{store.name}_rowbyrow"
        c.execute(f"DROP TABLE IF EXISTS {table}")
        c.execute(f"CREATE TABLE {table} (id text PRIMARY KEY, embedding vector({store.dim}) NOT NULL, "
                  "tag text, path text, metadata jsonb NOT NULL DEFAULT '{}')")
        try:
            t = time.perf_counter()
            with c.transaction():
                for i, (v, tag) in enumerate(zip(x, tags)):
                    c.execute(f"INSERT INTO {table} (id, embedding, tag, metadata) VALUES (%s, %s, %s, %s)",
                              (f"row{i}", v, tag, Jsonb({"tag": tag} if tag else {})))
                    tick(1)
            return time.perf_counter() - t
        finally:
            c.execute(f"DROP TABLE IF EXISTS {table}")

    def _weaviate_one(self, store, x, tags, opts, tick) -> float:
        from vecface.backends import weaviate_store as ws

        scratch_name = f"{store.name}_one"
        _drop_existing("weaviate", scratch_name, opts)
        scratch = open_store("weaviate", scratch_name, store.dim, store.metric, **opts)
        try:
            coll = scratch._coll()
            t = time.perf_counter()
            for i, (v, tag) in enumerate(zip(x, tags)):
                rid = f"row{i}"
                coll.data.insert(properties=ws._properties(rid, {"tag": tag} if tag else {}),
                                 uuid=ws.object_uuid(rid), vector={ws.VECTOR: v.tolist()})
                tick(1)
            return time.perf_counter() - t
        finally:
            scratch.drop()


DEFAULT_N = 50_000


def run_benchmark(cfg: BenchConfig, progress: Progress | None = None,
                  checkpoint: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    return Runner(cfg, progress, checkpoint).run()
