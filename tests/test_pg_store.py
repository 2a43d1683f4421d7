"""The pgvector backend beyond the shared contract: its names, limits, errors, filter columns and
strategies, hooks, the old layout's migration, parallel loads and read-replica fallback, against the
embedded PostgreSQL."""

from __future__ import annotations

import select
import time

import numpy as np
import psycopg
import pytest

import vecface
from vecface import HNSW, IVFFlat, Record
from vecface.backends import pg_query, pg_schema, pg_server
from vecface.backends.pg_store import EMPTY_FAST_PATH_MIN_ROWS, LOAD_STREAM_APP, PgVectorStore
from vecface.errors import BackendError, BackendUnavailable, InvalidArgument, UnsupportedIndex, UnsupportedOperation
from vecface.filters import matches_filter, normalise_filter

from .conftest import clustered


@pytest.fixture
def pg(pgvector_options):
    made = []

    def make(name, dim=8, **kw):
        s = vecface.open_store("pgvector", name, dim, **pgvector_options, **kw)
        made.append(s)
        return s

    make.options = pgvector_options
    yield make
    for s in made:
        if not s._closed:
            s.drop()


@pytest.fixture
def admin(pgvector_options):
    """A connection of the test's own to the same server."""
    home = pgvector_options.get("data_dir")
    uri = pg_server.acquire(home)
    with psycopg.connect(uri, autocommit=True) as conn:
        yield conn
    pg_server.release(home)


def test_names_that_clashed_with_vecfaces_own_now_coexist(pg):
    """A collection named like the catalog, or like another collection's index or key, used to
    clash with vecface's own names (raw psycopg errors, broken index builds)."""
    names = ["collections", "a", "a_embedding_idx", "a_tag_idx", "a_pkey", "c_a", "v_a", "p_a", "f_a__tag"]
    x = clustered(40, 8)
    stores = {}
    for i, name in enumerate(names):
        s = pg(name)
        s.upsert_arrays([f"{name}-{j}" for j in range(10 + i)], x[: 10 + i], [{"tag": "t"}] * (10 + i))
        stores[name] = s
    for s in stores.values():
        s.build_index(HNSW(m=4, ef_construction=16))
    stores["a"].build_index(IVFFlat(lists=2))  # rebuilding one collection's index touches no other
    for i, name in enumerate(names):
        s = stores[name]
        assert s.count() == 10 + i
        assert s.search(x[0], k=1, filter={"tag": "t"})[0].id == f"{name}-0"


def test_dimension_limits_are_vecface_errors(pg):
    with pytest.raises(InvalidArgument, match="16,000"):
        pg("too_wide", dim=16_001)
    s = pg("wide", dim=2_001)
    s.upsert_arrays(["a", "b"], np.eye(2, 2_001, dtype=np.float32))
    with pytest.raises(UnsupportedIndex, match="2,000"):
        s.build_index(HNSW())
    assert s.search(np.eye(1, 2_001, dtype=np.float32)[0], k=1)[0].id == "a"  # exact search still works


def test_every_method_converts_server_errors(pg, admin):
    s = pg("vanishing")
    s.upsert_arrays(["a"], np.ones((1, 8)))
    admin.execute("DROP TABLE vecface.c_vanishing")
    for call in (s.count, lambda: s.get(["a"]), lambda: s.delete(["a"]), lambda: s.search(np.ones(8), k=1),
                 lambda: s.upsert_arrays(["b"], np.ones((1, 8))), lambda: s.build_index(HNSW()),
                 s.storage_bytes):
        with pytest.raises(BackendError):
            call()
    # listing the backend's collections names the damaged one instead of failing for all of them
    listed = {c.name: c for c in type(s).list_collections(**pg.options)}
    assert listed["vanishing"].problem and listed["vanishing"].count is None
    admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid() "
                  "AND query NOT LIKE '%%pg_terminate_backend%%' AND backend_type = 'client backend' "
                  "AND pid = %s", (s._c().info.backend_pid,))
    with pytest.raises(BackendUnavailable):
        s.count()
    s.close()


