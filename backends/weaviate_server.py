"""The local Weaviate server: the ``weaviate-server`` binary (:mod:`.weaviate_install`) run by
vecface's supervisor (:mod:`._server`).

vecface runs the binary itself rather than through weaviate-client's embedded mode. The embedded
mode (1) ties the server's life to one client object (``client.close()`` and ``__del__`` stop it),
while vecface shares one server between every store of a process and between processes
(``vecface weaviate start``); (2) sends the server's output to our stdout instead of a log file;
(3) picks ports as "random, +1, +2", which collide between concurrent starts; (4) waits only until
the port accepts connections, not until ``/v1/.well-known/ready``; and (5) enables cloud vectorizer
modules by default.

The server gets free loopback ports (kept across restarts where still free, so the single-node
raft cluster finds itself again), a persistent data directory ``<VECFACE_HOME>/weaviate/data``,
anonymous access, no modules, telemetry off, its log in ``<VECFACE_HOME>/weaviate/weaviate.log``;
SIGTERM and a wait stop it.

A state file (``server.json``) records the server *as soon as it is spawned*, before vecface waits
for it to be ready: a client killed while its server starts leaves a recorded server, which the
next user adopts (waits for, and stops when done). Servers on the data directory that no record
names (from older versions, or a race) are found by their data path in ``/proc`` and stopped, so
one server runs per data directory. Within a process, handles are reference-counted: the last
:func:`release` stops a server this process started (or adopted); servers started with
``detach=True`` (``vecface weaviate start``) keep running until :func:`stop_server`.

The HTTP API, gossip and raft listen on 127.0.0.1, but Weaviate 1.38 binds its gRPC port and its
internal cluster data port on all interfaces (``:<port>``; it has no setting for those
addresses). Anonymous access is on, so on a shared host keep those ports firewalled, or run the
compose file (loopback-only published ports) instead. Several nodes of one cluster:
:mod:`.weaviate_cluster`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from vecface.config import data_dir as vecface_data_dir
from vecface.errors import BackendUnavailable

from . import _server
from .weaviate_install import BINARY_NAME, NO_SERVER_HELP, PINNED_VERSION, binary_path, find_binary

NODE_NAME = "vecface"
READY_TIMEOUT_S = 120.0
PORT_NAMES = ("http", "grpc", "gossip", "data", "raft", "metrics", "profiling")


@dataclass
class ServerInfo:
    """One weaviate-server process as vecface recorded it."""
    pid: int
    http_port: int
    grpc_port: int
    ports: dict[str, int]
    version: str
    data_path: str
    log_path: str
    detached: bool = False
    name: str = NODE_NAME
    ready: bool = True  # False while it starts
    owner: int | None = None  # the process that stops it (None: detached, stopped by 'stop')

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @classmethod
    def from_doc(cls, doc: Any) -> "ServerInfo | None":
        try:
            return cls(**doc)
        except TypeError:
            return None


def home_for(data_dir: str | os.PathLike[str] | None) -> Path:
    return vecface_data_dir(data_dir) / "weaviate"


def _record(home: Path) -> _server.StateFile:
    return _server.StateFile(home / "server.json")


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, b""


def is_ready(http_port: int, timeout: float = 2.0) -> bool:
    try:
        return http_get(f"http://127.0.0.1:{http_port}/v1/.well-known/ready", timeout)[0] == 200
    except (OSError, ValueError):
        return False


def server_version(url: str, api_key: str | None = None, timeout: float = 5.0) -> str:
    """The version a Weaviate server reports on /v1/meta."""
    req = urllib.request.Request(url.rstrip("/") + "/v1/meta")
    if api_key:
        req.add_header("Authorization", f"Bearer {api_key}")
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return str(json.loads(r.read()).get("version", "?"))


# ====================================================================== one node

def node_ports(wanted: dict[str, int] | None = None) -> dict[str, int]:
    """Free loopback ports for one node; the raft RPC port is the raft port + 1 (Weaviate
    derives it that way for the other nodes of a cluster on one host)."""
    ports = _server.free_ports(PORT_NAMES, wanted, pairs=("raft",))
    ports["raft_rpc"] = ports.pop("raft_next")
    return ports


def node_env(data_path: Path, ports: dict[str, int], *, name: str = NODE_NAME, version: str = PINNED_VERSION,
             raft_join: str | None = None, expect: int = 1, cluster_join: str | None = None) -> dict[str, str]:
    """The environment of one weaviate-server node (a cluster when ``expect`` > 1)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLUSTER_", "RAFT_", "AUTHENTICATION_"))}
    env.update({
        "PERSISTENCE_DATA_PATH": str(data_path),
        "AUTHENTICATION_ANONYMOUS_ACCESS_ENABLED": "true",
        "AUTHORIZATION_ENABLE_RBAC": "false",
        "DEFAULT_VECTORIZER_MODULE": "none",
        "ENABLE_MODULES": "",
        "DISABLE_TELEMETRY": "true",
        "QUERY_DEFAULTS_LIMIT": "25",
        "QUERY_MAXIMUM_RESULTS": "1000000",
        "GRPC_PORT": str(ports["grpc"]),
        "CLUSTER_HOSTNAME": name,
        "CLUSTER_BIND_ADDR": "127.0.0.1",
        "CLUSTER_ADVERTISE_ADDR": "127.0.0.1",
        "CLUSTER_GOSSIP_BIND_PORT": str(ports["gossip"]),
        "CLUSTER_DATA_BIND_PORT": str(ports["data"]),
        "RAFT_PORT": str(ports["raft"]),
        "RAFT_INTERNAL_RPC_PORT": str(ports["raft_rpc"]),
        "RAFT_JOIN": raft_join or f"{name}:{ports['raft_rpc']}",  # the port is ignored for the local node
        "RAFT_BOOTSTRAP_EXPECT": str(expect),
        "GO_PROFILING_DISABLE": "true",
        "GO_PROFILING_PORT": str(ports["profiling"]),
        "PROMETHEUS_MONITORING_ENABLED": "false",
        "PROMETHEUS_MONITORING_PORT": str(ports["metrics"]),
        "LOG_FORMAT": "text",
        "LOG_LEVEL": "info",
        "VECFACE_WEAVIATE_VERSION": version,  # read back when an unrecorded server is adopted
    })
    if expect > 1:
        env["CLUSTER_IN_LOCALHOST"] = "true"
        # a node answers with its own copy of a collection's definition unless that is out of date,
        # instead of asking the raft leader every time (which fails while a new leader is elected)
        env.setdefault("COLLECTION_RETRIEVAL_STRATEGY", "LeaderOnMismatch")
        # replicas compare their data every 5 s instead of 30 s, so a node that was down catches
        # up soon (async replication, where a collection enables it)
        env.setdefault("ASYNC_REPLICATION_FREQUENCY", "5s")
    if cluster_join:
        env["CLUSTER_JOIN"] = cluster_join
    return env


