"""Weaviate load rate: the raw weaviate-client's ways of loading side by side with vecface's upsert.

Standalone: ``vecface bench`` puts only the best raw way measured here (``insert_many``, 1,000
objects per request, two at once: ``weaviate_measure.RawImport``, the same code as this script's
``insert_many`` variants) beside vecface's load; this script compares all of them. Every variant
loads the same objects (vecface's own uuids, properties and vectors, made inside the timed load, as
vecface makes them inside its upsert) into a fresh collection with the same index (``--index``,
built before the load), against the local server vecface starts in a temporary VECFACE_HOME, or
VECFACE_WEAVIATE_URL.
Variants: vecface ``upsert_arrays`` with 1, 2 or 3 batch requests in flight (its default marked);
the client's batch contexts ``fixed_size(size, concurrent_requests)``, ``dynamic()``,
``rate_limit()`` (made for vectorizer quotas; here set high enough not to limit) and server-side
batching ``stream(concurrency)``; ``insert_many`` in requests of 500 or 1000 objects, one or two at
once (threads). They run interleaved, ``--rounds`` times, each round starting with the next
variant; the report gives each variant's median with the range of its rounds, and vecface's ratio
to the best raw variant round by round (on a busy machine read the medians). Example:

    .venv/bin/python bench/weaviate_import.py --n 20000 --dim 512 --rounds 2
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from typing import Any, Callable

import numpy as np


def _variants(args) -> dict[str, Callable[[Any, list], None]]:
    """name -> load(collection, objects) with objects as (uuid, properties, vector)."""
    from concurrent.futures import ThreadPoolExecutor

    from vecface.backends import weaviate_measure as measure
    from vecface.backends.weaviate_schema import VECTOR

    def context(mode: str, **options):
        """A load through the client's batch context ``coll.batch.<mode>(**options)``."""
        def load(coll, objects):
            with getattr(coll.batch, mode)(**options) as b:
                for u, p, v in objects:
                    b.add_object(properties=p, uuid=u, vector={VECTOR: v})
            assert not coll.batch.failed_objects
        return load

    def insert_many(size: int, conc: int = 1):
        """The raw bulk load the bench's load table shows (weaviate_measure.insert_many), ``conc``
        requests at once."""
        def load(coll, objects):
            if conc == 1:
                return measure.insert_many(coll, objects, size)
            with ThreadPoolExecutor(conc) as pool:
                measure.insert_many(coll, objects, size, pool)
        return load

    out: dict[str, Callable] = {}
    for size in args.sizes:
        for conc in args.concurrency:
            out[f"raw fixed_size({size}, {conc})"] = context("fixed_size", batch_size=size, concurrent_requests=conc)
    out["raw dynamic()"] = context("dynamic")
    # rate_limit is made for vectorizer quotas; set high enough here not to limit
    out["raw rate_limit(1M/min)"] = context("rate_limit", requests_per_minute=1_000_000)
    for conc in (1, 2):
        out[f"raw stream({conc})"] = context("stream", concurrency=conc)
    for size in (500, 1000):
        for conc in (1, 2):
            out[f"raw insert_many({size}) x{conc}"] = insert_many(size, conc)
    return out


