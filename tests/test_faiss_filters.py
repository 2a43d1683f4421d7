"""FAISS filtered search from the in-memory columns: every filter field against the reference
semantics (``matches_filter``), both strategies on every index, recall on selective filters, k
bounded by the rows, the raw baseline, and the columns as the journal gives them back."""

from __future__ import annotations

import numpy as np
import pytest

import vecface
from vecface import HNSW, Exact, IVFFlat, Record
from vecface.errors import InvalidArgument
from vecface.filters import matches_filter, normalise_filter

from .conftest import clustered

DIM = 16
INDEXES = [Exact(), HNSW(m=8, ef_construction=40), IVFFlat(lists=4)]


def _odd_metadata(n: int, seed: int = 0) -> list[dict]:
    """Metadata with every filter field present, absent, or unusable (wrong type, bad date)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        m: dict = {"n": i}
        r = rng.integers(0, 6)
        if r:
            m["tag"] = ["cat", "dog", "bird", "x y", "ümlaut"][r - 1]
        if rng.random() < 0.8:
            m["person"] = ["ann", "bob", "cy"][int(rng.integers(0, 3))] if rng.random() < 0.9 else 7
        if rng.random() < 0.7:
            m["camera"] = ["nikon", "canon"][int(rng.integers(0, 2))]
        m["path"] = f"/p/{i % 7}.jpg"
        t = rng.random()
        if t < 0.4:
            m["taken"] = float(rng.integers(1_600_000_000, 1_700_000_000))
        elif t < 0.6:
            m["taken"] = f"2023-0{int(rng.integers(1, 10))}-15T10:00:00"
        elif t < 0.65:
            m["taken"] = "not a date"
        if rng.random() < 0.7:
            m["lat"] = float(rng.uniform(-60, 60))
            m["lon"] = float(rng.uniform(-150, 150)) if rng.random() < 0.9 else True
        out.append(m)
    return out


FILTERS = [
    {"tag": "cat"},
    {"tag": ["dog", "x y", "ümlaut"]},
    {"tag": "nobody"},
    {"person": "ann", "camera": "canon"},
    {"path": ["/p/1.jpg", "/p/2.jpg"], "tag": ["cat", "dog"]},
    {"taken": {"gte": "2023-03-01", "lte": "2023-07-31T23:59:59"}},
    {"taken": {"gte": 1_650_000_000}},
    {"lat": {"gte": -10.0, "lte": 25.5}, "lon": {"lte": 0}},
    {"lat": {"gte": 0}, "person": ["bob", "cy"], "tag": "bird"},
]


@pytest.fixture
def store(tmp_path):
    s = vecface.open_store("faiss", "f", DIM, "cosine", path=tmp_path)
    yield s
    s.close()


@pytest.mark.parametrize("spec", INDEXES, ids=["exact", "hnsw", "ivfflat"])
@pytest.mark.parametrize("strategy", ["auto", "selector", "exact", "post"])
def test_every_field_matches_the_reference(store, tmp_path, spec, strategy):
    n = 600
    x = clustered(n, DIM, seed=3)
    metas = _odd_metadata(n)
    store.upsert_arrays([f"r{i}" for i in range(n)], x, metas)
    store.delete(["r0", "r5"])  # dead slots never match
    store.build_index(spec)
    store.upsert([Record("r7", x[8], {**metas[7], "tag": "cat"})])  # a replaced record, after the build
    metas[7] = {**metas[7], "tag": "cat"}
    alive = {f"r{i}": metas[i] for i in range(n) if i not in (0, 5)}
    store.set_query_params(ef_search=600, probes=4, filter_strategy=strategy)
    for flt in FILTERS:
        want = {i for i, m in alive.items() if matches_filter(m, normalise_filter(flt))}
        hits = store.search(x[1], k=n, filter=flt)
        assert {h.id for h in hits} == want, flt
        assert [h.distance for h in hits] == sorted(h.distance for h in hits)
        assert all(h.metadata == alive[h.id] for h in hits)
    # the same answers from the columns rebuilt from the journal by a fresh open
    with vecface.open_store("faiss", "f", path=tmp_path) as again:
        again.set_query_params(ef_search=600, probes=4, filter_strategy=strategy)
        for flt in FILTERS:
            want = {i for i, m in alive.items() if matches_filter(m, normalise_filter(flt))}
            assert {h.id for h in again.search(x[1], k=n, filter=flt)} == want, flt


@pytest.mark.parametrize("strategy", ["auto", "exact", "post"])
def test_recall_on_selective_filters(store, strategy):
    data = clustered(6050, DIM, clusters=300, spread=0.5, seed=4)
    x, queries = data[:6000], data[6000:]
    rng = np.random.default_rng(5)
    tags = rng.choice(["t50", "t10", "t01", "rest"], size=len(x), p=[0.5, 0.1, 0.01, 0.39])
    store.upsert_arrays([f"r{i}" for i in range(len(x))], x, [{"tag": t} for t in tags])
    store.build_index(HNSW(m=16, ef_construction=64))
    store.set_query_params(ef_search=40, filter_strategy=strategy)
    for tag in ("t50", "t10", "t01"):
        rows = np.flatnonzero(tags == tag)
        truth = rows[np.argsort(-(queries @ x[rows].T), axis=1)[:, :10]]
        found = store.search_many(queries, k=10, filter={"tag": tag})
        recall = np.mean([len({f"r{i}" for i in t} & {h.id for h in hits}) / 10 for t, hits in zip(truth, found)])
        assert recall >= (1.0 if strategy == "exact" else 0.9), (tag, recall)
        assert all(len(hits) == 10 and all(h.metadata["tag"] == tag for h in hits) for hits in found)


def test_selector_strategy_returns_only_matches(store):
    x = clustered(3000, DIM, seed=6)
    store.upsert_arrays([f"r{i}" for i in range(3000)], x, [{"tag": "a" if i % 10 else "b"} for i in range(3000)])
    store.build_index(HNSW(m=16, ef_construction=64))
    store.set_query_params(ef_search=64, filter_strategy="selector")
    hits = store.search(x[10], k=10, filter={"tag": "b"})
    assert len(hits) == 10 and all(h.metadata["tag"] == "b" for h in hits)
    assert hits[0].id == "r10"


def test_unknown_filter_strategy(store):
    with pytest.raises(InvalidArgument, match="filter strategy"):
        store.set_query_params(filter_strategy="fast")
    assert store.filter_strategies[0] == "auto"


@pytest.mark.parametrize("spec", INDEXES, ids=["exact", "hnsw", "ivfflat"])
def test_k_is_bounded_by_the_rows(store, spec):
    x = clustered(50, DIM, seed=7)
    store.upsert_arrays([f"r{i}" for i in range(50)], x, [{"tag": "a" if i < 5 else "b"} for i in range(50)])
    store.build_index(spec)
    store.set_query_params(probes=4)
    assert len(store.search(x[0], k=10_000)) == 50
    assert len(store.search(x[0], k=10_000, filter={"tag": "a"})) == 5
    assert [len(h) for h in store.search_many(x[:3], k=10_000)] == [50, 50, 50]
    with pytest.raises(InvalidArgument):
        store.search(x[0], k=10_001)


def test_raw_searcher_is_the_same_index(store):
    x = clustered(2000, DIM, seed=8)
    store.upsert_arrays([f"r{i}" for i in range(2000)], x)
    store.build_index(HNSW(m=16, ef_construction=64))
    store.set_query_params(ef_search=32)
    raw = store.raw_searcher(10)
    ids = {h.id: h for h in store.search(x[0], k=10)}
    labels = raw(x[0])
    assert len(labels) == 10
    # the raw call returns slots; the store maps the same slots to the same records
    assert [h.id for h in store.search(x[0], k=10)] == [f"r{int(s)}" for s in labels]
    assert store.in_process and store.storage_bytes() > 2000 * DIM * 4
    assert set(ids) == {f"r{int(s)}" for s in labels}
