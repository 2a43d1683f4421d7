"""A Weaviate cluster on one machine: N ``weaviate-server`` nodes on 127.0.0.1 that form one
cluster (Weaviate's own gossip + raft), for replication and node-loss tests, and to try the
cluster code paths before pointing vecface at real hosts.

Each node ``node<i>`` has its own ports (HTTP, gRPC, gossip, data, raft and raft RPC = raft + 1,
metrics, profiling), its data in ``<data dir>/weaviate/cluster/node<i>/data`` and its log in
``.../node<i>/weaviate.log``; ``CLUSTER_IN_LOCALHOST=true`` and ``RAFT_JOIN`` name every node with
its raft port, as Weaviate's ``tools/dev/run_dev_server.sh`` does. The nodes are recorded in
``cluster.json`` as each is spawned (before any wait). A started cluster is detached: it runs until
:func:`stop_cluster`. :func:`node_urls` gives the stores (``url=[...]``) what they connect to.
"""

from __future__ import annotations

import json
import os
import signal
import socket
from dataclasses import asdict, dataclass
from pathlib import Path

from vecface.errors import BackendUnavailable

from . import _server
from .weaviate_install import NO_SERVER_HELP, PINNED_VERSION, binary_path, find_binary
from .weaviate_server import (READY_TIMEOUT_S, PORT_NAMES, ServerInfo, http_get, home_for, is_ready, node_env,
                              processes_on, spawn)


@dataclass
class NodeStatus:
    info: ServerInfo
    alive: bool
    ready: bool
    health: str  # what /v1/nodes says about this node ("HEALTHY", "UNHEALTHY", ..., or "?")


@dataclass
class ClusterInfo:
    version: str
    nodes: list[ServerInfo]

    @property
    def urls(self) -> list[str]:
        return [n.url for n in self.nodes]

    @property
    def grpc_ports(self) -> list[int]:
        return [n.grpc_port for n in self.nodes]

    def store_options(self) -> dict[str, list]:
        """What ``open_store("weaviate", ...)`` needs to reach every node (``url=``, ``grpc_port=``)."""
        return {"url": self.urls, "grpc_port": self.grpc_ports}


def cluster_home(data_dir: str | os.PathLike[str] | None) -> Path:
    return home_for(data_dir) / "cluster"


def _record(home: Path) -> _server.StateFile:
    return _server.StateFile(home / "cluster.json")


def read_cluster(data_dir: str | os.PathLike[str] | None = None) -> ClusterInfo | None:
    """The cluster recorded for ``data_dir`` (running or not)."""
    doc = _record(cluster_home(data_dir)).read()
    try:
        return ClusterInfo(doc["version"], [ServerInfo(**n) for n in doc["nodes"]])
    except (TypeError, KeyError):
        return None


def _write(home: Path, cluster: ClusterInfo) -> None:
    _record(home).write({"version": cluster.version, "nodes": [asdict(n) for n in cluster.nodes]})


def node_urls(data_dir: str | os.PathLike[str] | None = None) -> list[tuple[str, int]]:
    """``(http url, gRPC port)`` of each node of the cluster recorded for ``data_dir``."""
    cluster = read_cluster(data_dir)
    return [(n.url, n.grpc_port) for n in cluster.nodes] if cluster else []


def nodes_health(http_port: int) -> dict[str, str]:
    """Node name -> status as one node's ``/v1/nodes`` reports the cluster ({} if it cannot say)."""
    try:
        code, body = http_get(f"http://127.0.0.1:{http_port}/v1/nodes", timeout=2.0)
        return {n["name"]: n.get("status", "?") for n in json.loads(body)["nodes"]} if code == 200 else {}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def _healthy(cluster: ClusterInfo) -> bool:
    names = {n.name for n in cluster.nodes}
    for node in cluster.nodes:
        if _server.pid_alive(node.pid) and is_ready(node.http_port, timeout=1.0):
            health = nodes_health(node.http_port)
            return all(health.get(name) == "HEALTHY" for name in names)
    return False


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _spawn_node(home: Path, binary: Path, cluster: ClusterInfo, i: int, join: list[int]) -> None:
    node = cluster.nodes[i]
    raft_join = ",".join(f"{n.name}:{n.ports['raft']}" for n in cluster.nodes)
    cluster_join = ",".join(f"127.0.0.1:{cluster.nodes[j].ports['gossip']}" for j in join) or None
    env = node_env(Path(node.data_path), node.ports, name=node.name, version=cluster.version,
                   raft_join=raft_join, expect=len(cluster.nodes), cluster_join=cluster_join)
    node.ready = False
    spawn(binary, node, env, Path(node.log_path).parent)
    _write(home, cluster)  # recorded before any wait


