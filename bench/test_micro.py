"""Micro-benchmarks of the hot paths, per backend, with pytest-benchmark.

Run them (they are not part of the test suite, whose testpaths is tests/)::

    .venv/bin/pytest bench/test_micro.py --benchmark-only

Add ``--benchmark-json out.json`` to keep the figures, ``-k pgvector`` for one backend. A backend
that is not available here is skipped with the reason. The servers are the embedded ones, started
in a temporary VECFACE_HOME for this session, exactly as in the test suite.

- ``test_upsert_batch``: one ``upsert_arrays`` call of 1,000 new 512-d vectors (with a tag each).
- ``test_search_hnsw``: one ``search`` call (k=10, ef_search 40) on an HNSW index over 5,000 rows.
- ``test_search_filtered``: the same with a ``{"tag": ...}`` filter keeping 10% of the rows.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import vecface
from vecface.bench.datasets import Synthetic
from vecface.registry import BACKENDS as REGISTERED, backend_class

# the session fixtures of the test suite: a temporary VECFACE_HOME and the servers started in it
from tests.conftest import faiss_options, pgvector_options, vecface_home, weaviate_options  # noqa: F401

BACKENDS = list(REGISTERED)
DIM = 512
_ids = itertools.count()


@pytest.fixture(scope="module", params=BACKENDS)
def micro_backend(request):
    name = request.param
    try:
        opts = request.getfixturevalue(f"{name}_options")
        backend_class(name).probe(**opts)
    except Exception as e:  # unavailable here: say why
        pytest.skip(f"{name} unavailable: {e}")
    return name, opts


@pytest.fixture(scope="module")
def data():
    ds = Synthetic(n=6_000, dim=DIM, n_queries=100, seed=7)
    x = np.concatenate([c for _, c, _ in ds.chunks(6_000)])
    tags = [t for _, _, ts in ds.chunks(6_000) for t in ts]
    return x, tags, ds.queries


@pytest.fixture(scope="module")
def search_store(micro_backend, data):
    name, opts = micro_backend
    x, tags, _ = data
    store = vecface.open_store(name, f"micro_search_{name}", DIM, "cosine", **opts)
    store.upsert_arrays([str(i) for i in range(5_000)], x[:5_000], [{"tag": t} for t in tags[:5_000]],
                        batch_size=2_500)
    store.build_index("hnsw")
    store.set_query_params(ef_search=40)
    yield store
    store.drop()


def test_upsert_batch(benchmark, micro_backend, data):
    name, opts = micro_backend
    x, tags, _ = data
    store = vecface.open_store(name, f"micro_upsert_{name}", DIM, "cosine", **opts)
    batch, metas = x[:1_000], [{"tag": t} for t in tags[:1_000]]

    def upsert():
        base = next(_ids) * 1_000
        store.upsert_arrays([f"u{base + i}" for i in range(1_000)], batch, metas, batch_size=1_000)

    try:
        benchmark.extra_info.update(backend=name, rows=1_000, dim=DIM)
        benchmark.pedantic(upsert, rounds=8, iterations=1, warmup_rounds=1)
    finally:
        store.drop()


def test_search_hnsw(benchmark, micro_backend, search_store, data):
    q = data[2]
    it = itertools.cycle(q)
    benchmark.extra_info.update(backend=micro_backend[0], rows=5_000, k=10, ef_search=40)
    hits = benchmark(lambda: search_store.search(next(it), 10))
    assert len(hits) == 10


def test_search_filtered(benchmark, micro_backend, search_store, data):
    q = data[2]
    it = itertools.cycle(q)
    benchmark.extra_info.update(backend=micro_backend[0], rows=5_000, k=10, filter="tag=t10 (10%)")
    hits = benchmark(lambda: search_store.search(next(it), 10, {"tag": "t10"}))
    assert all(h.metadata.get("tag") == "t10" for h in hits)
