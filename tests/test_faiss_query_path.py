"""The single-query fast path (``VectorStore.search`` -> ``as_query``) and FAISS's hits with metadata
decoded when read: same answers and same errors as the general path, on a real FAISS collection."""

from __future__ import annotations

import numpy as np
import pytest

import vecface
from vecface import HNSW, IVFFlat, Record
from vecface.errors import DimensionMismatch, InvalidArgument, NonFiniteVector
from vecface.types import Hit, Metric, as_matrix, as_query

DIM = 16


@pytest.mark.parametrize("metric", list(Metric))
@pytest.mark.parametrize("make", [
    lambda r: r.standard_normal(DIM).astype(np.float32),              # the fast path
    lambda r: r.standard_normal(DIM),                                  # float64
    lambda r: r.standard_normal(DIM).tolist(),                         # a list
    lambda r: r.standard_normal(2 * DIM).astype(np.float32)[::2],      # a strided view
    lambda r: (r.standard_normal(DIM) * 1e30).astype(np.float32),      # its square overflows float32
    lambda r: (r.standard_normal(DIM) * 1e-25).astype(np.float32),     # its square is subnormal
    lambda r: r.integers(-5, 5, DIM),                                  # integers
])
def test_as_query_agrees_with_as_matrix(metric, make):
    v = make(np.random.default_rng(3))
    if metric is Metric.COSINE and not np.any(v):
        pytest.skip("zero vector")
    got = as_query(v, DIM, metric)
    assert got.shape == (1, DIM) and got.dtype == np.float32 and got.flags.c_contiguous
    np.testing.assert_allclose(got, as_matrix(np.asarray(v)[None, :], DIM, metric), rtol=1e-5, atol=1e-30)
    assert np.all(np.isfinite(got))