def _wait_healthy(home: Path, cluster: ClusterInfo, timeout: float) -> ClusterInfo:
    why = _server.wait_until(lambda: _healthy(cluster), timeout,
                             alive=lambda: all(_server.pid_alive(n.pid) for n in cluster.nodes), poll=0.5)
    if why is not None:
        dead = [n for n in cluster.nodes if not _server.pid_alive(n.pid)]
        log = Path((dead or cluster.nodes)[0].log_path)
        raise BackendUnavailable(
            f"the local Weaviate cluster ({len(cluster.nodes)} nodes) was not healthy ({why}); "
            f"{log}:\n{_server.log_tail(log)}")
    for n in cluster.nodes:
        n.ready = True
    _write(home, cluster)
    return cluster


def _binary(version: str) -> Path:
    binary = find_binary(version)
    if binary is None:
        raise BackendUnavailable(f"the Weaviate {version} server is not installed (looked for "
                                 f"{binary_path(version)}); build it with: vecface weaviate install\n{NO_SERVER_HELP}")
    return binary


def start_cluster(data_dir: str | os.PathLike[str] | None = None, nodes: int = 3, *,
                  version: str = PINNED_VERSION, timeout: float = READY_TIMEOUT_S) -> ClusterInfo:
    """Start (or find running) an ``nodes``-node cluster for ``data_dir``; return once every node
    is ready and ``/v1/nodes`` lists them all HEALTHY. It runs until :func:`stop_cluster`."""
    if nodes < 1:
        raise BackendUnavailable(f"a cluster needs at least one node, got {nodes}")
    home = cluster_home(data_dir)
    with _server.interprocess_lock(home / "start.lock"):
        old = read_cluster(data_dir)
        if old is not None and any(_server.pid_alive(n.pid) for n in old.nodes):
            if len(old.nodes) != nodes:
                raise BackendUnavailable(f"a {len(old.nodes)}-node cluster runs in {home}; stop it first "
                                         f"(vecface weaviate stop)")
            _stop_unrecorded(home, old)
            binary = _binary(old.version)
            for i, n in enumerate(old.nodes):  # a node that died (or was stopped) comes back
                if not _server.pid_alive(n.pid):
                    _spawn_node(home, binary, old, i, [j for j in range(nodes) if j != i])
            return _wait_healthy(home, old, timeout)
        _stop_unrecorded(home, None)
        binary = _binary(version)
        wanted = {} if old is None or len(old.nodes) != nodes else {
            f"{k}{i}": v for i, n in enumerate(old.nodes) for k, v in n.ports.items()}
        flat = _server.free_ports([f"{k}{i}" for i in range(nodes) for k in PORT_NAMES], wanted,
                                  pairs=[f"raft{i}" for i in range(nodes)])
        cluster = ClusterInfo(version, [])
        for i in range(nodes):
            ports = {k: flat[f"{k}{i}"] for k in PORT_NAMES}
            ports["raft_rpc"] = flat[f"raft{i}_next"]
            ndir = home / f"node{i}"
            ndir.mkdir(parents=True, exist_ok=True)
            cluster.nodes.append(ServerInfo(pid=0, http_port=ports["http"], grpc_port=ports["grpc"], ports=ports,
                                            version=version, data_path=str(ndir / "data"),
                                            log_path=str(ndir / "weaviate.log"), detached=True, name=f"node{i}",
                                            ready=False))
        restart = old is not None and len(old.nodes) == nodes
        for i in range(nodes):
            # a new cluster: node0 first, the others join its gossip; a restarted one: everyone joins everyone
            _spawn_node(home, binary, cluster, i, [j for j in range(nodes) if j != i] if restart else [0][:i])
            if i == 0 and not restart:
                _server.wait_until(lambda: _listening(cluster.nodes[0].ports["gossip"]), 30,
                                   alive=lambda: _server.pid_alive(cluster.nodes[0].pid), poll=0.1)
        try:
            return _wait_healthy(home, cluster, timeout)
        except BackendUnavailable:
            _server.terminate_all([n.pid for n in cluster.nodes])
            raise


