"""The Weaviate backend beyond the conformance suite: typed filter properties, the collection-create
race, the one error pattern, options, the measurement hooks. Real local server (conftest)."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest

import vecface
from vecface.errors import BackendError, BackendUnavailable, CollectionMismatch, InvalidArgument
from vecface.filters import matches_filter, normalise_filter

from .conftest import clustered

pytest.importorskip("weaviate")

from vecface.backends import weaviate_conn, weaviate_measure, weaviate_schema  # noqa: E402

_n = iter(range(10**6))


def _name(tag: str) -> str:
    return f"w{os.getpid()}_{tag}_{next(_n)}"


@pytest.fixture
def opened(weaviate_options):
    made = []

    def make(name=None, dim=8, metric="cosine", **kw):
        s = vecface.open_store("weaviate", name or _name("s"), dim, metric, **{**weaviate_options, **kw})
        made.append(s)
        return s

    yield make
    for s in made:
        if not s._closed:
            try:
                s.drop()
            except vecface.VecfaceError:
                pass


# ------------------------------------------------------------------ filters on the typed properties

METAS = [
    {"person": "ada", "camera": "X100", "taken": "2024-06-01T10:00:00Z", "lat": 48.85, "lon": 2.35},
    {"person": "bob", "camera": "X100", "taken": "2024-06-15T12:30:00+02:00", "lat": 51.5, "lon": -0.12},
    {"person": "ada", "camera": "EOS R", "taken": 1719792000, "lat": -33.9, "lon": 151.2},
    {"person": "cy", "taken": "2023-01-01"},
    {"tag": "none of the new fields"},
    {"person": "ada", "lat": "not a number", "taken": "not a date"},
]

FILTERS = [
    {"person": "ada"},
    {"person": ["bob", "cy"]},
    {"camera": "X100", "person": "ada"},
    {"taken": {"gte": "2024-06-01", "lte": "2024-06-30T23:59:59Z"}},
    {"taken": {"gte": 1719792000}},
    {"taken": {"lte": "2023-12-31"}},
    {"lat": {"gte": 40.0}},
    {"lat": {"gte": 40.0, "lte": 50.0}, "lon": {"lte": 3}},
    {"lon": {"gte": 100}},
    {"lat": {"lte": 0}, "person": "ada"},
]


def test_filters_on_person_camera_taken_lat_lon_match_the_reference(opened):
    s = opened()
    x = clustered(len(METAS), 8, seed=3)
    ids = [f"r{i}" for i in range(len(METAS))]
    s.upsert_arrays(ids, x, METAS)
    for flt in FILTERS:
        want = {i for i, m in zip(ids, METAS) if matches_filter(m, normalise_filter(flt))}
        got = {h.id for h in s.search(x[0], k=len(ids), filter=flt)}
        assert got == want, flt
    # the stored metadata comes back as given, not as the typed properties
    assert s.get("r1")[0].metadata == METAS[1]


def test_a_collection_made_before_the_new_fields_gets_them_on_open(opened):
    from weaviate.classes.config import Configure, DataType, Property

    name = _name("old")
    host = opened()  # for its client
    # what an older vecface made: only vid, tag, path, meta
    host._c().collections.create(
        name=weaviate_schema.CLASS_PREFIX + name,
        description='{"vecface": "%s", "dim": 8, "metric": "cosine", "index": {"kind": "exact"}, '
                    '"state": "ready"}' % name,
        vector_config=Configure.Vectors.self_provided(name=weaviate_schema.VECTOR),
        properties=[Property(name=p, data_type=DataType.TEXT) for p in ("vid", "tag", "path", "meta")])
    old = opened(name, dim=None, metric=None)
    have = {p.name for p in old._coll().config.get().properties}
    assert {"person", "camera", "taken", "lat", "lon"} <= have
    x = clustered(2, 8, seed=1)
    old.upsert_arrays(["a", "b"], x, [{"person": "ada", "lat": 1.0}, {"person": "bob", "lat": 10.0}])
    assert [h.id for h in old.search(x[0], k=5, filter={"lat": {"gte": 5}})] == ["b"]
    assert [h.id for h in old.search(x[1], k=5, filter={"person": "ada"})] == ["a"]


# ------------------------------------------------------------------ writes

def test_one_upsert_is_one_import_across_its_batches(opened):
    """Every batch of one call is sent, in requests of batch_size; a refused object in the first batch
    is reported alone and the later batches are stored (the call's requests overlap, not batch by batch)."""
    from vecface.errors import IngestFailed

    s = opened(dim=8)
    x = clustered(23, 8, seed=3)
    ids = [f"b{i}" for i in range(23)]
    sizes = []
    s._coll().data.insert_many = (lambda real: lambda objs: sizes.append(len(objs)) or real(objs))(
        s._coll().data.insert_many)
    assert s.upsert_arrays(ids, x, batch_size=5) == 23
    assert sorted(sizes) == [3, 5, 5, 5, 5] and s.count() == 23
    rows = [x[i] if i != 1 else x[i][:5] for i in range(23)]  # a short vector: the server refuses it
    with pytest.raises(IngestFailed) as info:
        s._upsert_all([f"c{i}" for i in range(23)], rows, [{}] * 23, 5)
    assert "1 of 23 objects" in str(info.value) and [i for i, _ in info.value.failures] == ["c1"]
    assert s.count() == 23 + 22 and s.get(["c0", "c22"]) and not s.get("c1")


def test_every_refused_object_is_in_ingest_failed(opened):
    """A call whose objects the server refuses in several batches: IngestFailed.failures holds every
    refused id with Weaviate's own reason (not only the few the message names), the message names the
    first MAX_REPORTED_ERRORS and how many more, and every other object is stored."""
    from vecface.backends.weaviate_write import MAX_REPORTED_ERRORS
    from vecface.errors import IngestFailed

    s = opened(dim=8)
    x = clustered(31, 8, seed=5)
    s.upsert_arrays(["first"], x[30:])  # the collection's vector length is set by its first object
    bad = {i for i in range(30) if i % 3 == 1}  # ten short vectors (the server refuses them), in every batch
    rows = [x[i][:5] if i in bad else x[i] for i in range(30)]
    with pytest.raises(IngestFailed) as info:
        s._upsert_all([f"d{i}" for i in range(30)], rows, [{}] * 30, 7)
    err = info.value
    assert sorted(i for i, _ in err.failures) == sorted(f"d{i}" for i in bad)
    assert all(reason for _, reason in err.failures)
    assert "10 of 30 objects" in str(err) and f"(and {10 - MAX_REPORTED_ERRORS} more" in str(err)
    assert sum(f"d{i}:" in str(err) for i in bad) == MAX_REPORTED_ERRORS
    assert s.count() == 1 + 20 and not s.get([f"d{i}" for i in bad])


# ------------------------------------------------------------------ two first-time creates racing

def test_two_first_time_opens_racing_share_one_collection(weaviate_options):
    for attempt in range(3):
        name = _name("race")
        barrier = threading.Barrier(2)
        stores, errors = [None, None], []

        def open_and_write(slot):
            try:
                barrier.wait(10)
                s = vecface.open_store("weaviate", name, 8, "cosine", **weaviate_options)
                stores[slot] = s
                s.upsert_arrays([f"{slot}-{i}" for i in range(5)], clustered(5, 8, seed=slot))
            except Exception as e:  # reported below
                errors.append(e)

        threads = [threading.Thread(target=open_and_write, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        try:
            assert not errors, errors
            assert stores[0].count() == stores[1].count() == 10
        finally:
            for s in stores:
                if s is not None:
                    s.close()
            vecface.open_store("weaviate", name, create=False, **weaviate_options).drop()


def test_a_create_that_lost_the_race_adopts_the_winner(opened, weaviate_options, monkeypatch):
    """Deterministic form of the race: the second store looked before the first one created."""
    from vecface.backends.weaviate_store import WeaviateStore

    first = opened()
    first.upsert_arrays(["a"], clustered(1, 8))
    looked = []
    real = WeaviateStore._describe

    def saw_nothing_the_first_time(self):
        if not looked:
            looked.append(1)
            return None
        return real(self)

    monkeypatch.setattr(WeaviateStore, "_describe", saw_nothing_the_first_time)
    second = vecface.open_store("weaviate", first.name, 8, "cosine", **weaviate_options)
    monkeypatch.undo()
    try:
        assert looked and second.count() == 1  # the winner's object is still there
    finally:
        second.close()
    looked.clear()
    monkeypatch.setattr(WeaviateStore, "_describe", saw_nothing_the_first_time)
    with pytest.raises(CollectionMismatch):
        vecface.open_store("weaviate", first.name, 16, "cosine", **weaviate_options)


# ------------------------------------------------------------------ errors: one pattern

def test_a_refused_request_is_a_backend_error(opened):
    s = opened()
    s.upsert_arrays(["a"], clustered(1, 8))
    s._c().collections.delete(s._cls)  # the collection vanishes under the store
    with pytest.raises(BackendError) as e:
        s.count()
    assert not isinstance(e.value, BackendUnavailable)
    with pytest.raises(BackendError):
        s.search(clustered(1, 8)[0], k=1)


def test_an_unreachable_server_is_backend_unavailable():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here once closed
    with pytest.raises(BackendUnavailable):
        vecface.open_store("weaviate", "nobody", 8, url=f"http://127.0.0.1:{port}", grpc_port=port)


def test_several_urls_skip_a_dead_node(opened, weaviate_options):
    import socket

    from vecface.backends import weaviate_server

    info = weaviate_server.running(weaviate_options.get("data_dir"))
    if info is None:
        pytest.skip("needs the local server")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = sock.getsockname()[1]
    s = opened(url=[f"http://127.0.0.1:{dead}?grpc={dead}", f"http://127.0.0.1:{info.http_port}?grpc={info.grpc_port}"],
               data_dir=None)
    s.upsert_arrays(["a", "b"], clustered(2, 8))
    assert s.count() == 2 and s._node == 1


# ------------------------------------------------------------------ options

def test_options_from_arguments_and_environment(monkeypatch):
    o = weaviate_conn.resolve(["http://h1:8080?grpc=50061", "http://h2:8081"], [1, 50062],
                              replication_factor=3, shards=2, consistency="QUORUM")
    assert [(e.url, e.grpc_port) for e in o.endpoints] == [("http://h1:8080", 50061), ("http://h2:8081", 50062)]
    assert (o.replication_factor, o.shards, o.consistency) == (3, 2, "quorum")
    monkeypatch.setenv("VECFACE_WEAVIATE_URL", "http://a:1, http://b:2")
    monkeypatch.setenv("VECFACE_WEAVIATE_GRPC_PORT", "11,12")
    monkeypatch.setenv("VECFACE_WEAVIATE_REPLICATION", "2")
    monkeypatch.setenv("VECFACE_WEAVIATE_SHARDS", "4")
    monkeypatch.setenv("VECFACE_WEAVIATE_CONSISTENCY", "all")
    o = weaviate_conn.resolve()
    assert [(e.url, e.grpc_port) for e in o.endpoints] == [("http://a:1", 11), ("http://b:2", 12)]
    assert (o.replication_factor, o.shards, o.consistency) == (2, 4, "all")
    for var in ("URL", "GRPC_PORT", "REPLICATION", "SHARDS", "CONSISTENCY"):
        monkeypatch.delenv(f"VECFACE_WEAVIATE_{var}")
    with pytest.raises(InvalidArgument, match="consistency"):
        weaviate_conn.resolve("http://a:1", consistency="most")
    with pytest.raises(InvalidArgument, match="replication_factor"):
        weaviate_conn.resolve("http://a:1", replication_factor=0)
    with pytest.raises(InvalidArgument, match="gRPC ports"):
        weaviate_conn.resolve(["http://a:1", "http://b:2", "http://c:3"], [1, 2])


def test_replication_and_shards_reach_the_collection_config(opened):
    s = opened(replication_factor=1, shards=2, consistency="one")
    cfg = s._coll().config.get()
    assert cfg.replication_config.factor == 1 and cfg.sharding_config.desired_count == 2
    x = clustered(40, 8)
    s.upsert_arrays([f"i{i}" for i in range(40)], x)
    assert s.count() == 40 and s.search(x[7], k=1)[0].id == "i7"


# ------------------------------------------------------------------ capability hooks

def test_measurement_hooks(opened):
    s = opened(dim=16)
    x = clustered(200, 16, seed=5)
    s.upsert_arrays([f"i{i}" for i in range(200)], x, [{"tag": "a"}] * 200)
    s.build_index("hnsw")
    assert s.build_note and "copy" in s.build_note
    assert s.server_versions()["weaviate"][0].isdigit()
    size = s.storage_bytes()
    assert size is None or size > 0
    raw = s.raw_searcher(5)  # asks for what vecface's search needs, returns the ids
    assert raw(x[3])[0] == "i3"
    assert [h.id for h in s.search(x[3], k=5)] == raw(x[3])
    ticks = []
    said = s.insert_one_by_one([f"o{i}" for i in range(7)], x[:7], [{}] * 7, ticks.append)
    assert "insert" in said and sum(ticks) == 7
    assert s.count() == 200  # the baseline wrote elsewhere, and left nothing behind
    with pytest.raises(vecface.UnknownCollection):
        vecface.open_store("weaviate", f"{s.name}_one", create=False, **weaviate_measure.reopen_options(s))
    opts = weaviate_measure.reopen_options(s)
    with s.raw_loader(40) as load:  # the raw client's bulk load: a fresh collection shaped like this one
        load([f"w{i}" for i in range(100)], x[:100], [{"tag": "u", "person": "p"}] * 100)
        load(["w100"], x[100:101], None)
        assert "insert_many" in load.method and "40 objects per request" in load.method
        raw = vecface.open_store("weaviate", f"{s.name}_raw", create=False, **opts)
        assert raw.count() == 101 and raw.index == s.index and (raw.dim, raw.metric) == (s.dim, s.metric)
        assert [h.id for h in raw.search(x[5], k=1, filter={"person": "p"})] == ["w5"]  # typed properties too
        assert raw.get("w100")[0].metadata == {}
        raw.close()
    assert s.count() == 200 and not s.get("w0")
    with pytest.raises(vecface.UnknownCollection):
        vecface.open_store("weaviate", f"{s.name}_raw", create=False, **opts)


def test_filter_strategies_switch_and_both_filter_correctly(opened):
    s = opened(dim=16)
    assert s.filter_strategies == ("sweeping", "acorn")
    x = clustered(300, 16, seed=9)
    metas = [{"tag": "even" if i % 2 == 0 else "odd"} for i in range(300)]
    s.upsert_arrays([f"i{i}" for i in range(300)], x, metas)
    s.build_index("hnsw")
    vic = s._coll().config.get().vector_config["default"].vector_index_config
    assert getattr(vic.filter_strategy, "value", vic.filter_strategy) == "sweeping"  # vecface's default
    results = {}
    for fs in s.filter_strategies:
        s.set_query_params(ef_search=64, filter_strategy=fs)
        vic = s._coll().config.get().vector_config["default"].vector_index_config
        assert getattr(vic.filter_strategy, "value", vic.filter_strategy) == fs
        assert vic.flat_search_cutoff == weaviate_schema.flat_search_cutoff(16) == 10_000
        hits = s.search(x[1], k=10, filter={"tag": "odd"})
        assert hits and all(int(h.id[1:]) % 2 == 1 for h in hits)
        results[fs] = [h.id for h in hits]
    assert results["acorn"][0] == results["sweeping"][0] == "i1"
    wide = opened(dim=512)  # a filter keeping fewer than 9,765 of 512-d objects is scanned exactly
    wide.build_index("hnsw")
    vic = wide._coll().config.get().vector_config["default"].vector_index_config
    assert vic.flat_search_cutoff == weaviate_schema.flat_search_cutoff(512) == 9765
    with pytest.raises(InvalidArgument):
        s.set_query_params(filter_strategy="bogus")


def test_the_flat_search_cutoff_rule_reaches_a_collection_made_with_another(opened):
    """A collection whose flatSearchCutoff is not vecface's rule (an older vecface set 39,062 at
    128-d) gets the rule when it is next searched, and its filtered search still filters."""
    from weaviate.classes.config import Reconfigure

    s = opened(dim=128)
    x = clustered(200, 128, seed=4)
    s.upsert_arrays([f"i{i}" for i in range(200)], x, [{"tag": "a" if i % 4 == 0 else "b"} for i in range(200)])
    s.build_index("hnsw")

    def cutoff(store):
        return store._coll().config.get().vector_config["default"].vector_index_config.flat_search_cutoff

    assert cutoff(s) == weaviate_schema.flat_search_cutoff(128) == 10_000
    s._coll().config.update(vector_config=Reconfigure.Vectors.update(
        name="default", vector_index_config=Reconfigure.VectorIndex.hnsw(flat_search_cutoff=39_062)))
    s.close()
    again = opened(s.name, dim=128)
    assert cutoff(again) == 39_062
    hits = again.search(x[4], k=5, filter={"tag": "a"})
    assert hits[0].id == "i4" and all(int(h.id[1:]) % 4 == 0 for h in hits)
    assert cutoff(again) == 10_000
    assert [weaviate_schema.flat_search_cutoff(d) for d in (16, 500, 512, 2048, 8192)] == [10_000, 10_000, 9765, 2441, 1000]


def test_check_on_a_healthy_collection_finds_nothing_to_repair(opened):
    s = opened(dim=16)
    x = clustered(120, 16, seed=2)
    s.upsert_arrays([f"i{i}" for i in range(120)], x)
    s.build_index("hnsw")
    seen = []
    report = s.check(repair=True, progress=seen.append)
    assert report.stored == 120 and report.unsearchable == [] and report.ok and sum(seen) == 120
    assert np.allclose(s.get("i5")[0].vector, x[5], atol=1e-6)


def test_check_command(opened, weaviate_options):
    from typer.testing import CliRunner

    from vecface.cli import app

    s = opened(dim=8)
    s.upsert_arrays([f"i{i}" for i in range(30)], clustered(30, 8))
    data_dir = weaviate_options.get("data_dir")
    args = ["--data-dir", str(data_dir)] if data_dir else []
    res = CliRunner().invoke(app, ["check", s.name, "--backend", "weaviate", "--repair", *args])
    assert res.exit_code == 0, res.output
    assert f"{s.name}: 30 stored, 0 not found by the vector index, 0 repaired" in res.output
    res = CliRunner().invoke(app, ["check", "nosuch", "--backend", "weaviate", *args])
    assert res.exit_code == 1 and "no collection" in res.output


def test_only_replica_connection_errors_are_sent_again():
    """A per-object error from a replica dying under the coordinator is retried (objects are keyed by
    id, so a second send stores them once); a refused object is reported at once."""
    from vecface.backends.weaviate_write import transient

    assert transient("failed to execute query: rpc error: code = Canceled desc = grpc: the client connection is closing")
    assert transient("rpc error: code = Unavailable desc = connection refused")
    assert not transient("invalid text property 'tag' on class 'Vecface_x': not a string, but float64")
    assert not transient("id 'b0' already exists with another vector dimension")
