"""Killing weaviate-server (SIGKILL) during an ingest (issue 14, item 3): after a restart and a re-run
of the ingest, every stored record must be searchable -- with vecface's check and repair.

A private server on a temporary data directory, started through the supervisor; loopback only;
bounded in size and time; the server is stopped at the end whatever happens."""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pytest

import vecface

from .conftest import clustered

pytest.importorskip("weaviate")

from vecface.backends import weaviate_server, weaviate_store  # noqa: E402,F401  (the store registers its repair hook)

N, DIM, BATCH = 3000, 32, 100
KILL_AFTER = N // 3  # committed rows before the kill


def _searchable_ids(store, ids: list[str], x: np.ndarray) -> set[str]:
    """The records a search with their own vector returns (k 10, a wide ef of 400): what a user can find."""
    store.set_query_params(ef_search=400)
    try:
        return {i for i, hits in zip(ids, store.search_many(x, k=10)) if i in {h.id for h in hits}}
    finally:
        store.set_query_params()  # back to the default ef for what follows


@pytest.fixture
def private_server(tmp_path):
    if weaviate_server.find_binary() is None:
        pytest.skip("the Weaviate server is not built (vecface weaviate install)")
    yield tmp_path
    weaviate_server.stop_server(tmp_path)


def _ingest_and_kill(data_dir):
    """Load N records in batches in a thread; SIGKILL the server after KILL_AFTER are acknowledged."""
    x = clustered(N, DIM, seed=11)
    ids = [f"p{i:05d}" for i in range(N)]
    metas = [{"tag": f"t{i % 7}", "path": f"/photos/{i}.jpg"} for i in range(N)]

    store = vecface.open_store("weaviate", "crash", DIM, "cosine", data_dir=data_dir)
    store.build_index("hnsw")  # empty: switches without a copy; the ingest builds the graph
    committed = [0]
    stop = threading.Event()
    failure: list[BaseException] = []

    def ingest():
        try:
            for start in range(0, N, BATCH):
                if stop.is_set():
                    return
                store.upsert_arrays(ids[start:start + BATCH], x[start:start + BATCH], metas[start:start + BATCH])
                committed[0] = start + BATCH
        except Exception as e:  # the server died under it (or its client was closed): expected
            failure.append(e)

    t = threading.Thread(target=ingest, daemon=True)
    t.start()
    deadline = time.monotonic() + 120
    while committed[0] < KILL_AFTER and t.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    pid = weaviate_server.running(data_dir).pid
    os.kill(pid, signal.SIGKILL)
    stop.set()
    store.close()  # the client would retry for a minute; closed, the ingest stops at once
    t.join(60)
    assert not t.is_alive(), "the ingest did not stop"
    assert committed[0] >= KILL_AFTER
    return ids, x, metas, committed[0]


def test_sigkill_during_ingest_then_rerun_then_check_repairs_every_record(private_server, monkeypatch):
    monkeypatch.setattr(weaviate_server, "after_crash_restart", [])  # no repair on restart: see the loss
    data_dir = private_server
    ids, x, metas, committed = _ingest_and_kill(data_dir)
    # restart (the supervisor starts a new server on the same data), re-run the whole ingest
    with vecface.open_store("weaviate", "crash", data_dir=data_dir) as store:
        assert store.server_versions()  # a new server answers
        store.upsert_arrays(ids, x, metas)
        assert store.count() == N
        found = _searchable_ids(store, ids, x)
        lost = set(ids) - found
        report = store.check(repair=False)
        print(f"\ncommitted before the kill: {committed}; after the re-run: count {N}, "
              f"searchable {len(found)}, unsearchable {len(lost)} ({min(lost, default='-')}..{max(lost, default='-')}); "
              f"check found {len(report.unsearchable)}")
        assert report.stored == N
        flagged = set(report.unsearchable)
        # the check finds every record the index lost; a graph search is approximate, so it may also
        # flag (and harmlessly rewrite) a record that a wider search would have found, but only a few
        assert lost <= flagged and len(flagged - lost) <= N // 100
        repaired = store.check(repair=True)
        assert lost <= set(repaired.repaired) and repaired.ok
        assert _searchable_ids(store, ids, x) == set(ids)  # every stored record is searchable again
        assert store.count() == N
        # and the records are unchanged by the repair
        for r in store.get([ids[0], ids[-1]] + sorted(lost)[:5]):
            i = ids.index(r.id)
            assert np.allclose(r.vector, x[i], atol=1e-6) and r.metadata == metas[i]


def test_a_restart_after_the_server_died_repairs_the_indexes_itself(private_server):
    data_dir = private_server
    ids, x, metas, committed = _ingest_and_kill(data_dir)
    with vecface.open_store("weaviate", "crash", data_dir=data_dir) as store:  # restarts the server
        store.upsert_arrays(ids, x, metas)
        assert store.count() == N
        assert _searchable_ids(store, ids, x) == set(ids)
        assert store.check().unsearchable == []
    log = (data_dir / "weaviate" / "weaviate.log").read_text()
    assert "vecface index check after the previous server died: crash:" in log
