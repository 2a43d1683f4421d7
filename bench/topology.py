"""Cluster topologies for ``vecface bench``: start local clusters (a 3-node Weaviate cluster, a
PostgreSQL primary with streaming replicas) or take the URLs/DSNs a user gives, and turn each into a
benchmark target: a backend name, a label naming the topology, and the store options that reach it.

The runner sees only those targets (backend + label + options); this module is the one place of the
benchmark that knows which backend takes which cluster option. :func:`clusters` starts what it was
asked to and stops, on the way out, only what it started.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from vecface.errors import InvalidArgument

#: what one 2-core machine measures when every node shares its cores (said in the report)
SAME_MACHINE_NOTE = (
    "All nodes of a local cluster run on this one machine and share its cores with the client, so the "
    "cluster figures show the cost of replication (every write goes to every replica; reads wait for a "
    "quorum), not the speed-up that separate machines would give.")


def target(backend: str, label: str, options: dict[str, Any]) -> dict[str, Any]:
    return {"backend": backend, "label": label, "options": options}


def weaviate_target(urls: list[str], grpc_ports: list[int] | None, replication: int | None,
                    consistency: str, label: str) -> dict[str, Any]:
    opts: dict[str, Any] = {"url": urls, "consistency": consistency}
    if grpc_ports:
        opts["grpc_port"] = grpc_ports
    if replication:
        opts["replication_factor"] = replication
    return target("weaviate", label, opts)


def pg_target(dsn: str, read_dsns: list[str], label: str) -> dict[str, Any]:
    return target("pgvector", label, {"dsn": dsn, "read_dsns": read_dsns})


@contextlib.contextmanager
def clusters(data_dir: str | None = None, *, weaviate_nodes: int | None = None, replication: int | None = None,
             consistency: str = "quorum", pg_replicas: int | None = None, weaviate_urls: list[str] | None = None,
             weaviate_grpc_ports: list[int] | None = None, pg_dsn: str | None = None,
             pg_read_dsns: list[str] | None = None, log=print) -> Iterator[list[dict[str, Any]]]:
    """Yield the benchmark targets for the clusters asked for; local ones are started first and
    those this call started are stopped at the end, whatever happens."""
    if weaviate_nodes and weaviate_urls:
        raise InvalidArgument("give either --weaviate-nodes (a local cluster) or --weaviate-urls, not both")
    if pg_replicas and (pg_dsn or pg_read_dsns):
        raise InvalidArgument("give either --pg-replicas (local replicas) or --pg-dsn/--pg-read-dsns, not both")
    if pg_read_dsns and not pg_dsn:
        raise InvalidArgument("--pg-read-dsns are standbys of a primary: give --pg-dsn too")
    if replication and weaviate_nodes and replication > weaviate_nodes:
        raise InvalidArgument(f"replication factor {replication} needs at least that many nodes, "
                              f"got --weaviate-nodes {weaviate_nodes}")
    targets: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        if weaviate_nodes:
            targets.append(stack.enter_context(_local_weaviate(data_dir, weaviate_nodes, replication or weaviate_nodes,
                                                               consistency, log)))
        elif weaviate_urls:
            rf = replication or None
            targets.append(weaviate_target(weaviate_urls, weaviate_grpc_ports, rf, consistency,
                                           f"{len(weaviate_urls)} given nodes"
                                           + (f", replication {rf}" if rf else "") + f", {consistency}"))
        if pg_replicas:
            targets.append(stack.enter_context(_local_pg(data_dir, pg_replicas, log)))
        elif pg_dsn:
            reads = list(pg_read_dsns or [])
            targets.append(pg_target(pg_dsn, reads, f"given primary + {len(reads)} read replica(s)"))
        yield targets


@contextlib.contextmanager
def _local_weaviate(data_dir, nodes: int, rf: int, consistency: str, log) -> Iterator[dict[str, Any]]:
    from vecface.backends import weaviate_cluster

    before, _ = weaviate_cluster.cluster_status(data_dir)
    was_running = any(s.alive for s in before)
    log(f"starting a {nodes}-node Weaviate cluster on 127.0.0.1" + (" (running already)" if was_running else ""))
    try:
        cluster = weaviate_cluster.start_cluster(data_dir, nodes)
        yield weaviate_target(cluster.urls, cluster.grpc_ports, rf, consistency,
                              f"{nodes} nodes, replication {rf}, {consistency}")
    finally:
        if not was_running:
            weaviate_cluster.stop_cluster(data_dir)


@contextlib.contextmanager
def _local_pg(data_dir, replicas: int, log) -> Iterator[dict[str, Any]]:
    from vecface.backends import pg_replicas, pg_server

    primary_was_running = pg_server.status(data_dir).recorded is not None
    running = {r.name for r in pg_replicas.replica_status(data_dir) if r.pid}
    log(f"starting the embedded PostgreSQL with {replicas} streaming replica(s)")
    try:
        rs = pg_replicas.start_replicas(data_dir, replicas)
        yield pg_target(rs.primary, rs.replicas, f"primary + {replicas} replica(s), reads on the replicas")
    finally:
        for i in range(replicas):
            if f"replica{i}" not in running:
                pg_replicas.stop_replica(data_dir, f"replica{i}")
        if not primary_was_running:
            pg_server.stop_server(data_dir)
