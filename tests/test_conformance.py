"""The contract: every backend passes this suite against a real server / library."""

from __future__ import annotations

import numpy as np
import pytest

import vecface
from vecface import HNSW, Exact, IVFFlat, Record
from vecface.errors import (
    CollectionMismatch,
    DimensionMismatch,
    InvalidArgument,
    InvalidFilter,
    InvalidName,
    NonFiniteVector,
    StoreClosed,
    UnknownCollection,
    UnsupportedIndex,
)

from .conftest import clustered

#: the suite also runs on a 3-node Weaviate cluster with replication factor 3 ("weaviate-cluster")
pytestmark = pytest.mark.cluster_variants

METRICS = ["cosine", "l2", "ip"]


def _records(x: np.ndarray, prefix: str = "r", tags=("a", "b")) -> list[Record]:
    return [Record(f"{prefix}{i}", v, {"path": f"/img/{i}.jpg", "tag": tags[i % len(tags)], "n": i})
            for i, v in enumerate(x)]


def _brute(x: np.ndarray, q: np.ndarray, metric: str, k: int) -> tuple[np.ndarray, np.ndarray]:
    if metric == "cosine":
        xn = x / np.linalg.norm(x, axis=1, keepdims=True)
        qn = q / np.linalg.norm(q)
        d = 1 - xn @ qn
    elif metric == "l2":
        d = np.linalg.norm(x - q, axis=1)
    else:
        d = -(x @ q)
    order = np.argsort(d, kind="stable")[:k]
    return order, d[order]


def test_upsert_get_delete_count(store_factory):
    s = store_factory(dim=8)
    assert s.count() == 0
    x = clustered(50, 8)
    assert s.upsert(_records(x)) == 50
    assert s.count() == 50
    got = s.get(["r3", "missing", "r7"])
    assert [r.id for r in got] == ["r3", "r7"]
    np.testing.assert_allclose(got[0].vector, x[3], atol=1e-6)
    assert got[0].metadata == {"path": "/img/3.jpg", "tag": "b", "n": 3}
    assert s.delete(["r3", "r4", "nope"]) == 2
    assert s.count() == 48
    assert s.get(["r3"]) == []
    assert all(h.id not in ("r3", "r4") for h in s.search(x[3], k=48))


def test_upsert_replaces_existing_id(store_factory):
    s = store_factory(dim=8)
    x = clustered(20, 8)
    s.upsert(_records(x))
    s.upsert([Record("r0", x[19], {"tag": "z", "path": "/new.jpg"})])
    assert s.count() == 20
    (rec,) = s.get(["r0"])
    assert rec.metadata == {"tag": "z", "path": "/new.jpg"}
    np.testing.assert_allclose(rec.vector, x[19], atol=1e-6)
    hits = s.search(x[19], k=2)
    assert {h.id for h in hits} == {"r0", "r19"}


def test_idempotent_upsert(store_factory):
    s = store_factory(dim=8)
    recs = _records(clustered(30, 8))
    s.upsert(recs)
    s.upsert(recs)
    assert s.count() == 30
    # duplicates inside one call: the last one wins
    s.upsert([Record("dup", np.ones(8), {"tag": "first"}), Record("dup", np.ones(8), {"tag": "last"})])
    assert s.count() == 31
    assert s.get("dup")[0].metadata["tag"] == "last"


@pytest.mark.parametrize("metric", METRICS)
def test_exact_search_matches_brute_force(store_factory, metric):
    s = store_factory(dim=16, metric=metric)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 16)).astype(np.float32)
    s.upsert(_records(x))
    s.build_index(Exact())
    for q in rng.normal(size=(5, 16)).astype(np.float32):
        order, dist = _brute(x, q, metric, 10)
        hits = s.search(q, k=10)
        assert [h.id for h in hits] == [f"r{i}" for i in order]
        np.testing.assert_allclose([h.distance for h in hits], dist, rtol=1e-4, atol=1e-4)
        if metric == "cosine":
            np.testing.assert_allclose([h.similarity for h in hits], 1 - dist, atol=1e-4)
        elif metric == "ip":
            np.testing.assert_allclose([h.similarity for h in hits], -dist, rtol=1e-4, atol=1e-4)
        else:
            assert all(h.similarity is None for h in hits)
    # search_many gives the same answers as search, in order
    qs = rng.normal(size=(3, 16)).astype(np.float32)
    many = s.search_many(qs, k=5)
    assert [[h.id for h in row] for row in many] == [[h.id for h in s.search(q, k=5)] for q in qs]