def spawn(binary: Path, info: ServerInfo, env: dict[str, str], cwd: Path) -> subprocess.Popen:
    """Start one weaviate-server in its own session (it outlives a killed client), output to its log;
    fills in ``info.pid``."""
    Path(info.data_path).mkdir(parents=True, exist_ok=True)
    cmd = [str(binary), "--host", "127.0.0.1", "--port", str(info.http_port), "--scheme", "http",
           "--read-timeout=600s", "--write-timeout=600s"]
    with open(info.log_path, "ab") as log:
        log.write(f"\n==== vecface starts Weaviate {info.version} ({info.name}): ports {info.ports}\n".encode())
        log.flush()
        proc = _server.track(subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                              stderr=subprocess.STDOUT, cwd=str(cwd), start_new_session=True))
    info.pid = proc.pid
    return proc


def processes_on(data_path: str | os.PathLike[str]) -> list[int]:
    """weaviate-server processes whose data path is ``data_path``, recorded or not."""
    return _server.processes_on(BINARY_NAME, data_path, env_key="PERSISTENCE_DATA_PATH")


def info_from_process(pid: int, log_path: Path) -> ServerInfo | None:
    """What a running weaviate-server nobody recorded listens on (from its environment and arguments)."""
    env = _server.proc_environ(pid)
    try:
        cmd = _server.proc_cmdline(pid)
        http = int(cmd[cmd.index("--port") + 1])
        grpc = int(env["GRPC_PORT"])
    except (OSError, ValueError, KeyError, IndexError):
        return None
    ports = {"http": http, "grpc": grpc}
    for name, key in (("gossip", "CLUSTER_GOSSIP_BIND_PORT"), ("data", "CLUSTER_DATA_BIND_PORT"),
                      ("raft", "RAFT_PORT"), ("raft_rpc", "RAFT_INTERNAL_RPC_PORT")):
        if env.get(key, "").isdigit():
            ports[name] = int(env[key])
    return ServerInfo(pid=pid, http_port=http, grpc_port=grpc, ports=ports,
                      version=env.get("VECFACE_WEAVIATE_VERSION", "?"), data_path=env["PERSISTENCE_DATA_PATH"],
                      log_path=str(log_path), name=env.get("CLUSTER_HOSTNAME", NODE_NAME), ready=False)