def _people(n: int, rng) -> list[dict]:
    metas = []
    for i in range(n):
        m: dict = {"tag": ["a", "b", "c"][i % 3]}
        if i % 4:
            m["person"] = ["ann", "bob", "cy"][i % 5 % 3]
        if i % 5:
            m["camera"] = ["nikon", "canon"][i % 2]
        if i % 6 == 1:
            m["taken"] = f"2024-06-{1 + i % 28:02d}T12:00:00"
        elif i % 6 == 2:
            m["taken"] = 1_700_000_000 + 3600 * i
        elif i % 6 == 3:
            m["taken"] = "not a date"
        if i % 7:
            m["lat"], m["lon"] = float(rng.uniform(-60, 60)), float(rng.uniform(-170, 170))
        elif i % 2:
            m["lat"] = "north"  # not a number: never matches a range
        metas.append(m)
    return metas


FILTERS = [
    {"person": "ann"},
    {"person": ["bob", "cy"], "camera": "canon"},
    {"taken": {"gte": "2024-06-05", "lte": "2024-06-20"}},
    {"taken": {"gte": 1_700_000_000 + 3600 * 100}},
    {"lat": {"gte": 0.0}, "lon": {"lte": 50.0}},
    {"lat": {"lte": -10.0}, "tag": ["a", "c"], "person": "ann"},
]


