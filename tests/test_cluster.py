"""Clusters on loopback: a 3-node Weaviate cluster and a PostgreSQL primary with a streaming
replica, and what happens to searches and writes when a node dies (SIGKILL).

Each node-loss test is bounded (a fixed number of seconds of searching, bounded waits), binds
127.0.0.1 only, and its cluster is stopped even when it fails. The figures (failed queries during
the kill, per-node counts after the node returned) are printed: run with ``-s`` to see them.
"""

from __future__ import annotations

import signal
import threading
import time

import numpy as np
import pytest

import vecface
from vecface.backends import _server

from .conftest import clustered, local_weaviate_cluster

CLIENTS = 8
SEARCH_SECONDS = 20.0
KILL_AFTER_S = 4.0
DIM = 16
N = 400
QUERIES = 24


def _wait_for(cond, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"{what}: not within {timeout:.0f} s"
        time.sleep(0.2)


def _search_under_kill(store, queries: np.ndarray, expected: list[list[str]], kill, seconds: float) -> dict:
    """CLIENTS threads search in a loop for ``seconds``; ``kill()`` runs after KILL_AFTER_S.
    Returns counts of queries, failures and answers that differ from ``expected``."""
    stop = threading.Event()
    lock = threading.Lock()
    tally = {"queries": 0, "failed": 0, "changed": 0, "errors": [], "slowest_s": 0.0}

    def client(c: int) -> None:
        i = c
        while not stop.is_set():
            q = i % len(queries)
            i += CLIENTS
            t0 = time.perf_counter()
            try:
                got = [h.id for h in store.search(queries[q], k=10)]
            except Exception as e:  # noqa: BLE001 - every failure is counted, the first few kept
                with lock:
                    tally["failed"] += 1
                    if len(tally["errors"]) < 3:
                        tally["errors"].append(f"{type(e).__name__}: {e}"[:300])
                continue
            with lock:
                tally["queries"] += 1
                tally["changed"] += got != expected[q]
                tally["slowest_s"] = max(tally["slowest_s"], time.perf_counter() - t0)

    threads = [threading.Thread(target=client, args=(c,), daemon=True) for c in range(CLIENTS)]
    for t in threads:
        t.start()
    started = time.monotonic()
    try:
        time.sleep(KILL_AFTER_S)
        kill()
        time.sleep(max(0.0, seconds - KILL_AFTER_S))
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    tally["wall_s"] = round(time.monotonic() - started, 1)
    tally["slowest_s"] = round(tally["slowest_s"], 2)
    return tally


# ====================================================================== Weaviate

@pytest.fixture(scope="module")
def wv_cluster(tmp_path_factory):
    """Three weaviate-server nodes of one cluster on 127.0.0.1, stopped at the end whatever happens."""
    home = tmp_path_factory.mktemp("wv-cluster")
    with local_weaviate_cluster(home) as cluster:
        yield home, cluster


def _weaviate_store_side() -> bool:
    import inspect

    from vecface.backends import weaviate_store

    return "replication_factor" in inspect.signature(weaviate_store.WeaviateStore.__init__).parameters


def _per_node_counts(cluster, name: str, ids: list[str]) -> dict[str, int]:
    """How many of ``ids`` each node holds itself (Weaviate's ``node_name`` read of one object),
    for the collection ``name``. /v1/nodes' objectCount is no use here: it lags by up to a minute."""
    import json
    import urllib.error
    import urllib.request

    from vecface.backends.weaviate_schema import object_uuid

    live = next(n for n in cluster.nodes if _server.pid_alive(n.pid))
    with urllib.request.urlopen(f"{live.url}/v1/schema", timeout=10) as r:
        classes = [c["class"] for c in json.loads(r.read())["classes"]
                   if c["class"].lower().startswith(f"vecface_{name}".lower())]
    assert len(classes) == 1, classes
    counts = {}
    for node in cluster.nodes:
        held = 0
        for id_ in ids:
            try:
                with urllib.request.urlopen(f"{live.url}/v1/objects/{classes[0]}/{object_uuid(id_)}"
                                            f"?node_name={node.name}", timeout=10) as r:
                    held += r.status == 200
            except urllib.error.HTTPError:
                pass
        counts[node.name] = held
    return counts


def test_cluster_nodes_are_listed_stopped_and_started_alone(wv_cluster):
    from typer.testing import CliRunner

    from vecface.backends import weaviate_cluster
    from vecface.cli import app

    home, cluster = wv_cluster
    nodes, strays = weaviate_cluster.cluster_status(home)
    assert [s.health for s in nodes] == ["HEALTHY"] * 3 and strays == []
    assert len({s.info.http_port for s in nodes}) == 3 and len({s.info.data_path for s in nodes}) == 3
    out = CliRunner().invoke(app, ["weaviate", "stop", "--node", "2", "--data-dir", str(home)]).output
    assert "node2 stopped" in out
    assert not _server.pid_alive(cluster.nodes[2].pid)
    out = CliRunner().invoke(app, ["weaviate", "status", "--data-dir", str(home)]).output
    assert "node2  stopped" in out and out.count("running") >= 2
    result = CliRunner().invoke(app, ["weaviate", "start", "--node", "2", "--data-dir", str(home)])
    assert result.exit_code == 0, result.output
    nodes, _ = weaviate_cluster.cluster_status(home)
    assert [s.health for s in nodes] == ["HEALTHY"] * 3


@pytest.mark.parametrize("consistency", ["one", "quorum"])
def test_searches_survive_a_node_kill(wv_cluster, consistency):
    """8 clients search for 20 s while the node the store talks to first is SIGKILLed: no query
    fails and every answer is the one from before the kill."""
    if not _weaviate_store_side():
        pytest.skip("the Weaviate store has no replication options yet (helper H7's part)")
    from vecface.backends import weaviate_cluster

    home, cluster = wv_cluster
    x = clustered(N, DIM, seed=5)
    name = f"kill_{consistency}"
    store = vecface.open_store("weaviate", name, DIM, url=cluster.urls, grpc_port=cluster.grpc_ports,
                               replication_factor=3, consistency=consistency)
    victim = 0
    try:
        ids = [f"r{i}" for i in range(N)]
        store.upsert_arrays(ids, x)
        # a write at ONE returns once one replica has it; the answers to compare with are those of the
        # fully replicated collection, so wait until every node holds every object
        _wait_for(lambda: set(_per_node_counts(cluster, name, ids).values()) == {N}, 40,
                  "every node holding every object")
        queries = x[:QUERIES] + 0.01
        expected = [[h.id for h in store.search(q, k=10)] for q in queries]
        tally = _search_under_kill(store, queries, expected,
                                   lambda: weaviate_cluster.stop_node(home, victim, sig=signal.SIGKILL), SEARCH_SECONDS)
        print(f"\nweaviate 3 nodes RF 3 {consistency}: {tally['queries']} queries in {SEARCH_SECONDS:.0f} s, "
              f"{tally['failed']} failed, {tally['changed']} changed; node{victim} SIGKILLed at {KILL_AFTER_S:.0f} s; "
              f"slowest query {tally['slowest_s']} s; all done after {tally['wall_s']} s; errors {tally['errors']}")
        assert tally["failed"] == 0, tally["errors"]
        assert tally["changed"] == 0
        assert tally["queries"] > 0
    finally:
        t0 = time.monotonic()
        weaviate_cluster.start_node(home, victim, timeout=120)
        print(f"node{victim} back and the cluster healthy after {time.monotonic() - t0:.1f} s")
        try:
            store.drop()
        except vecface.VecfaceError:
            store.close()


@pytest.mark.timeout(360)
def test_writes_while_a_node_is_down_reach_every_node(wv_cluster):
    """upsert_arrays at QUORUM with one node of three down: exact counts; once the node is back,
    every node reports the same count."""
    if not _weaviate_store_side():
        pytest.skip("the Weaviate store has no replication options yet (helper H7's part)")
    from vecface.backends import weaviate_cluster

    home, cluster = wv_cluster
    name = "down_write"
    x = clustered(N, DIM, seed=6)
    store = vecface.open_store("weaviate", name, DIM, url=cluster.urls, grpc_port=cluster.grpc_ports,
                               replication_factor=3, consistency="quorum")
    try:
        store.upsert_arrays([f"a{i}" for i in range(N // 2)], x[: N // 2])
        weaviate_cluster.stop_node(home, 2, sig=signal.SIGKILL)
        try:
            _wait_for(lambda: weaviate_cluster.nodes_health(cluster.nodes[0].http_port).get("node2") != "HEALTHY",
                      30, "the cluster noticing node2 is down")
            store.upsert_arrays([f"b{i}" for i in range(N // 2)], x[N // 2:])
            assert store.count() == N
            assert {r.id for r in store.get([f"b{i}" for i in range(N // 2)])} == {f"b{i}" for i in range(N // 2)}
        finally:
            weaviate_cluster.start_node(home, 2, timeout=120)
        ids = [f"a{i}" for i in range(N // 2)] + [f"b{i}" for i in range(N // 2)]
        counts: dict[str, int] = {}

        def converged() -> bool:
            counts.update(_per_node_counts(cluster, name, ids))
            return set(counts.values()) == {N}

        try:
            _wait_for(converged, 40, "every node holding every object")
        finally:
            print(f"\nweaviate per-node counts after node2 returned: {counts}")
        assert store.count() == N
    finally:
        try:
            store.drop()
        except vecface.VecfaceError:
            store.close()


# ====================================================================== PostgreSQL

@pytest.fixture(scope="module")
def pg_cluster():
    """The embedded primary plus one hot standby on Unix sockets, stopped at the end whatever happens."""
    import shutil
    import tempfile
    from pathlib import Path

    from vecface.backends import pg_replicas, pg_server

    # not under pytest's own temporary root: other pytest sessions reset that to mode 0700, which
    # locks out the unprivileged user the servers run as (when the tests run as root)
    home = Path(tempfile.mkdtemp(prefix="vecface-pg-cluster-"))
    try:
        rs = pg_replicas.start_replicas(home, 1)
        yield home, rs
    finally:
        pg_replicas.stop_replicas(home)
        pg_server.stop_server(home)
        shutil.rmtree(home, ignore_errors=True)


def _pg_store_side() -> bool:
    import inspect

    from vecface.backends import pg_store

    return "read_dsns" in inspect.signature(pg_store.PgVectorStore.__init__).parameters


def test_replica_streams_and_status_tells_the_truth(pg_cluster):
    import psycopg
    from typer.testing import CliRunner

    from vecface.cli import app

    home, rs = pg_cluster
    with psycopg.connect(rs.primary, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS h3_probe (v int)")
        conn.execute("INSERT INTO h3_probe VALUES (42)")
    with psycopg.connect(rs.replicas[0], autocommit=True) as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)
        _wait_for(lambda: conn.execute("SELECT count(*) FROM pg_class WHERE relname = 'h3_probe'").fetchone()[0] == 1
                  and conn.execute("SELECT max(v) FROM h3_probe").fetchone() == (42,), 30, "the row on the replica")
    out = CliRunner().invoke(app, ["pg", "status", "--data-dir", str(home)]).output
    assert "replica0: running" in out and "streaming" in out and "NOT streaming" not in out


def test_searches_continue_on_the_primary_when_a_replica_dies(pg_cluster):
    if not _pg_store_side():
        pytest.skip("the pgvector store has no read_dsns yet (helper H6's part)")
    from vecface.backends import pg_replicas

    home, rs = pg_cluster
    x = clustered(N, DIM, seed=7)
    store = vecface.open_store("pgvector", "replica_kill", DIM, dsn=rs.primary, read_dsns=rs.replicas,
                               read_your_writes=True)
    try:
        store.upsert_arrays([f"r{i}" for i in range(N)], x)
        queries = x[:QUERIES] + 0.01
        expected = [[h.id for h in store.search(q, k=10)] for q in queries]
        tally = _search_under_kill(store, queries, expected,
                                   lambda: pg_replicas.stop_replica(home, "replica0", sig=signal.SIGKILL), 10.0)
        print(f"\npgvector primary + 1 replica: {tally['queries']} queries in 10 s, {tally['failed']} failed, "
              f"{tally['changed']} changed; replica0 SIGKILLed at {KILL_AFTER_S:.0f} s; errors {tally['errors']}")
        assert tally["failed"] == 0, tally["errors"]
        assert tally["changed"] == 0 and tally["queries"] > 0
    finally:
        store.drop()
        pg_replicas.start_replicas(home, 1)


def test_read_your_writes_sees_the_write_on_a_replica(pg_cluster):
    if not _pg_store_side():
        pytest.skip("the pgvector store has no read_dsns yet (helper H6's part)")
    home, rs = pg_cluster
    x = clustered(60, DIM, seed=8)
    store = vecface.open_store("pgvector", "ryw", DIM, dsn=rs.primary, read_dsns=rs.replicas, read_your_writes=True)
    try:
        for i in range(30):  # write, then read at once: each write is seen by the very next search
            store.upsert_arrays([f"w{i}"], x[i:i + 1])
            assert store.search(x[i], k=1)[0].id == f"w{i}"
            assert store.count() == i + 1
    finally:
        store.drop()