# ====================================================================== the single server

def _start(home: Path, binary: Path, version: str, *, detach: bool) -> tuple[ServerInfo, subprocess.Popen]:
    data_path, log_path = home / "data", home / "weaviate.log"
    ports_file = home / "ports.json"  # the same ports again after a restart, where still free
    try:
        old_ports = json.loads(ports_file.read_text())
    except (OSError, ValueError):
        old_ports = None
    record = _record(home)
    why = ""
    for attempt in range(3):
        ports = node_ports(old_ports if attempt == 0 else None)
        ports_file.write_text(json.dumps(ports))
        info = ServerInfo(pid=0, http_port=ports["http"], grpc_port=ports["grpc"], ports=ports, version=version,
                          data_path=str(data_path), log_path=str(log_path), detached=detach, ready=False,
                          owner=None if detach else os.getpid())
        proc = spawn(binary, info, node_env(data_path, ports, version=version), home)
        record.write(asdict(info))  # recorded before the wait: a killed client leaves no orphan
        why = _server.wait_until(lambda: is_ready(info.http_port, timeout=1.0), READY_TIMEOUT_S,
                                 alive=lambda: proc.poll() is None)
        if why is None:
            info.ready = True
            record.write(asdict(info))
            return info, proc
        if why == "timed out":
            _server.terminate(proc)
            record.clear()
            why = f"was not ready after {READY_TIMEOUT_S:.0f} s"
            break
        record.clear()
        why = f"exited with status {proc.returncode}"  # most likely a port taken meanwhile: try fresh ports
    raise BackendUnavailable(
        f"the local Weaviate server ({binary}) {why}; its log is {log_path}:\n{_server.log_tail(log_path)}")


def _adopt(home: Path) -> ServerInfo | None:
    """The one server on ``home``'s data directory, recorded or not, once it is ready (None if none).
    Further servers on the same data directory are stopped. Call under the start lock."""
    record = _record(home)
    info = ServerInfo.from_doc(record.read())
    pids = processes_on(home / "data")
    if info is not None and not (info.pid in pids or (not pids and _server.pid_alive(info.pid))):
        info = None  # the recorded one is gone
    if info is None and pids:
        info = info_from_process(pids[0], home / "weaviate.log")
    _server.terminate_all([p for p in pids if info is None or p != info.pid])
    if info is None:
        record.clear()
        return None
    if not info.ready:  # its starter died while waiting for it: finish the wait
        why = _server.wait_until(lambda: is_ready(info.http_port, timeout=1.0), READY_TIMEOUT_S,
                                 alive=lambda: _server.pid_alive(info.pid))
        if why is not None:
            _server.terminate(info.pid)
            record.clear()
            return None
        info.ready = True
    if not info.detached and (info.owner is None or not _server.pid_alive(info.owner)):
        info.owner = os.getpid()  # nobody left to stop it: this process adopts it
    record.write(asdict(info))
    return info


#: called with the new server's info after it was started on data whose previous server died
#: (killed, crashed: its record was never cleared by a clean stop); the Weaviate store registers
#: its index check-and-repair here (weaviate_check.repair_all)
after_crash_restart: list[Callable[[ServerInfo], None]] = []
DIED_MARKER = "died"  # in the server's home: its last server died before it was stopped