def _stop_unrecorded(home: Path, cluster: ClusterInfo | None) -> list[int]:
    """Stop weaviate-server processes on this cluster's data directories that no record names."""
    recorded = {n.pid for n in cluster.nodes} if cluster else set()
    strays = [p for d in sorted(home.glob("node*/data")) for p in processes_on(d) if p not in recorded]
    _server.terminate_all(strays)
    return strays


def stop_node(data_dir: str | os.PathLike[str] | None, i: int, *, sig: int = signal.SIGTERM) -> bool:
    """Stop node ``i`` (SIGTERM: a clean shutdown; the test of node loss passes SIGKILL)."""
    cluster = read_cluster(data_dir)
    if cluster is None or not 0 <= i < len(cluster.nodes):
        raise BackendUnavailable(f"no node {i} in the cluster of {cluster_home(data_dir)}")
    pid = cluster.nodes[i].pid
    was = _server.pid_alive(pid)
    _server.terminate(pid, sig=sig)
    return was


def start_node(data_dir: str | os.PathLike[str] | None, i: int, *, timeout: float = READY_TIMEOUT_S) -> ClusterInfo:
    """Start node ``i`` again (same ports and data) and wait until the whole cluster is healthy."""
    home = cluster_home(data_dir)
    with _server.interprocess_lock(home / "start.lock"):
        cluster = read_cluster(data_dir)
        if cluster is None or not 0 <= i < len(cluster.nodes):
            raise BackendUnavailable(f"no node {i} in the cluster of {home}")
        if not _server.pid_alive(cluster.nodes[i].pid):
            _spawn_node(home, _binary(cluster.version), cluster, i, [j for j in range(len(cluster.nodes)) if j != i])
        return _wait_healthy(home, cluster, timeout)


def cluster_status(data_dir: str | os.PathLike[str] | None = None) -> tuple[list[NodeStatus], list[int]]:
    """Each recorded node (alive, ready, health as the cluster sees it), and unrecorded servers."""
    home = cluster_home(data_dir)
    cluster = read_cluster(data_dir)
    if cluster is None:
        return [], [p for d in sorted(home.glob("node*/data")) for p in processes_on(d)]
    alive = {n.name: _server.pid_alive(n.pid) for n in cluster.nodes}
    ready = {n.name: alive[n.name] and is_ready(n.http_port, timeout=1.0) for n in cluster.nodes}
    health: dict[str, str] = {}
    for n in cluster.nodes:
        if ready[n.name]:
            health = nodes_health(n.http_port)
            break
    recorded = {n.pid for n in cluster.nodes}
    strays = [p for d in sorted(home.glob("node*/data")) for p in processes_on(d) if p not in recorded]
    return [NodeStatus(n, alive[n.name], ready[n.name], health.get(n.name, "?")) for n in cluster.nodes], strays


def stop_cluster(data_dir: str | os.PathLike[str] | None = None) -> int:
    """Stop every node (recorded or not) of the cluster for ``data_dir``; returns how many ran.
    The data stays: :func:`start_cluster` with the same node count starts it again."""
    home = cluster_home(data_dir)
    with _server.interprocess_lock(home / "start.lock"):
        cluster = read_cluster(data_dir)
        pids = [n.pid for n in cluster.nodes if _server.pid_alive(n.pid)] if cluster else []
        _server.terminate_all(pids)
        strays = _stop_unrecorded(home, None)
    return len(pids) + len(strays)