@pytest.mark.parametrize("strategy", PgVectorStore.filter_strategies)
def test_filter_columns_and_ranges_match_the_reference(pg, strategy):
    rng = np.random.default_rng(3)
    x = clustered(600, 16, seed=4)
    metas = _people(600, rng)
    s = pg(f"people_{strategy}", dim=16)
    s.upsert_arrays([f"r{i}" for i in range(600)], x, metas)
    s.build_index(HNSW(m=8, ef_construction=64))
    s.set_query_params(ef_search=100, filter_strategy=strategy)
    for flt in FILTERS:
        allowed = [i for i in range(600) if matches_filter(metas[i], normalise_filter(flt))]
        assert allowed, flt
        q = x[allowed[len(allowed) // 2]]
        want = [f"r{allowed[i]}" for i in np.argsort(1 - x[allowed] @ q, kind="stable")[:10]]
        hits = s.search(q, k=10, filter=flt)
        assert [h.distance for h in hits] == sorted(h.distance for h in hits)
        assert all(matches_filter(h.metadata, normalise_filter(flt)) for h in hits)
        assert len(hits) == min(10, len(allowed))
        found = len({h.id for h in hits} & set(want)) / len(want)
        assert found >= (1.0 if strategy == "exact" else 0.8), (flt, found)


def test_auto_strategy_is_exact_for_selective_filters_and_survives_stale_statistics(pg, admin):
    """``auto`` asks the planner how many rows pass: a 1% filter is searched exactly (every true
    neighbour), a 98% one through the index. Rows deleted behind the statistics' back (the planner
    still expects thousands) leave an index scan that comes back short: it is redone exactly and
    finds every remaining match."""
    n = 3000
    x = clustered(n, 16, seed=7)
    tags = ["rare" if i % 100 == 0 else "common" for i in range(n)]
    s = pg("autostrat", dim=16)
    s.upsert_arrays([f"r{i}" for i in range(n)], x, [{"tag": t} for t in tags])
    s.build_index(HNSW(m=8, ef_construction=32))  # also ANALYZEs: the planner knows the tags
    assert s.filter_strategies[0] == "auto"
    s.set_query_params(ef_search=40)
    want = pg_query.Settings(ef_search=40)
    assert s._searcher.plan(s._c(), {"tag": ["rare"]}, want) == (want, "exact")
    # through the index, ef_search raised by EF_MARGIN / share (98% pass): as many passing
    # candidates as 40 unfiltered
    settings, form = s._searcher.plan(s._c(), {"tag": ["common"]}, want)
    assert form == "index" and 40 * pg_query.EF_MARGIN <= settings.ef_search <= 40 * pg_query.EF_MARGIN / 0.95
    rare = [i for i in range(n) if tags[i] == "rare"]
    for q in x[[5, 777, 2048]]:
        want = [f"r{rare[i]}" for i in np.argsort(1 - x[rare] @ q, kind="stable")[:10]]
        assert [h.id for h in s.search(q, k=10, filter={"tag": "rare"})] == want
        hits = s.search(q, k=10, filter={"tag": "common"})
        assert len(hits) == 10 and all(h.metadata["tag"] == "common" for h in hits)
    keep = ["r1", "r2", "r3", "r4"]
    admin.execute("ALTER TABLE vecface.c_autostrat SET (autovacuum_enabled = false)")
    admin.execute("DELETE FROM vecface.c_autostrat WHERE tag = 'common' AND id <> ALL(%s)", (keep,))
    again = pg("autostrat", dim=16)
    again.set_query_params(ef_search=10)
    assert again._searcher.plan(again._c(), {"tag": ["common"]}, pg_query.Settings())[1] == "index"  # stale
    assert sorted(h.id for h in again.search(x[1], k=10, filter={"tag": "common"})) == keep


def _partial_scans(store) -> int:
    """Index scans so far of the collection's partial vector indexes (w_<name>_...), asked on the
    store's own connection after making it flush its statistics."""
    store._c().execute("SELECT pg_stat_force_next_flush()")
    return int(store._c().execute(
        "SELECT coalesce(sum(idx_scan), 0) FROM pg_stat_user_indexes WHERE schemaname = 'vecface' AND "
        "indexrelname LIKE %s", (f"w\\_{store.name}\\_%",)).fetchone()[0])


def test_filter_index_serves_its_value_and_follows_the_collection(pg, admin):
    """build_filter_index makes a partial HNSW index of one tag: a search filtered on exactly that tag
    goes through it (its scan count grows) under every index strategy and finds the true filtered
    neighbours; other filters do not use it; rows written later are found through it; a second
    handle finds it; build_index rebuilds it, Exact() drops it; bad columns and values are refused."""
    n = 2000
    x = clustered(n, 16, seed=11)
    tags = ["few" if i % 10 == 0 else "many" for i in range(n)]
    s = pg("partial", dim=16)
    s.upsert_arrays([f"r{i}" for i in range(n - 20)], x[:n - 20], [{"tag": t} for t in tags[:n - 20]])
    with pytest.raises(UnsupportedOperation, match="build_index"):
        s.build_filter_index("tag", "few")  # no vector index yet
    s.build_index(HNSW(m=8, ef_construction=64))
    for column, value in (("taken", "x"), ("lat", "1"), ("nope", "x"), ("tag", ""), ("tag", 3)):
        with pytest.raises(InvalidArgument):
            s.build_filter_index(column, value)
    s.build_filter_index("tag", "few")
    assert s.filter_indexes == [("tag", "few")]
    s.upsert_arrays([f"r{i}" for i in range(n - 20, n)], x[n - 20:], [{"tag": t} for t in tags[n - 20:]])
    few = [i for i in range(n) if tags[i] == "few"]

    def check(store, strategy):
        store.set_query_params(ef_search=64, filter_strategy=strategy)
        found = 0
        for j in (3, 50, 101, 150, 199):  # the last is one of the rows written after the index
            q = x[few[j]]
            want = [f"r{few[i]}" for i in np.argsort(1 - x[few] @ q, kind="stable")[:10]]
            before = _partial_scans(store)
            hits = store.search(q, k=10, filter={"tag": "few"})
            assert _partial_scans(store) == before + (strategy != "exact")
            assert [h.distance for h in hits] == sorted(h.distance for h in hits)
            assert all(h.metadata["tag"] == "few" for h in hits) and hits[0].id == f"r{few[j]}"
            found += len({h.id for h in hits} & set(want))
        assert found >= 45  # recall >= 0.9 against the exact filtered neighbours

    for strategy in s.filter_strategies:
        check(s, strategy)
    s.set_query_params(filter_strategy="auto")
    before = _partial_scans(s)
    assert all(h.metadata["tag"] == "many" for h in s.search(x[1], k=10, filter={"tag": "many"}))
    assert len(s.search(x[1], k=10, filter={"tag": ["few", "many"]})) == 10
    assert _partial_scans(s) == before
    other = pg("partial", dim=16)
    assert other.filter_indexes == [("tag", "few")]
    check(other, "auto")

    s.build_index(HNSW(m=4, ef_construction=32))  # the partial index is made again with the new spec
    assert s.filter_indexes == [("tag", "few")]
    definition = admin.execute("SELECT indexdef FROM pg_indexes WHERE schemaname = 'vecface' AND indexname "
                               "LIKE 'w\\_partial\\_%'").fetchone()[0]
    assert "m='4'" in definition and "ef_construction='32'" in definition and "'few'" in definition
    check(s, "auto")
    assert s.drop_filter_index("tag", "few") is True and s.filter_indexes == []
    assert s.drop_filter_index("tag", "few") is False
    s.build_filter_index("camera", "canon")  # no rows yet: an empty index, kept up as rows arrive
    s.build_index(vecface.Exact())
    assert s.filter_indexes == [] and pg("partial", dim=16).filter_indexes == []


def _news_arrived(store) -> None:
    """Wait (at most 5 s) until the server has sent something to the store's connection: another
    handle's build or drop is announced when it commits, and reaches this socket a moment later."""
    assert select.select([store._c().fileno()], [], [], 5.0)[0], "no notification within 5 s"


def test_filter_indexes_another_handle_builds_or_drops_are_seen_without_reopening(pg, admin):
    """Handle b keeps searching while handle a builds and drops a filter index: b's next search
    filtered on that value walks the new index (its scan count grows) and finds the right rows;
    after the drop b no longer lists or uses it; unfiltered searches and other filters leave b's
    knowledge alone, and a's own build is not news to a."""
    n = 1000
    x = clustered(n, 16, seed=4)
    tags = ["few" if i % 10 == 0 else "many" for i in range(n)]
    a = pg("watched", dim=16)
    a.upsert_arrays([f"r{i}" for i in range(n)], x, [{"tag": t} for t in tags])
    a.build_index(HNSW(m=8, ef_construction=32))
    b = pg("watched", dim=16)
    b.set_query_params(ef_search=64)
    assert b.filter_indexes == [] and b.search(x[0], k=5)[0].id == "r0"

    a.build_filter_index("tag", "few")
    assert not a._watch.changed()  # its own build: a read the catalog itself
    _news_arrived(b)
    b.search(x[1], k=5)  # unfiltered: takes the news (psycopg hands it over) but reads no catalog
    assert b._searcher.partials == frozenset()
    before = _partial_scans(b)
    hits = b.search(x[10], k=5, filter={"tag": "few"})
    assert _partial_scans(b) == before + 1
    assert hits[0].id == "r10" and all(h.metadata["tag"] == "few" for h in hits)
    assert b.filter_indexes == [("tag", "few")]

    assert a.drop_filter_index("tag", "few") is True
    _news_arrived(b)
    hits = b.search(x[20], k=5, filter={"tag": "few"})
    assert b._searcher.partials == frozenset()
    assert hits[0].id == "r20" and all(h.metadata["tag"] == "few" for h in hits)
    a.build_filter_index("tag", "many")
    _news_arrived(b)
    assert b.filter_indexes == [("tag", "many")]  # the listing looks for news too
    a.build_index(vecface.Exact())  # drops it with the main index
    _news_arrived(b)
    assert b.filter_indexes == []


def test_news_is_read_off_the_socket_only_under_the_connections_own_lock(pg):
    """Watch.changed reads the handle's primary connection below psycopg (consume_input): while another
    thread holds the connection (psycopg's Connection.lock, as a raw searcher's statement does outside
    the store's lock), it waits for it instead of reading the socket under that statement."""
    import threading

    a, b = pg("watchlock", dim=4), pg("watchlock", dim=4)
    a.upsert_arrays(["r0", "r1"], np.eye(2, 4, dtype=np.float32), [{"tag": "x"}] * 2)
    a.build_index(HNSW(m=4, ef_construction=16))
    a.build_filter_index("tag", "x")
    _news_arrived(b)
    answers: list[bool] = []
    with b._c().lock:
        reader = threading.Thread(target=lambda: answers.append(b._watch.changed()))
        reader.start()
        reader.join(0.5)
        assert reader.is_alive() and answers == []  # waiting for the connection, socket untouched
    reader.join(10)
    assert answers == [True] and not b._watch.changed()


def test_a_raw_load_on_the_same_handle_holds_none_of_its_searches_writes_or_news(pg, admin):
    """The raw COPY baseline (raw_loader) loads on a connection of its own. While one of its batches is
    open (its transaction begun, the batch's rows not yet read), the handle's filtered search sees the
    filter index another handle just built (news reaches a connection only between its transactions)
    and answers right, and a record the handle upserts meanwhile stays when that raw batch then fails
    and rolls back; the scratch table goes with the loader."""
    import threading

    n = 600
    x = clustered(n, 16, seed=6)
    a = pg("rawside", dim=16)
    a.upsert_arrays([f"r{i}" for i in range(n)], x, [{"tag": "few" if i % 10 == 0 else "many"} for i in range(n)])
    a.build_index(HNSW(m=8, ef_construction=32))
    a.set_query_params(ef_search=64)
    b = pg("rawside", dim=16)
    inside, release = threading.Event(), threading.Event()
    failed: list[BaseException] = []

    class Held(list):
        """A batch's metadata, read inside the raw batch's transaction: waits there until released, then fails."""

        def __getitem__(self, _):
            inside.set()
            release.wait(30)
            raise RuntimeError("the raw batch fails")

    def raw_load() -> None:
        try:
            with a.raw_loader(50) as load:
                load([f"w{i}" for i in range(50)], x[:50], Held([{}] * 50))
        except RuntimeError as e:
            failed.append(e)

    loader = threading.Thread(target=raw_load, name="raw-load")
    loader.start()
    try:
        assert inside.wait(30), "the raw batch never started"
        b.build_filter_index("tag", "few")
        _news_arrived(a)
        before = _partial_scans(a)
        hits = a.search(x[10], k=5, filter={"tag": "few"})
        assert _partial_scans(a) == before + 1  # walked the index b built
        assert hits[0].id == "r10" and all(h.metadata["tag"] == "few" for h in hits)
        a.upsert_arrays(["late"], x[20:21], [{"tag": "few"}])
    finally:
        release.set()
        loader.join(30)
    assert not loader.is_alive() and [str(e) for e in failed] == ["the raw batch fails"]
    assert a.count() == n + 1 and a.get("late")[0].metadata == {"tag": "few"}
    assert [h.id for h in a.search(x[20], k=2, filter={"tag": "few"})] in (["r20", "late"], ["late", "r20"])
    assert admin.execute("SELECT to_regclass('vecface.r_rawside')").fetchone() == (None,)


def test_legacy_layout_is_migrated_on_open(pg, admin):
    """Tables of the layout before the vecface schema (public.vecface_collections, public.vecface_<name>,
    no filter columns) are moved into the schema, keep their index, and get their filter columns."""
    admin.execute("CREATE TABLE IF NOT EXISTS public.vecface_collections (name text PRIMARY KEY, "
                  "dim int NOT NULL, metric text NOT NULL, index jsonb NOT NULL)")
    admin.execute("CREATE TABLE public.vecface_oldie (id text PRIMARY KEY, embedding vector(4) NOT NULL, "
                  "tag text, path text, metadata jsonb NOT NULL DEFAULT '{}')")
    admin.execute("CREATE INDEX vecface_oldie_tag_idx ON public.vecface_oldie (tag)")
    admin.execute("INSERT INTO public.vecface_oldie VALUES "
                  "('a', '[1,0,0,0]', 'x', '/a.jpg', '{\"tag\": \"x\", \"path\": \"/a.jpg\", \"person\": \"ann\", \"lat\": 10}'), "
                  "('b', '[0,1,0,0]', 'y', NULL, '{\"tag\": \"y\", \"taken\": \"2020-01-01\"}'), "
                  "('c', '[0,0,1,0]', NULL, NULL, '{}')")
    admin.execute("CREATE INDEX vecface_oldie_embedding_idx ON public.vecface_oldie USING hnsw (embedding vector_cosine_ops)")
    admin.execute("INSERT INTO public.vecface_collections VALUES ('oldie', 4, 'cosine', '{\"kind\": \"hnsw\", \"m\": 16, \"ef_construction\": 64}')")
    with vecface.open_store("pgvector", "oldie", **pg.options) as s:
        assert s.count() == 3 and s.dim == 4 and s.index == HNSW()
        assert s.get("a")[0].metadata == {"tag": "x", "path": "/a.jpg", "person": "ann", "lat": 10}
        assert [h.id for h in s.search([1, 0, 0, 0], k=3, filter={"person": "ann"})] == ["a"]
        assert [h.id for h in s.search([1, 0, 0, 0], k=3, filter={"lat": {"gte": 5}})] == ["a"]
        assert [h.id for h in s.search([1, 0, 0, 0], k=3, filter={"taken": {"lte": "2020-06-01"}})] == ["b"]
        assert [h.id for h in s.search([1, 0, 0, 0], k=3, filter={"tag": "y"})] == ["b"]
        s.drop()
    assert admin.execute("SELECT to_regclass('public.vecface_collections'), to_regclass('public.vecface_oldie')"
                         ).fetchone() == (None, None)
    names = {r[0] for r in admin.execute(
        "SELECT indexname FROM pg_indexes WHERE schemaname = 'vecface' AND tablename = 'c_oldie'").fetchall()}
    assert names == set()  # dropped with the collection; nothing left behind in public either


def test_hooks_raw_searcher_one_by_one_sizes(pg, admin):
    x = clustered(500, 8)
    s = pg("hooks")
    s.upsert_arrays([f"r{i}" for i in range(500)], x, [{"tag": "t"}] * 500)
    s.build_index(HNSW(m=8, ef_construction=32))
    s.set_query_params(ef_search=64)
    raw = s.raw_searcher(5)
    for q in x[:20]:
        assert raw(q) == [h.id for h in s.search(q, k=5)]
    assert s.server_versions()["pgvector"].startswith("0.")
    assert s.storage_bytes() > 500 * 8 * 4
    ticks = []
    method = s.insert_one_by_one([f"o{i}" for i in range(30)], x[:30], [{"tag": "t"}] * 30, ticks.append)
    assert "row" in method and ticks == [1] * 30
    assert s.count() == 500  # the baseline wrote elsewhere, and cleaned up after itself
    assert admin.execute("SELECT to_regclass('vecface.r_hooks')").fetchone() == (None,)
    with s.raw_loader(40) as load:  # the raw COPY baseline: a scratch table shaped like the collection's
        load([f"w{i}" for i in range(100)], x[:100], [{"tag": "u", "person": "p"}] * 100)
        load(["w100"], x[100:101], None)
        assert "COPY" in load.method
        assert admin.execute("SELECT count(*), count(*) FILTER (WHERE person = 'p') FROM vecface.r_hooks"
                             ).fetchone() == (101, 100)
        indexed = {r[0] for r in admin.execute(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = 'vecface' AND tablename = 'r_hooks'").fetchall()}
        assert len(indexed) == 1 + len(pg_schema.INDEXED_FILTERS)  # primary key and filter btrees, no vector index
    assert s.count() == 500 and not s.get("w0")
    assert admin.execute("SELECT to_regclass('vecface.r_hooks')").fetchone() == (None,)


def test_load_into_an_empty_collection_over_several_streams(pg):
    n = EMPTY_FAST_PATH_MIN_ROWS + 1234
    x = np.random.default_rng(0).normal(size=(n, 4)).astype(np.float32)
    s = pg("streams", dim=4, load_streams=3)
    ids = [f"r{i}" for i in range(n)]
    assert s.upsert_arrays(ids, x, [{"tag": str(i % 7), "n": i} for i in range(n)], batch_size=997) == n
    assert s.count() == n
    got = s.get(["r0", f"r{n - 1}", "r20000"])
    assert [r.metadata["n"] for r in got] == [0, n - 1, 20000]
    np.testing.assert_allclose(got[1].vector, x[n - 1] / np.linalg.norm(x[n - 1]), atol=1e-6)
    # not empty any more: the same ids again go through the merge (over the streams), nothing doubled
    again = EMPTY_FAST_PATH_MIN_ROWS + 1
    assert s.upsert_arrays(ids[:again], x[:again], batch_size=3000) == again
    assert s.count() == n and s.get("r5")[0].metadata == {}


def test_metadata_of_every_json_kind_round_trips_through_both_load_paths(pg):
    """The encoder writes the metadata's JSON text itself (pg_load._dumps): text with quotes,
    backslashes, control characters and non-ASCII, nested lists and objects, floats, big integers,
    booleans and nulls come back as given, from one batch and from the streams."""
    kinds = [{"tag": "caf\u00e9 \"q\" \\ \n\t\u0001 \U0001f600", "path": "/a b/\u00fc.jpg"},
             {"n": 2**62, "x": -0.1, "e": 1e-300, "ok": True, "no": False, "none": None},
             {"nested": {"a": [1, [2, {"b": "c"}]], "": "empty key"}, "bbox": [1, 2, 3, 4]},
             {}]
    x = np.random.default_rng(5).normal(size=(400, 4)).astype(np.float32)
    s = pg("jsonkinds", dim=4, load_streams=3)
    s.upsert_arrays(["one"], x[:1], [kinds[0]])  # one batch: the caller's connection
    metas = [kinds[i % len(kinds)] for i in range(399)]
    s.upsert_arrays([f"r{i}" for i in range(399)], x[1:], metas, batch_size=100)  # the streams
    assert s.get("one")[0].metadata == kinds[0]
    got = {r.id: r.metadata for r in s.get([f"r{i}" for i in range(399)])}
    assert all(got[f"r{i}"] == metas[i] for i in range(399))
    assert [h.id for h in s.search(x[0], k=1, filter={"tag": kinds[0]["tag"]})] == ["one"]


def test_an_encoding_that_fails_midway_leaves_later_encodings_alone():
    """The load's JSON encoder is made once for the process (pg_load._dumps): a value it cannot write
    (the raw baseline's metadata is not checked first) fails that encoding alone; the same metadata,
    mended in place and written again, is not taken for a circular reference."""
    from vecface.backends import pg_load

    meta = {"bbox": [1, 2, 3, 4], "extra": {"k": ["v", object()]}}
    x = np.zeros((1, 4), dtype=np.float32)
    with pytest.raises(TypeError):
        pg_load.encode_rows(["r"], x, [meta])
    meta["extra"]["k"].pop()
    assert b'{"bbox":[1,2,3,4],"extra":{"k":["v"]}}' in pg_load.encode_rows(["r"], x, [meta])


def test_a_batch_the_server_refuses_stops_the_streams_and_keeps_the_committed_batches(pg):
    x = np.random.default_rng(2).normal(size=(1000, 4)).astype(np.float32)
    ids = [f"r{i}" for i in range(1000)]
    metas = [{"n": i} for i in range(1000)]
    metas[650] = {"note": "a\x00b"}  # jsonb has no NUL character: the seventh batch is refused
    s = pg("refused", dim=4, load_streams=2)
    with pytest.raises(BackendError, match="Unicode"):
        s.upsert_arrays(ids, x, metas, batch_size=100)
    kept = {r.id for r in s.get(ids)}
    assert "r650" not in kept and 0 < len(kept) <= 900  # whole batches: those the streams had committed
    assert all(f"r{b * 100}" in kept for b in range(10) if any(f"r{b * 100 + i}" in kept for i in range(100)))
    assert len(kept) % 100 == 0
    assert s.upsert_arrays(ids[650:660], x[650:660], batch_size=5) == 10  # the streams still work
    assert s.get("r650")[0].metadata == {}


def test_load_streams_are_kept_and_reopened_when_the_server_closed_them(pg, admin):
    x = np.random.default_rng(1).normal(size=(900, 4)).astype(np.float32)
    ids = [f"r{i}" for i in range(900)]
    s = pg("kept", dim=4, load_streams=2)

    def streams() -> int:
        return admin.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                             (LOAD_STREAM_APP,)).fetchone()[0]

    s.upsert_arrays(ids[:300], x[:300], batch_size=100)
    s.upsert_arrays(ids[300:600], x[300:600], batch_size=100)
    assert streams() == 2  # the second load used the first one's connections
    admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
                  (LOAD_STREAM_APP,))
    assert s.upsert_arrays(ids[600:], x[600:], [{"n": i} for i in range(300)], batch_size=100) == 300
    assert s.count() == 900 and s.get("r899")[0].metadata == {"n": 299}
    s.close()
    deadline = time.monotonic() + 10  # a backend leaves pg_stat_activity shortly after its client
    while streams() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert streams() == 0


def test_searches_fall_back_to_the_primary_when_a_replica_is_down(pg, pgvector_options):
    home = pgvector_options.get("data_dir")
    uri = pg_server.acquire(home)
    try:
        down = "postgresql://nobody@/postgres?host=/nonexistent-vecface-socket&port=1"
        s = vecface.open_store("pgvector", "replicated", 8, dsn=uri, read_dsns=[down, down])
        try:
            s.upsert([Record("a", np.ones(8)), Record("b", -np.ones(8))])
            assert [h.id for h in s.search(np.ones(8), k=1)] == ["a"]
            assert [h.id for h in s.search(-np.ones(8), k=1)] == ["b"]
        finally:
            s.drop()
    finally:
        pg_server.release(home)
    with pytest.raises(InvalidArgument):
        vecface.open_store("pgvector", "replicated", 8, read_dsns=[down], **pgvector_options)
