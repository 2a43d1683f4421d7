"""The single-query fast path (``VectorStore.search`` -> ``as_query``) and FAISS's hits with metadata
decoded when read: same answers and same errors as the general path, on a real FAISS collection."""

from __future__ import annotations

import numpy as np
import pytest

import vecface
from vecface import HNSW, Record
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
    assert a == b and a.metadata == {"tag": "a"} and "tag" in repr(a)
    assert Hit("x", 0.5, 0.5) != b and Hit("x", 0.5, 0.5).metadata == {}