@pytest.mark.parametrize("spec", [HNSW(m=16, ef_construction=64), IVFFlat()], ids=["hnsw", "ivfflat"])
def test_ann_recall(store_factory, spec):
    s = store_factory(dim=32)
    if spec.kind not in s.supported_indexes:
        with pytest.raises(UnsupportedIndex):
            s.build_index(spec)
        return
    data = clustered(3050, 32, clusters=200, spread=0.5, seed=2)
    x, q = data[:3000], data[3000:]  # held-out queries from the same distribution
    s.upsert_arrays([f"r{i}" for i in range(len(x))], x, [{"tag": "t"}] * len(x))
    s.build_index(spec)
    assert s.index == spec
    if spec.kind == "hnsw":
        s.set_query_params(ef_search=64)
    else:
        s.set_query_params(probes=2)  # 3 lists for 3000 rows
    truth = np.argsort(-(q @ x.T), axis=1)[:, :10]
    found = s.search_many(q, k=10)
    recall = np.mean([len({f"r{i}" for i in t} & {h.id for h in hits}) / 10 for t, hits in zip(truth, found)])
    assert recall >= 0.9, recall


def test_query_params_do_not_rebuild(store_factory):
    s = store_factory(dim=8)
    s.upsert(_records(clustered(100, 8)))
    s.build_index(HNSW(m=8, ef_construction=32))
    s.set_query_params(ef_search=10)
    assert s.query_params.ef_search == 10
    s.set_query_params(ef_search=200)
    assert s.index == HNSW(m=8, ef_construction=32)
    assert len(s.search(np.ones(8), k=20)) == 20


def test_filters(store_factory):
    s = store_factory(dim=8)
    x = clustered(60, 8)
    s.upsert(_records(x, tags=("cat", "dog", "person")))
    hits = s.search(x[0], k=100, filter={"tag": "dog"})
    assert len(hits) == 20 and all(h.metadata["tag"] == "dog" for h in hits)
    hits = s.search(x[0], k=100, filter={"tag": ["cat", "person"]})
    assert len(hits) == 40 and {h.metadata["tag"] for h in hits} == {"cat", "person"}
    # the filtered results are the nearest among the rows that pass the filter
    allowed = [i for i in range(60) if i % 3 == 1]
    order, _ = _brute(x[allowed], x[0], "cosine", 5)
    assert [h.id for h in s.search(x[0], k=5, filter={"tag": "dog"})] == [f"r{allowed[i]}" for i in order]
    hits = s.search(x[0], k=5, filter={"tag": "dog", "path": "/img/4.jpg"})
    assert [h.id for h in hits] == ["r4"]
    assert s.search(x[0], k=5, filter={"tag": "nobody"}) == []
    with pytest.raises(InvalidFilter):
        s.search(x[0], k=5, filter={"colour": "red"})
    with pytest.raises(InvalidFilter):
        s.search(x[0], k=5, filter={"tag": 3})


def test_filters_with_hnsw_index(store_factory):
    s = store_factory(dim=16)
    x = clustered(2000, 16, seed=5)
    tags = ["rare" if i % 100 == 0 else "common" for i in range(2000)]
    s.upsert_arrays([f"r{i}" for i in range(2000)], x, [{"tag": t} for t in tags])
    s.build_index(HNSW())
    s.set_query_params(ef_search=40)
    hits = s.search(x[1], k=10, filter={"tag": "rare"})
    # 1% of the rows pass; the backend must still find k of them
    assert len(hits) == 10 and all(h.metadata["tag"] == "rare" for h in hits)
    assert [h.distance for h in hits] == sorted(h.distance for h in hits)


def test_k_larger_than_count_and_empty(store_factory):
    s = store_factory(dim=8)
    assert s.search(np.ones(8), k=5) == []
    s.upsert(_records(clustered(3, 8)))
    assert len(s.search(np.ones(8), k=50)) == 3


@pytest.mark.parametrize("bad", [np.ones(7), np.ones(9), np.ones((2, 3))])
def test_dimension_mismatch(store_factory, bad):
    s = store_factory(dim=8)
    with pytest.raises(DimensionMismatch):
        s.upsert([Record("x", bad.ravel()[:bad.size])])
    with pytest.raises((DimensionMismatch, InvalidArgument)):
        s.search(bad, k=1)
    assert s.count() == 0


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_vectors(store_factory, value):
    s = store_factory(dim=8)
    v = np.ones(8, dtype=np.float32)
    v[2] = value
    good = Record("good", np.ones(8), {})
    with pytest.raises(NonFiniteVector):
        s.upsert([good, Record("bad", v)])
    assert s.count() == 0  # the batch is rejected whole, before anything is written
    with pytest.raises(NonFiniteVector):
        s.search(v, k=1)


@pytest.mark.parametrize("name", ["", "Upper", "1abc", "a-b", "a b", "a;drop table x", "x" * 49, "ümlaut"])
def test_bad_collection_names(store_factory, name):
    with pytest.raises(InvalidName):
        store_factory(dim=8, name=name)