def _start_or_attach(home: Path, version: str, detach: bool) -> _server.Handle[ServerInfo]:
    home.mkdir(parents=True, exist_ok=True)
    with _server.interprocess_lock(home / "start.lock"):  # one server per data directory, whoever starts it
        prior = ServerInfo.from_doc(_record(home).read())
        info = _adopt(home)
        if info is not None:
            if detach and not info.detached:
                info.detached, info.owner = True, None
                _record(home).write(asdict(info))
            return _server.Handle(info, owned=info.owner == os.getpid())
        binary = find_binary(version)
        if binary is None:
            raise BackendUnavailable(
                f"the Weaviate {version} server is not installed (looked for {binary_path(version)}); "
                f"build it with: vecface weaviate install\n{NO_SERVER_HELP}")
        info, proc = _start(home, binary, version, detach=detach)
        died = home / DIED_MARKER
        if died.exists() or (prior is not None and prior.ready and not _server.pid_alive(prior.pid)):
            for hook in after_crash_restart:
                hook(info)
            died.unlink(missing_ok=True)
        return _server.Handle(info, owned=not detach, extra={"proc": proc})


def _stop(home: Path, handle: _server.Handle[ServerInfo]) -> None:
    if not handle.owned:
        return
    proc = handle.extra.get("proc")
    died = proc is None and not _server.pid_alive(handle.info.pid)
    _server.terminate(proc or handle.info.pid)
    if died or (proc is not None and proc.returncode not in (0, -signal.SIGTERM)):
        (home / DIED_MARKER).touch()  # it died (was killed) before this stop: the next start runs after_crash_restart
    record = _record(home)
    current = ServerInfo.from_doc(record.read())
    if current is None or current.pid == handle.info.pid:
        record.clear()


def _alive(handle: _server.Handle[ServerInfo]) -> bool:
    return _server.pid_alive(handle.info.pid)


_supervisor: _server.Supervisor[ServerInfo] = _server.Supervisor(_start_or_attach, _stop, _alive)


def acquire(data_dir: str | os.PathLike[str] | None = None, *, version: str = PINNED_VERSION,
            detach: bool = False) -> ServerInfo:
    """Start (or reuse, or adopt) the local server for ``data_dir``; return where it listens.

    Every call must be paired with :func:`release`, except with ``detach=True``, which leaves the
    server running after this process (until :func:`stop_server`).
    """
    home = home_for(data_dir)
    if not detach:
        return _supervisor.acquire(home, version, False).info
    with _supervisor.lock:  # detached: no handle to release; a handle this process holds stops owning it
        info = _start_or_attach(home, version, True).info
        held = _supervisor.held(home)
        if held is not None:
            held.info, held.owned = info, False
        return info


def release(data_dir: str | os.PathLike[str] | None = None) -> None:
    """Drop one handle; the last one stops the server if this process started or adopted it."""
    _supervisor.release(home_for(data_dir))


def running(data_dir: str | os.PathLike[str] | None = None) -> ServerInfo | None:
    """The server for ``data_dir`` if one is up and ready (started by this or another process)."""
    home = home_for(data_dir)
    handle = _supervisor.held(home)
    if handle is not None:
        return handle.info
    info = ServerInfo.from_doc(_record(home).read())
    if info and _server.pid_alive(info.pid) and is_ready(info.http_port):
        return info
    return None


@dataclass
class Status:
    """The truth about a data directory: the recorded server and any other weaviate-server on it."""
    recorded: ServerInfo | None
    alive: bool
    ready: bool
    unrecorded: list[int] = field(default_factory=list)


def status(data_dir: str | os.PathLike[str] | None = None) -> Status:
    home = home_for(data_dir)
    info = ServerInfo.from_doc(_record(home).read())
    alive = info is not None and _server.pid_alive(info.pid)
    ready = alive and is_ready(info.http_port)
    pids = processes_on(home / "data")
    return Status(info, alive, ready, [p for p in pids if info is None or p != info.pid])


def stop_server(data_dir: str | os.PathLike[str] | None = None) -> bool:
    """Stop every server on ``data_dir``, whoever started it, recorded or not. Returns whether one ran."""
    home = home_for(data_dir)
    with _supervisor.lock:
        _supervisor.forget(home)
        with _server.interprocess_lock(home / "start.lock"):
            info = ServerInfo.from_doc(_record(home).read())
            pids = set(processes_on(home / "data"))
            if info is not None and _server.pid_alive(info.pid):
                pids.add(info.pid)
            _server.terminate_all(pids)
            _record(home).clear()
    return bool(pids)
