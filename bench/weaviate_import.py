"""Weaviate load rate: the raw weaviate-client's batch settings side by side with vecface's upsert.

Standalone (not part of the bench harness). Every variant loads the same objects (vecface's own
properties and vectors) into a fresh collection with the same HNSW index, built before the load,
against the local server vecface starts in a temporary VECFACE_HOME, or VECFACE_WEAVIATE_URL.
Variants run interleaved, ``--rounds`` times, each round starting with the next variant; the best
round of each is reported with its median (on a busy machine the median is the figure to read). Example:

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
    from weaviate.classes.data import DataObject

    from vecface.backends.weaviate_schema import VECTOR

    def fixed(size: int, conc: int):
        def load(coll, objects):
            with coll.batch.fixed_size(batch_size=size, concurrent_requests=conc) as b:
                for u, p, v in objects:
                    b.add_object(properties=p, uuid=u, vector={VECTOR: v})
            assert not coll.batch.failed_objects
        return load

    def dynamic(coll, objects):
        with coll.batch.dynamic() as b:
            for u, p, v in objects:
                b.add_object(properties=p, uuid=u, vector={VECTOR: v})
        assert not coll.batch.failed_objects

    def stream(conc: int):
        def load(coll, objects):
            with coll.batch.stream(concurrency=conc) as b:
                for u, p, v in objects:
                    b.add_object(properties=p, uuid=u, vector={VECTOR: v})
            assert not coll.batch.failed_objects
        return load

    def insert_many(size: int):
        def load(coll, objects):
            for s in range(0, len(objects), size):
                res = coll.data.insert_many([DataObject(properties=p, uuid=u, vector={VECTOR: v})
                                             for u, p, v in objects[s:s + size]])
                assert not res.errors, list(res.errors.values())[:1]
        return load

    out: dict[str, Callable] = {}
    for size in args.sizes:
        for conc in args.concurrency:
            out[f"raw fixed_size({size}, {conc})"] = fixed(size, conc)
    out["raw dynamic()"] = dynamic
    for conc in (1, 2):
        out[f"raw stream({conc})"] = stream(conc)
    out["raw insert_many(1000)"] = insert_many(1000)
    return out


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
    from vecface.backends.weaviate_schema import object_properties, object_uuid

    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.n, args.dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    ids = [f"v{i}" for i in range(args.n)]
    metas = [{"tag": f"t{i % 10}", "path": f"/img/{i}.jpg"} for i in range(args.n)]
    objects = [(object_uuid(i), object_properties(i, m), v) for i, m, v in zip(ids, metas, x)]

    def fresh(name: str):
        try:
            vecface.open_store("weaviate", name, create=False).drop()
        except vecface.UnknownCollection:
            pass
        s = vecface.open_store("weaviate", name, args.dim, "cosine")
        s.build_index(args.index)  # empty: switches without a copy
        return s

    def vecface_load(s):
        s.upsert_arrays(ids, x, metas)

    variants = {"vecface upsert_arrays": None, **_variants(args)}
    if args.only:
        variants = {k: v for k, v in variants.items() if any(o in k for o in args.only)}
    rates: dict[str, list[float]] = {}
    with fresh("bench_import_probe") as probe:
        print(f"server: {probe.server_versions()}, weaviate-client {__import__('weaviate').__version__}, "
              f"{platform.machine()}, {os.cpu_count()} cores; index {args.index}, {args.n} x {args.dim}, cosine")
        probe.drop()
    names = list(variants)
    for r in range(args.rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:  # each round starts elsewhere
            load = variants[name]
            s = fresh("bench_import")
            try:
                t = time.perf_counter()
                if load is None:
                    vecface_load(s)
                else:
                    load(s._coll(), objects)
                secs = time.perf_counter() - t
                assert s.count() == args.n, (name, s.count())
            finally:
                s.drop()
            rate = args.n / secs
            rates.setdefault(name, []).append(rate)
            print(f"round {r + 1}  {name:28s} {rate:9,.0f} objects/s", flush=True)
    med = {k: float(np.median(v)) for k, v in rates.items()}
    top = max((v for k, v in med.items() if k.startswith("raw")), default=None)
    print("\nmedian (best) of rounds, objects/s:")
    for name, rate in sorted(med.items(), key=lambda kv: -kv[1]):
        print(f"  {name:28s} {rate:9,.0f} ({max(rates[name]):,.0f})"
              + (f"   {rate / top:.2f}x the best raw median" if top else ""))

if __name__ == "__main__":
    main()