def test_bad_arguments(store_factory):
    s = store_factory(dim=8)
    with pytest.raises(InvalidArgument):
        s.search(np.ones(8), k=0)
    with pytest.raises(InvalidArgument):
        s.upsert([Record("", np.ones(8))])
    with pytest.raises(InvalidArgument):
        s.upsert([Record("x", np.ones(8), {"bbox": [1, 2]})])
    with pytest.raises(InvalidArgument):
        s.build_index("annoy")
    assert s.count() == 0


def test_unknown_collection_and_mismatch(store_factory):
    with pytest.raises(UnknownCollection):
        store_factory(dim=None, name="never_created")
    with pytest.raises(UnknownCollection):
        store_factory(dim=8, name="never_created_2", create=False)
    s = store_factory(dim=8, metric="cosine")
    with pytest.raises(CollectionMismatch):
        store_factory(dim=9, name=s.name)
    with pytest.raises(CollectionMismatch):
        store_factory(dim=8, metric="l2", name=s.name)


@pytest.mark.parametrize("spec", [Exact(), HNSW(m=8, ef_construction=40), IVFFlat(lists=4)], ids=["exact", "hnsw", "ivfflat"])
def test_persistence_across_reopen(store_factory, spec):
    s = store_factory(dim=8, metric="l2")
    if spec.kind not in s.supported_indexes:
        pytest.skip(f"{store_factory.backend} has no {spec.kind} index (checked in test_ann_recall)")
    x = clustered(200, 8)
    s.upsert(_records(x))
    s.build_index(spec)
    s.delete(["r5"])
    s.upsert([Record("r6", x[7], {"tag": "moved"})])
    before = [h.id for h in s.search(x[9], k=5)]
    name = s.name
    s.close()
    with vecface.open_store(store_factory.backend, name, **store_factory.options) as again:
        assert again.dim == 8 and again.metric is vecface.Metric.L2
        assert again.index == spec
        assert again.count() == 199
        assert again.get(["r5"]) == []
        assert again.get(["r6"])[0].metadata == {"tag": "moved"}
        if spec.kind == "ivfflat":
            again.set_query_params(probes=4)
        assert [h.id for h in again.search(x[9], k=5)] == before
        again.drop()


def test_delete_then_search_on_every_index(store_factory):
    s = store_factory(dim=8)
    x = clustered(300, 8)
    s.upsert(_records(x))
    for spec in (HNSW(), IVFFlat(lists=2), Exact()):
        if spec.kind not in s.supported_indexes:
            continue
        s.build_index(spec)
        s.set_query_params(ef_search=100, probes=2)
        victim = s.search(x[10], k=1)[0].id
        assert s.delete([victim]) == 1
        assert victim not in [h.id for h in s.search(x[10], k=10)]


def test_ids_lists_every_record_once(store_factory):
    s = store_factory(dim=8)
    assert s.ids() == []
    x = clustered(60, 8)
    s.upsert(_records(x))
    s.upsert([Record("r0", x[1], {"tag": "z"})])  # replaced: still one id
    s.delete(["r5", "r6"])
    want = sorted(f"r{i}" for i in range(60) if i not in (5, 6))
    assert s.ids() == want
    s.build_index(HNSW(m=8, ef_construction=32))
    assert s.ids() == want == sorted({r.id for r in s.get(want)})


def test_drop_removes_collection(store_factory):
    s = store_factory(dim=8)
    s.upsert(_records(clustered(5, 8)))
    name = s.name
    s.drop()
    with pytest.raises(UnknownCollection):
        store_factory(dim=None, name=name)


def test_closed_store_refuses(store_factory):
    s = store_factory(dim=8)
    s.close()
    with pytest.raises(StoreClosed):
        s.count()


# ---------------------------------------------------------------- range filters (taken, lat, lon) with person/camera

def _range_records(n: int, seed: int = 11):
    """Records with person, camera, taken (ISO text, some with a zone, some as epoch seconds) and
    a position; about a tenth lack each field (a record without a field never matches a filter on it)."""
    import datetime as dt

    rng = np.random.default_rng(seed)
    x = clustered(n, 8, seed=seed)
    start = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
    metas = []
    for i in range(n):
        m = {"path": f"/img/{i}.jpg", "person": f"p{i % 4 + 1}", "camera": ("Canon EOS 5D", "NIKON D750")[i % 2]}
        when = start + dt.timedelta(days=int(rng.integers(0, 366)), seconds=int(rng.integers(0, 86400)))
        m["taken"] = (when.timestamp() if i % 5 == 0 else
                      when.astimezone(dt.timezone(dt.timedelta(hours=2))).isoformat() if i % 5 == 1 else
                      when.replace(tzinfo=None).isoformat())  # naive text is read as UTC
        m["lat"], m["lon"] = float(rng.uniform(-60, 70)), float(rng.uniform(-180, 180))
        for key in ("person", "taken", "lat", "camera"):
            if rng.random() < 0.1:
                m.pop(key)
        metas.append(m)
    return x, metas


