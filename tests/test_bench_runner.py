"""The runner's bulk-load phase and its raw baselines around it, on a real FAISS store.

Nothing here asserts a timing: benchmarks measure, tests check behaviour.
"""

from __future__ import annotations

from contextlib import contextmanager

from vecface.bench.config import BenchConfig
from vecface.bench.datasets import Synthetic
from vecface.bench.runner import Runner
from vecface.registry import open_store


def _store(faiss_options, name):
    return open_store("faiss", name, 16, "cosine", **faiss_options)


def test_no_raw_load_after_vecface_when_the_one_before_was_skipped(faiss_options, vecface_home):
    ds = Synthetic(n=600, dim=16, n_queries=5)
    runner = Runner(BenchConfig(backends=["faiss"], batch_size=200))
    store = _store(faiss_options, "tbrun_skip")
    calls = []

    def failing(batch_size):
        calls.append(batch_size)
        raise RuntimeError("raw loader broke")

    store.raw_loader = failing
    try:
        load = runner._load(store, ds, "faiss")
    finally:
        store.drop()
    assert calls == [200]  # the run before failed: no run after vecface's load
    assert load["rows"] == 600 and load["vectors_per_s"] > 0
    assert "raw loader broke" in load["raw"]["skipped"] and "bulk_vs_raw" not in load["raw"]


def test_raw_load_runs_before_and_after_vecface(faiss_options, vecface_home):
    ds = Synthetic(n=600, dim=16, n_queries=5)
    runner = Runner(BenchConfig(backends=["faiss"], batch_size=200))
    store = _store(faiss_options, "tbrun_both")
    order = []
    real_upsert = store.upsert_arrays

    @contextmanager
    def loader(batch_size):
        rows = []

        def load(ids, x, metas):
            rows.extend(ids)
        load.method = "counting"
        order.append("raw")
        yield load
        order.append(len(rows))

    def upsert(*a, **kw):
        order.append("vecface")
        return real_upsert(*a, **kw)

    store.raw_loader, store.upsert_arrays = loader, upsert
    try:
        load = runner._load(store, ds, "faiss")
        assert store.count() == 600
    finally:
        store.drop()
    assert order == ["raw", 600, "vecface", "raw", 600]
    assert len(load["raw"]["runs_vectors_per_s"]) == 2 and load["raw"]["method"] == "counting"