def _cpu(pid: int | None) -> float:
    """CPU seconds (user + system) process ``pid`` has used so far; 0 without one. On a machine whose
    other jobs change how much CPU the server gets, CPU per object is the steadier figure: the
    server's indexing is CPU bound."""
    from vecface.backends._server import proc_stat

    if pid is None:
        return 0.0
    fields = proc_stat(pid)
    if fields is None:
        raise ProcessLookupError(f"the server (pid {pid}) is gone")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rounds(args, variants, fresh, server_pid, rates, cpu) -> None:
    """Every variant once per round, interleaved; each load's objects/s and CPU into rates, cpu."""
    names = list(variants)
    for r in range(args.rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:  # each round starts elsewhere
            load = variants[name]
            s = fresh("bench_import")
            try:
                c0 = _cpu(server_pid) + time.process_time()
                t = time.perf_counter()
                load(s)
                secs = time.perf_counter() - t
                cpu_s = _cpu(server_pid) + time.process_time() - c0
                assert s.count() == args.n, (name, s.count())
            finally:
                s.drop()
            rate = args.n / secs
            rates.setdefault(name, []).append(rate)
            cpu.setdefault(name, []).append(cpu_s * 1000 / args.n)
            print(f"round {r + 1}  {name:34s} {rate:9,.0f} objects/s  {cpu[name][-1]:.2f} CPU s per 1,000", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20000, help="objects per variant")
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--index", default="hnsw", help="exact or hnsw[:m=..,ef_construction=..]")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 250, 1000])
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--only", nargs="*", help="run only variants whose name contains one of these")
    args = ap.parse_args()
    os.environ.setdefault("VECFACE_HOME", tempfile.mkdtemp(prefix="vecface-wv-bench-"))

    import vecface
    from vecface.backends import weaviate_server, weaviate_write
    from vecface.backends import weaviate_schema

    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.n, args.dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    ids = [f"v{i}" for i in range(args.n)]
    metas = [{"tag": f"t{i % 10}", "path": f"/img/{i}.jpg"} for i in range(args.n)]

    def objects() -> list:
        """The objects a raw client sends, made inside each raw load's timing, as vecface makes its own."""
        return list(weaviate_schema.objects(ids, x, metas))

    def fresh(name: str):
        try:
            vecface.open_store("weaviate", name, create=False).drop()
        except vecface.UnknownCollection:
            pass
        s = vecface.open_store("weaviate", name, args.dim, "cosine")
        s.build_index(args.index)  # empty: switches without a copy
        return s

    def vecface_load(in_flight: int):
        def load(s):
            weaviate_write.IN_FLIGHT = in_flight
            s.upsert_arrays(ids, x, metas)
        return load

    default = weaviate_write.IN_FLIGHT
    variants = {f"vecface upsert_arrays ({default} in flight)": vecface_load(default),
                **{f"vecface upsert_arrays ({n} in flight)": vecface_load(n) for n in (1, 2, 3) if n != default},
                **{name: (lambda f: lambda s: f(s._coll(), objects()))(f) for name, f in _variants(args).items()}}
    if args.only:
        variants = {k: v for k, v in variants.items() if any(o in k for o in args.only)}
    rates: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}  # CPU seconds per 1,000 objects, server + client
    # held open for the whole run, so the local server stays up (it stops when its last store closes)
    probe = fresh("bench_import_probe")
    try:
        info = weaviate_server.running(probe._opts.data_dir) if probe._opts.local else None
        server_pid = info.pid if info is not None else None
        print(f"server: {probe.server_versions()}, weaviate-client {__import__('weaviate').__version__}, "
              f"{platform.machine()}, {os.cpu_count()} cores; index {args.index}, {args.n} x {args.dim}, cosine")
        _rounds(args, variants, fresh, server_pid, rates, cpu)
    finally:
        probe.drop()
    med = {k: float(np.median(v)) for k, v in rates.items()}
    top = max((k for k in med if k.startswith("raw")), key=med.get, default=None)
    print("\nmedian [min - max] of rounds, objects/s; CPU seconds (server + client) per 1,000 objects:")
    for name, rate in sorted(med.items(), key=lambda kv: -kv[1]):
        print(f"  {name:34s} {rate:9,.0f} [{min(rates[name]):,.0f} - {max(rates[name]):,.0f}]"
              + (f"   {rate / med[top]:.2f}x the best raw median" if top else "")
              + f"   CPU {np.median(cpu[name]):.2f} s [{min(cpu[name]):.2f} - {max(cpu[name]):.2f}]")
    ours = f"vecface upsert_arrays ({default} in flight)"
    if top and ours in rates and len(rates[ours]) == len(rates[top]):
        ratios = [a / b for a, b in zip(rates[ours], rates[top])]  # each round's own ratio
        print(f"\n{ours} / {top}, round by round: median {np.median(ratios):.2f}x "
              f"[{min(ratios):.2f} - {max(ratios):.2f}]")


if __name__ == "__main__":
    main()