def test_a_huge_query_is_normalised_without_a_warning_to_the_caller():
    """as_query's product overflows float32 for it (numpy warns about that); the careful path answers,
    and the warning, vecface's own, is not shown. In a fresh interpreter showing every warning once:
    pytest restores the filters it found after importing the tests, so it would drop vecface's."""
    import subprocess
    import sys

    code = ("import numpy as np; from vecface.types import Metric, as_query; "
            "q = as_query(np.full(16, 1e30, dtype=np.float32), 16, Metric.COSINE); "
            "print(round(float(q[0, 0]) ** 2 * 16, 4)); "
            "np.matmul(np.full(4, 1e30, np.float32), np.full(4, 1e30, np.float32))")  # the caller's own: shown
    run = subprocess.run([sys.executable, "-W", "default", "-c", code], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "1.0"
    assert run.stderr.count("overflow encountered") == 1
    assert "vecface" not in run.stderr


def test_as_query_never_changes_the_callers_array():
    v = np.full(DIM, 3.0, dtype=np.float32)
    as_query(v, DIM, Metric.COSINE)
    assert np.all(v == 3.0)


@pytest.mark.parametrize("bad, error", [
    (np.r_[np.ones(DIM - 1), np.nan].astype(np.float32), NonFiniteVector),
    (np.r_[np.ones(DIM - 1), np.inf].astype(np.float32), NonFiniteVector),
    (np.r_[np.ones(DIM - 1), -np.inf], NonFiniteVector),
    (np.ones(DIM + 1, dtype=np.float32), DimensionMismatch),
    (np.ones((2, DIM), dtype=np.float32), InvalidArgument),
    (np.zeros(DIM, dtype=np.float32), InvalidArgument),
    (["a"] * DIM, InvalidArgument),
])
def test_as_query_errors(bad, error):
    with pytest.raises(error):
        as_query(bad, DIM, Metric.COSINE)


def test_a_unit_query_is_used_as_it_is_and_another_is_normalised():
    rng = np.random.default_rng(5)
    unit = rng.standard_normal(DIM).astype(np.float32)
    unit /= np.linalg.norm(unit)
    got = as_query(unit, DIM, Metric.COSINE)
    assert np.shares_memory(got, unit) and got.shape == (1, DIM)  # no copy, no division
    longer = unit * np.float32(1.001)  # squared norm 1.002: outside the tolerance
    got = as_query(longer, DIM, Metric.COSINE)
    assert not np.shares_memory(got, longer)
    assert abs(float(np.linalg.norm(got)) - 1.0) < 1e-6
    np.testing.assert_allclose(got[0], unit, rtol=1e-6, atol=1e-7)
    # l2 and ip never normalise
    assert np.shares_memory(as_query(longer, DIM, Metric.L2), longer)


def test_a_zero_query_is_fine_where_the_metric_allows_it():
    assert not as_query(np.zeros(DIM, dtype=np.float32), DIM, Metric.L2).any()


@pytest.fixture
def store(tmp_path):
    rng = np.random.default_rng(7)
    s = vecface.open_store("faiss", "qp", DIM, "cosine", path=tmp_path)
    s.upsert([Record(f"r{i}", rng.standard_normal(DIM), {"tag": f"t{i % 3}", "path": f"/img/{i}.jpg", "n": i,
                                                          "bbox": [1, 2, 3, i]}) for i in range(300)])
    s.build_index(HNSW(m=8, ef_construction=40))
    yield s
    s.close()


def test_search_is_search_many_of_one(store):
    rng = np.random.default_rng(8)
    for q in rng.standard_normal((20, DIM)).astype(np.float32):
        one, many = store.search(q, 7), store.search_many(q[None, :], 7)[0]
        assert [h.id for h in one] == [h.id for h in many]
        # the same up to float32 rounding (one query is normalised by a dot product, a batch by einsum)
        np.testing.assert_allclose([h.distance for h in one], [h.distance for h in many], rtol=1e-5, atol=1e-6)
        assert [h.metadata for h in one] == [h.metadata for h in many]
    with pytest.raises(InvalidArgument):
        store.search(np.ones((2, DIM)), 3)
    with pytest.raises(NonFiniteVector):
        store.search(np.full(DIM, np.nan), 3)


def test_hits_carry_each_records_own_metadata(store):
    q = store.get(["r42"])[0].vector
    hits = store.search(q, 5, filter={"tag": "t0"})
    assert hits[0].id == "r42"
    for h in hits:
        i = int(h.id[1:])
        assert h.metadata == {"tag": "t0", "path": f"/img/{i}.jpg", "n": i, "bbox": [1, 2, 3, i]}
        assert h.path == f"/img/{i}.jpg" and h.bbox == [1, 2, 3, i]
        assert h.to_dict()["metadata"]["n"] == i
    hits[0].metadata["seen"] = True  # a caller's change stays on its hit, and never reaches the store
    assert hits[0].metadata["seen"] is True
    assert "seen" not in store.search(q, 1)[0].metadata


def test_a_hit_pickles_and_copies_as_itself(store):
    import copy
    import pickle

    hit = store.search(store.get(["r7"])[0].vector, 1)[0]
    for other in (pickle.loads(pickle.dumps(hit)), copy.copy(hit), copy.deepcopy(hit)):
        assert other == hit and other.metadata["path"] == "/img/7.jpg"
    assert len(pickle.dumps(hit)) < 500  # not the whole collection's metadata


def test_a_hits_metadata_is_what_the_search_saw(store):
    """Read after the record was replaced or deleted, a hit still shows the metadata it was found with."""
    q = store.get(["r10"])[0].vector
    first, second = store.search(q, 2)
    store.upsert([Record(first.id, q, {"tag": "changed"})])
    store.delete([second.id])
    assert first.metadata["path"] == f"/img/{first.id[1:]}.jpg"
    assert second.metadata["path"] == f"/img/{second.id[1:]}.jpg"
    assert store.search(q, 1)[0].metadata == {"tag": "changed"}


def test_hit_equality_and_repr():
    a = Hit("x", 0.5, 0.5, '{"tag": "a"}')
    b = Hit("x", 0.5, 0.5, {"tag": "a"})
    assert a == b and not a != b and a.metadata == {"tag": "a"} and "tag" in repr(a)
    assert Hit("x", 0.5, 0.5) != b and Hit("x", 0.5, 0.5).metadata == {}
    assert Hit(id="x", distance=0.25, similarity=0.75).distance == 0.25


def test_hits_are_neither_ordered_nor_hashable_and_keep_a_callers_metadata():
    a, b = Hit("a", 0.1, 0.9, {"tag": "x"}), Hit("b", 0.2, 0.8, '{"tag": "y"}')
    with pytest.raises(TypeError):
        sorted([b, a])
    with pytest.raises(TypeError):
        hash(a)
    b.metadata["seen"] = 1
    assert b.metadata == {"tag": "y", "seen": 1}
    b.metadata = {"tag": "z"}
    assert b.metadata == {"tag": "z"} and b != Hit("b", 0.2, 0.8, '{"tag": "y"}')


def test_hits_read_their_own_columns_after_a_rebuild(store):
    """A compaction (build_index) swaps the in-memory columns: hits found before still read the old
    texts, hits found after the new ones."""
    q = store.get(["r20"])[0].vector
    before = store.search(q, 3)
    store.upsert([Record("r20", q, {"tag": "new"})])
    store.build_index(HNSW(m=8, ef_construction=40))
    after = store.search(q, 3)
    assert before[0].id == after[0].id == "r20"
    assert before[0].metadata["path"] == "/img/20.jpg" and after[0].metadata == {"tag": "new"}
    for h in after[1:]:
        assert h.metadata["path"] == f"/img/{h.id[1:]}.jpg"


def test_search_leaves_the_threads_openmp_setting_as_it_was(store):
    import faiss

    rng = np.random.default_rng(9)
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(2)
    try:
        qs = rng.standard_normal((8, DIM)).astype(np.float32)
        one = [[h.id for h in store.search(q, 5)] for q in qs]
        assert faiss.omp_get_max_threads() == 2
        assert [[h.id for h in hits] for hits in store.search_many(qs[:3], 5)] == one[:3]
        assert faiss.omp_get_max_threads() == 2
        assert [[h.id for h in hits] for hits in store.search_many(qs, 5)] == one
    finally:
        faiss.omp_set_num_threads(before)


@pytest.mark.parametrize("make", [
    lambda q: q,                                  # a unit float32 row: used as it is
    lambda q: (q * 3).astype(np.float64),         # float64, not unit length: converted and normalised
    lambda q: np.repeat(q, 2)[::2],               # a strided view
    lambda q: q.tolist(),                         # a list
])
def test_one_query_answers_as_faiss_own_search(store, make):
    """The one-query path calls the index's search_c on its own output arrays: it must answer exactly
    as FAISS's index.search (the raw searcher) does on the same index, whatever form the query came in.
    Slots are handed out in order, so record r<i> is FAISS's label i."""
    rng = np.random.default_rng(11)
    raw = store.raw_searcher(7)
    for q in rng.standard_normal((10, DIM)).astype(np.float32):
        q /= np.linalg.norm(q)
        hits = store.search(make(q), 7)
        assert [h.id for h in hits] == [f"r{s}" for s in raw(q).tolist()]
        vecs = np.stack([r.vector for r in store.get([h.id for h in hits])])
        np.testing.assert_allclose([h.similarity for h in hits], vecs @ q, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose([h.distance for h in hits], 1.0 - vecs @ q, rtol=1e-4, atol=1e-5)
        assert all(isinstance(h, Hit) for h in hits)


def test_one_query_asking_for_more_than_the_index_finds(store):
    """k past what the index returns (an IVF search probing one list of about 30 rows): FAISS pads
    with label -1, and no padded slot becomes a hit."""
    store.build_index(IVFFlat(lists=10))
    store.set_query_params(probes=1)
    q = store.get(["r3"])[0].vector
    raw = [s for s in store.raw_searcher(100)(q).tolist() if s >= 0]
    hits = store.search(q, 100)
    assert hits[0].id == "r3" and 0 < len(raw) < 100
    assert [h.id for h in hits] == [f"r{s}" for s in raw]
    assert [h.distance for h in hits] == sorted(h.distance for h in hits)
