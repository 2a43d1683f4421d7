"""Weaviate import rate: vecface's batched upsert vs inserting the same objects one at a time.

Standalone (not part of the bench harness). Runs against the local server vecface starts in a
temporary VECFACE_HOME, or VECFACE_WEAVIATE_URL. Example:

    .venv/bin/python bench/weaviate_import.py --n 20000 --single 500 --dim 512
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20000, help="vectors for the batched import")
    ap.add_argument("--single", type=int, default=500, help="vectors inserted one at a time")
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--index", default="hnsw", help="exact or hnsw[:m=..,ef_construction=..]")
    ap.add_argument("--batch-size", type=int, default=1000, help="records per upsert call")
    args = ap.parse_args()
    os.environ.setdefault("VECFACE_HOME", tempfile.mkdtemp(prefix="vecface-wv-bench-"))

    import vecface
    from vecface.backends.weaviate_store import VECTOR, _properties, object_uuid

    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.n + args.single, args.dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    ids = [f"v{i}" for i in range(len(x))]
    metas = [{"tag": f"t{i % 10}", "path": f"/img/{i}.jpg"} for i in range(len(x))]

    with vecface.open_store("weaviate", "bench_import", args.dim, "cosine") as s:
        print(f"server: {s.server_versions()}, client weaviate-client {__import__('weaviate').__version__}, "
              f"{platform.machine()}, {os.cpu_count()} cores; index {args.index}, {args.dim}-d, cosine")
        s.build_index(args.index)  # before the load: an empty collection switches without a copy
        t0 = time.perf_counter()
        s.upsert_arrays(ids[:args.n], x[:args.n], metas[:args.n], batch_size=args.batch_size)
        t_batch = time.perf_counter() - t0
        assert s.count() == args.n

        coll = s._coll()
        t0 = time.perf_counter()
        for i in range(args.n, args.n + args.single):
            coll.data.insert(properties=_properties(ids[i], metas[i]), uuid=object_uuid(ids[i]),
                             vector={VECTOR: x[i].tolist()})
        t_single = time.perf_counter() - t0
        assert s.count() == args.n + args.single
        s.drop()

    print(f"batched upsert (client fixed-size batching): {args.n} vectors in {t_batch:.1f} s "
          f"= {args.n / t_batch:,.0f} vectors/s")
    print(f"one at a time (collection.data.insert):      {args.single} vectors in {t_single:.1f} s "
          f"= {args.single / t_single:,.0f} vectors/s")
    print(f"batching is {args.n / t_batch / (args.single / t_single):.1f}x faster")


if __name__ == "__main__":
    main()
