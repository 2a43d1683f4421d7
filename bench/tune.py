"""How hard the synthetic data is: FAISS HNSW (M 16, efConstruction 64) recall@10 by ef_search, straight
from FAISS, to tune :class:`vecface.bench.datasets.Synthetic`'s parameters::

    .venv/bin/python -m vecface.bench.tune --n 100000 --dim 512 [--spec synthetic:spread=1.0]
"""

from __future__ import annotations

import argparse
import json
import time

import faiss
import numpy as np

from .datasets import open_dataset


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="measure FAISS HNSW recall@10 on the synthetic data")
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--spec", default="synthetic")
    a = ap.parse_args(argv)
    ds = open_dataset(a.spec, n=a.n, dim=a.dim, n_queries=1000)
    x = np.concatenate([c for _, c, _ in ds.chunks(50_000)])
    q = ds.queries
    flat = faiss.IndexFlatIP(ds.dim)
    flat.add(x)
    _, gt = flat.search(q, 10)
    idx = faiss.IndexHNSWFlat(ds.dim, 16, faiss.METRIC_INNER_PRODUCT)
    idx.hnsw.efConstruction = 64
    t = time.perf_counter()
    idx.add(x)
    build = time.perf_counter() - t
    out = []
    for ef in (10, 20, 40, 80, 160):
        idx.hnsw.efSearch = ef
        _, got = idx.search(q, 10)
        rec = np.mean([len(set(a_) & set(b_)) / 10 for a_, b_ in zip(got, gt)])
        out.append(f"ef {ef}: {rec:.3f}")
    print(json.dumps(ds.describe()))
    print(f"build {build:.1f}s; " + ", ".join(out))


if __name__ == "__main__":  # pragma: no cover
    main()