RANGE_FILTERS = [
    {"taken": {"gte": "2024-03-01", "lte": "2024-06-30T23:59:59"}},
    {"taken": {"gte": "2024-11-01T00:00:00+01:00"}},  # open above, with a zone
    {"taken": {"lte": 1706745600}},  # epoch seconds: up to 2024-02-01
    {"lat": {"gte": 35.0, "lte": 60.0}, "lon": {"gte": -10.0, "lte": 30.0}},  # a bounding box
    {"person": "p2", "taken": {"gte": "2024-02-01", "lte": "2024-10-31"}},
    {"person": ["p1", "p3"], "camera": "Canon EOS 5D", "lat": {"lte": 0.0}},
    {"camera": "NIKON D750", "lon": {"gte": 100.0}},
]


@pytest.mark.parametrize("flt", RANGE_FILTERS, ids=lambda f: "+".join(f))
def test_range_filters_match_brute_force(store_factory, flt):
    from vecface.filters import matches_filter, normalise_filter

    s = store_factory(dim=8)
    x, metas = _range_records(400)
    s.upsert_arrays([f"r{i}" for i in range(len(x))], x, metas)
    allowed = [i for i, m in enumerate(metas) if matches_filter(m, normalise_filter(flt))]
    assert 0 < len(allowed) < len(x)  # the case filters something and keeps something
    for q in (0, 123, 399):
        order, dist = _brute(x[allowed], x[q], "cosine", 10)
        hits = s.search(x[q], k=10, filter=flt)
        assert [h.id for h in hits] == [f"r{allowed[i]}" for i in order]
        np.testing.assert_allclose([h.distance for h in hits], dist, atol=1e-4)
    hits = s.search(x[0], k=len(x), filter=flt)
    assert sorted(h.id for h in hits) == sorted(f"r{i}" for i in allowed)


def test_range_filters_with_hnsw_index(store_factory):
    from vecface.filters import matches_filter, normalise_filter

    s = store_factory(dim=8)
    x, metas = _range_records(1500, seed=12)
    s.upsert_arrays([f"r{i}" for i in range(len(x))], x, metas)
    if "hnsw" not in s.supported_indexes:
        pytest.skip(f"{s.backend} has no HNSW index")
    s.build_index(HNSW())
    s.set_query_params(ef_search=64)
    flt = {"person": "p3", "taken": {"gte": "2024-05-01", "lte": "2024-05-31"}}  # about 2% of the rows
    norm = normalise_filter(flt)
    allowed = [i for i, m in enumerate(metas) if matches_filter(m, norm)]
    hits = s.search(x[7], k=10, filter=flt)
    assert len(hits) == min(10, len(allowed))
    assert all(matches_filter(m.metadata, norm) for m in hits)
    order, _ = _brute(x[allowed], x[7], "cosine", 10)
    assert len({h.id for h in hits} & {f"r{allowed[i]}" for i in order}) >= 8


@pytest.mark.parametrize("flt", [
    {"taken": {"gte": "2024-06-01", "lte": "2024-01-01"}},  # gte above lte
    {"taken": {"gte": "last tuesday"}},
    {"lat": {"gte": "north"}},
    {"lat": {"near": 3}},
    {"lon": 12.5},  # a range field needs {gte, lte}
    {"lat": {"gte": float("nan")}},
    {"person": 3},
])
def test_bad_range_filters(store_factory, flt):
    s = store_factory(dim=8)
    s.upsert(_records(clustered(5, 8)))
    with pytest.raises(InvalidFilter):
        s.search(np.ones(8), k=3, filter=flt)


def test_k_at_the_bound_on_a_small_collection(store_factory):
    """k up to MAX_K is accepted and answered with the rows there are (an in-process engine must not
    allocate for k), on every index, with and without a filter; k above the bound is refused."""
    from vecface.types import MAX_K

    s = store_factory(dim=8)
    x = clustered(50, 8, seed=11)
    s.upsert(_records(x))
    for spec in (Exact(), HNSW(m=8, ef_construction=32), IVFFlat(lists=2)):
        if spec.kind not in s.supported_indexes:
            continue
        s.build_index(spec)
        s.set_query_params(ef_search=64, probes=2)
        assert len(s.search(x[0], k=MAX_K)) == 50
        hits = s.search(x[0], k=MAX_K, filter={"tag": "a"})
        assert len(hits) == 25 and all(h.metadata["tag"] == "a" for h in hits)
    with pytest.raises(InvalidArgument):
        s.search(x[0], k=MAX_K + 1)
