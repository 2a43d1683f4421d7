"""The local Weaviate server: built from source with the Go toolchain, run by a small supervisor.

Getting the binary (:func:`install`)
    ``go install github.com/weaviate/weaviate/cmd/weaviate-server@v<PINNED_VERSION>`` with
    ``CGO_ENABLED=0`` and ``GOBIN`` set to a per-version cache directory
    (``$VECFACE_WEAVIATE_BIN_DIR``, else ``<user cache dir>/vecface/weaviate/v<version>/``). The build
    is skipped when that binary is already there. The binary lives in the user's *cache* directory,
    not in ``$VECFACE_HOME``, so test sessions (each with a fresh ``VECFACE_HOME``) and every data
    directory share one build. Without a Go toolchain, the release archive that weaviate-client's
    embedded mode downloads is used instead (needs network access to github.com); without either,
    the error says how to get a server (Go, ``compose/docker-compose.yml``, or
    ``VECFACE_WEAVIATE_URL``).

Running it (:func:`acquire` / :func:`release`)
    vecface runs the binary itself rather than through weaviate-client's embedded mode. The
    embedded mode would find our binary if it were named ``weaviate-v<version>-<sha256>`` in its
    ``binary_path``, but it (1) ties the server's life to one client object (``client.close()`` and
    ``__del__`` stop it), while vecface shares one server between every store of a process and
    between processes (``vecface weaviate start``); (2) sends the server's output to our stdout
    instead of a log file; (3) picks ports as "random, +1, +2", which collide between concurrent
    starts; (4) waits only until the port accepts connections, not until ``/v1/.well-known/ready``;
    and (5) enables cloud vectorizer modules by default. The supervisor here is ~150 lines: free
    loopback ports for HTTP, gRPC, gossip, data, raft and raft RPC (kept across restarts where
    still free, so the single-node raft cluster finds itself again), a persistent data directory
    ``<VECFACE_HOME>/weaviate/data``, anonymous access, no modules, telemetry off, the log in
    ``<VECFACE_HOME>/weaviate/weaviate.log``, SIGTERM and wait to stop.

    A state file (``server.json``) records the running server, so another process using the same
    data directory attaches to it instead of starting a second one. Within a process, handles are
    reference-counted like the embedded PostgreSQL: the last :func:`release` stops a server this
    process started; servers started with ``detach=True`` (``vecface weaviate start``) keep running
    until :func:`stop_server` (``vecface weaviate stop``).

    The HTTP API, gossip and raft listen on 127.0.0.1, but Weaviate 1.38 binds its gRPC port and its
    internal cluster data port on all interfaces (``:<port>``; it has no setting for those
    addresses). Anonymous access is on, so on a shared host keep those ports firewalled, or run
    the compose file (loopback-only published ports) instead.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from vecface.config import data_dir as vecface_data_dir
from vecface.errors import BackendUnavailable

PINNED_VERSION = "1.38.13"
GO_PACKAGE = "github.com/weaviate/weaviate/cmd/weaviate-server"
BINARY_NAME = "weaviate-server"
NODE_NAME = "vecface"
READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 60.0

_lock = threading.RLock()
_servers: dict[Path, "_Handle"] = {}

NO_SERVER_HELP = (
    "To get a Weaviate server, either\n"
    "  - install Go (https://go.dev/dl/, 1.26 or newer) and run: vecface weaviate install\n"
    "  - run the compose file: docker compose -f compose/docker-compose.yml up -d weaviate\n"
    "    and set VECFACE_WEAVIATE_URL=http://127.0.0.1:8080 (gRPC on 50051)\n"
    "  - or point vecface at any Weaviate server: VECFACE_WEAVIATE_URL=<url> "
    "(VECFACE_WEAVIATE_GRPC_PORT, VECFACE_WEAVIATE_API_KEY)"
)


# ====================================================================== the binary

def bin_dir(version: str = PINNED_VERSION) -> Path:
    """Where the binary of ``version`` is kept: $VECFACE_WEAVIATE_BIN_DIR, else the user cache dir."""
    override = os.environ.get("VECFACE_WEAVIATE_BIN_DIR")
    if override:
        return Path(override).expanduser().resolve()
    import platformdirs

    return Path(platformdirs.user_cache_dir("vecface", appauthor=False)) / "weaviate" / f"v{version}"


def binary_path(version: str = PINNED_VERSION) -> Path:
    return bin_dir(version) / BINARY_NAME


def find_binary(version: str = PINNED_VERSION) -> Path | None:
    path = binary_path(version)
    return path if path.is_file() and os.access(path, os.X_OK) else None


@dataclass
class InstallResult:
    path: Path
    version: str
    method: str  # "cached", "go install", "download"
    seconds: float

    def describe(self) -> str:
        if self.method == "cached":
            return f"Weaviate {self.version} is already installed: {self.path}"
        return f"Weaviate {self.version} installed with {self.method} in {self.seconds:.1f} s: {self.path}"


def install(version: str = PINNED_VERSION, *, force: bool = False,
            echo: Callable[[str], None] | None = None, allow_download: bool = True) -> InstallResult:
    """Make sure the ``weaviate-server`` binary of ``version`` is in :func:`bin_dir`.

    Builds it with ``go install`` (CGO off) when Go is on PATH; otherwise downloads the release
    archive (as weaviate-client's embedded mode does) when ``allow_download``. Skips both when the
    binary is already there (``force`` rebuilds). Raises BackendUnavailable with what to do if
    neither works.
    """
    echo = echo or (lambda msg: print(msg, file=sys.stderr, flush=True))
    target = binary_path(version)
    t0 = time.perf_counter()
    if not force and find_binary(version):
        return InstallResult(target, version, "cached", time.perf_counter() - t0)
    target.parent.mkdir(parents=True, exist_ok=True)
    go = shutil.which("go")
    if go:
        _go_install(go, version, target.parent, echo)
        method = "go install"
    elif allow_download:
        echo(f"no Go toolchain on PATH; downloading the Weaviate {version} release archive instead")
        try:
            _download(version, target, echo)
        except Exception as e:
            raise BackendUnavailable(
                f"no Go toolchain on PATH to build Weaviate {version}, and downloading the release "
                f"failed ({type(e).__name__}: {e}).\n{NO_SERVER_HELP}") from None
        method = "download"
    else:
        raise BackendUnavailable(f"no Go toolchain on PATH to build Weaviate {version}.\n{NO_SERVER_HELP}")
    if not find_binary(version):
        raise BackendUnavailable(f"the Weaviate build finished but {target} is missing")
    return InstallResult(target, version, method, time.perf_counter() - t0)


def _go_install(go: str, version: str, gobin: Path, echo: Callable[[str], None]) -> None:
    env = dict(os.environ, CGO_ENABLED="0", GOBIN=str(gobin))
    cmd = [go, "install", f"{GO_PACKAGE}@v{version}"]
    echo(f"building Weaviate {version}: {' '.join(cmd)}  (CGO_ENABLED=0 GOBIN={gobin})")
    echo("the first build downloads ~200 modules and compiles for several minutes; later builds use Go's cache")
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    done = threading.Event()

    def heartbeat() -> None:  # go prints nothing while it compiles; show that it is alive
        while not done.wait(30):
            echo(f"  [{time.perf_counter() - t0:5.0f} s] still building ...")

    threading.Thread(target=heartbeat, daemon=True).start()
    tail: list[str] = []
    downloads = 0
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip()
            tail = (tail + [line])[-30:]
            if line.startswith("go: downloading"):
                downloads += 1
                if downloads % 25 == 1:
                    echo(f"  [{time.perf_counter() - t0:5.0f} s] {line} ({downloads} modules so far)")
            else:
                echo(f"  {line}")
        rc = proc.wait()
    finally:
        done.set()
        if proc.poll() is None:
            proc.kill()
    if rc != 0:
        raise BackendUnavailable(
            f"'go install {GO_PACKAGE}@v{version}' failed (exit {rc}):\n" + "\n".join(tail))
    echo(f"built in {time.perf_counter() - t0:.1f} s")


def _download(version: str, target: Path, echo: Callable[[str], None]) -> None:
    """Fetch the release binary the way weaviate-client's embedded mode does, then move it into place."""
    import tempfile

    from weaviate.embedded import EmbeddedOptions, EmbeddedV4

    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        emb = EmbeddedV4(EmbeddedOptions(binary_path=tmp, persistence_data_path=tmp, version=version))
        echo(f"  downloading {emb._download_url}")
        emb.ensure_weaviate_binary_exists()
        os.replace(emb._weaviate_binary_path, target)
        target.chmod(0o755)


def go_module_version(path: Path) -> str | None:
    """The weaviate module version a binary was built from (``go version -m``), if Go is here."""
    go = shutil.which("go")
    if not go:
        return None
    try:
        out = subprocess.run([go, "version", "-m", str(path)], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0] == "mod" and parts[1] == "github.com/weaviate/weaviate":
            return parts[2].lstrip("v")
    return None


# ====================================================================== the server

@dataclass
class ServerInfo:
    pid: int
    http_port: int
    grpc_port: int
    ports: dict[str, int]
    version: str
    data_path: str
    log_path: str
    detached: bool = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"


class _Handle:
    def __init__(self, info: ServerInfo, proc: subprocess.Popen | None):
        self.info = info
        self.proc = proc  # None when attached to a server another process started
        self.refs = 0


def home_for(data_dir: str | os.PathLike[str] | None) -> Path:
    return vecface_data_dir(data_dir) / "weaviate"


def _state_file(home: Path) -> Path:
    return home / "server.json"


def _read_state(home: Path) -> ServerInfo | None:
    try:
        return ServerInfo(**json.loads(_state_file(home).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _write_state(home: Path, info: ServerInfo) -> None:
    tmp = _state_file(home).with_suffix(".tmp")
    tmp.write_text(json.dumps(vars(info), indent=1))
    os.replace(tmp, _state_file(home))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, b""


def is_ready(http_port: int, timeout: float = 2.0) -> bool:
    try:
        return _http_get(f"http://127.0.0.1:{http_port}/v1/.well-known/ready", timeout)[0] == 200
    except (OSError, ValueError):
        return False


def server_version(url: str, api_key: str | None = None, timeout: float = 5.0) -> str:
    """The version a Weaviate server reports on /v1/meta."""
    req = urllib.request.Request(url.rstrip("/") + "/v1/meta")
    if api_key:
        req.add_header("Authorization", f"Bearer {api_key}")
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return str(json.loads(r.read()).get("version", "?"))


_PORT_NAMES = ("http", "grpc", "gossip", "data", "raft", "raft_rpc")


def _free_ports(wanted: dict[str, int] | None) -> dict[str, int]:
    """One free loopback port per name; reuse the ``wanted`` ones that are still free."""
    out: dict[str, int] = {}
    with ExitStack() as stack:
        for name in _PORT_NAMES:
            s = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            want = (wanted or {}).get(name, 0)
            try:
                s.bind(("127.0.0.1", want if want and want not in out.values() else 0))
            except OSError:
                s.bind(("127.0.0.1", 0))
            out[name] = s.getsockname()[1]
    return out


def _server_env(data_path: Path, ports: dict[str, int]) -> dict[str, str]:
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
        "CLUSTER_HOSTNAME": NODE_NAME,
        "CLUSTER_BIND_ADDR": "127.0.0.1",
        "CLUSTER_ADVERTISE_ADDR": "127.0.0.1",
        "CLUSTER_GOSSIP_BIND_PORT": str(ports["gossip"]),
        "CLUSTER_DATA_BIND_PORT": str(ports["data"]),
        "RAFT_PORT": str(ports["raft"]),
        "RAFT_INTERNAL_RPC_PORT": str(ports["raft_rpc"]),
        "RAFT_JOIN": f"{NODE_NAME}:{ports['raft_rpc']}",  # the port is ignored for the local node
        "RAFT_BOOTSTRAP_EXPECT": "1",
        "GO_PROFILING_DISABLE": "true",
        "PROMETHEUS_MONITORING_ENABLED": "false",
        "LOG_FORMAT": "text",
        "LOG_LEVEL": "info",
    })
    return env


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _start(home: Path, binary: Path, version: str, *, detach: bool) -> tuple[ServerInfo, subprocess.Popen]:
    data_path = home / "data"
    data_path.mkdir(parents=True, exist_ok=True)
    log_path = home / "weaviate.log"
    ports_file = home / "ports.json"  # the same ports again after a restart, where still free
    try:
        old_ports = json.loads(ports_file.read_text())
    except (OSError, ValueError):
        old_ports = None
    last_error = ""
    for attempt in range(3):
        ports = _free_ports(old_ports if attempt == 0 else None)
        ports_file.write_text(json.dumps(ports))
        cmd = [str(binary), "--host", "127.0.0.1", "--port", str(ports["http"]), "--scheme", "http",
               "--read-timeout=600s", "--write-timeout=600s"]
        with open(log_path, "ab") as log:
            log.write(f"\n==== vecface starts Weaviate {version}: ports {ports}\n".encode())
            log.flush()
            proc = subprocess.Popen(cmd, env=_server_env(data_path, ports), stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=subprocess.STDOUT, cwd=str(home),
                                    start_new_session=True)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            if is_ready(ports["http"], timeout=1.0):
                info = ServerInfo(pid=proc.pid, http_port=ports["http"], grpc_port=ports["grpc"], ports=ports,
                                  version=version, data_path=str(data_path), log_path=str(log_path),
                                  detached=detach)
                _write_state(home, info)
                return info, proc
            time.sleep(0.2)
        if proc.poll() is None:  # not ready in time: give up on this one
            _terminate(proc)
            last_error = f"was not ready after {READY_TIMEOUT_S:.0f} s"
            break
        last_error = f"exited with status {proc.returncode}"
        # most likely a port taken between choosing and binding: try fresh ports
    raise BackendUnavailable(
        f"the local Weaviate server ({binary}) {last_error}; its log is {log_path}:\n{_log_tail(log_path)}")


def _terminate(proc: subprocess.Popen | int, timeout: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM, wait for a clean shutdown (it flushes its memtables), SIGKILL as a last resort."""
    if isinstance(proc, subprocess.Popen):
        if proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        return
    pid = proc
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _pid_alive(pid):
        time.sleep(0.1)
    if _pid_alive(pid):
        os.kill(pid, signal.SIGKILL)


def _attachable(home: Path) -> ServerInfo | None:
    """A server another process (or a detached start) runs on this data directory, if it is up."""
    info = _read_state(home)
    if info and _pid_alive(info.pid) and is_ready(info.http_port):
        return info
    return None


def acquire(data_dir: str | os.PathLike[str] | None = None, *, version: str = PINNED_VERSION,
            detach: bool = False) -> ServerInfo:
    """Start (or reuse) the local server for ``data_dir``; return where it listens.

    Every call must be paired with :func:`release`.
    """
    home = home_for(data_dir)
    with _lock:
        handle = _servers.get(home)
        dead = handle is not None and handle.proc is not None and handle.proc.poll() is not None
        if handle is None or dead:
            home.mkdir(parents=True, exist_ok=True)
            with _interprocess_lock(home):  # one server per data directory, whoever starts it
                info = _attachable(home)
                proc = None
                if info is None:
                    binary = find_binary(version)
                    if binary is None:
                        raise BackendUnavailable(
                            f"the Weaviate {version} server is not installed (looked for {binary_path(version)}); "
                            f"build it with: vecface weaviate install\n{NO_SERVER_HELP}")
                    info, proc = _start(home, binary, version, detach=detach)
                    if detach:
                        proc = None  # not ours to stop
            new = _Handle(info, proc)
            if dead:  # it died under us: the handles still out there now refer to the new one
                new.refs = handle.refs
            handle = _servers[home] = new
        handle.refs += 1
        return handle.info


@contextmanager
def _interprocess_lock(home: Path) -> Iterator[None]:
    import fcntl

    with open(home / "start.lock", "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def release(data_dir: str | os.PathLike[str] | None = None) -> None:
    """Drop one handle; the last one stops the server if this process started it."""
    home = home_for(data_dir)
    with _lock:
        handle = _servers.get(home)
        if handle is None:
            return
        handle.refs -= 1
        if handle.refs <= 0:
            del _servers[home]
            if handle.proc is not None:
                _terminate(handle.proc)
                if (_read_state(home) or handle.info).pid == handle.info.pid:
                    _state_file(home).unlink(missing_ok=True)


def running(data_dir: str | os.PathLike[str] | None = None) -> ServerInfo | None:
    """The server for ``data_dir`` if one is up (started by this or another process)."""
    home = home_for(data_dir)
    with _lock:
        handle = _servers.get(home)
        if handle is not None and (handle.proc is None or handle.proc.poll() is None):
            return handle.info
    return _attachable(home)


def stop_server(data_dir: str | os.PathLike[str] | None = None) -> bool:
    """Stop the server for ``data_dir`` whoever started it. Returns whether one was running."""
    home = home_for(data_dir)
    with _lock:
        handle = _servers.pop(home, None)
        if handle is not None and handle.proc is not None:
            _terminate(handle.proc)
            _state_file(home).unlink(missing_ok=True)
            return True
        info = _read_state(home)
        if info is None or not _pid_alive(info.pid):
            _state_file(home).unlink(missing_ok=True)
            return False
        _terminate(info.pid)
        _state_file(home).unlink(missing_ok=True)
        return True


@atexit.register
def _stop_all() -> None:
    with _lock:
        for home, handle in list(_servers.items()):
            if handle.proc is not None:
                try:
                    _terminate(handle.proc)
                    _state_file(home).unlink(missing_ok=True)
                except Exception:  # pragma: no cover - best effort at exit
                    pass
        _servers.clear()


# ====================================================================== CLI

def register(app: Any) -> None:
    """Add the ``weaviate`` command group (install, start, status, stop) to a Typer app."""
    import typer

    wv = typer.Typer(help="The local Weaviate server: build it, start it, check it.", no_args_is_help=True)

    @wv.command("install")
    def install_cmd(force: bool = typer.Option(False, "--force", help="rebuild even if the binary is there"),
                    version: str = typer.Option(PINNED_VERSION, help="the Weaviate release to build")) -> None:
        """Build weaviate-server with the Go toolchain (skipped when the pinned binary is cached)."""
        try:
            res = install(version, force=force, echo=typer.echo)
        except BackendUnavailable as e:
            typer.echo(str(e), err=True)
            raise typer.Exit(1)
        typer.echo(res.describe())
        built_from = go_module_version(res.path)
        if built_from and built_from != version:
            typer.echo(f"warning: {res.path} was built from weaviate {built_from}, not {version}", err=True)
            raise typer.Exit(1)
        typer.echo(f"binary: {res.path} ({res.path.stat().st_size / 1e6:.0f} MB); "
                   f"module version: {built_from or 'unknown (no go to ask)'}; took {res.seconds:.1f} s")

    @wv.command("start")
    def start_cmd(data_dir: str = typer.Option(None, help="vecface data directory (default: VECFACE_HOME)")) -> None:
        """Start the local server in the background; vecface commands reuse it until 'stop'."""
        try:
            info = acquire(data_dir, detach=True)
        except BackendUnavailable as e:
            typer.echo(str(e), err=True)
            raise typer.Exit(1)
        typer.echo(f"Weaviate {info.version} running (pid {info.pid}): {info.url}, gRPC port {info.grpc_port}; "
                   f"data {info.data_path}; log {info.log_path}")

    @wv.command("status")
    def status_cmd(data_dir: str = typer.Option(None, help="vecface data directory (default: VECFACE_HOME)")) -> None:
        """Show whether the binary is installed and a local server is running."""
        binary = find_binary()
        typer.echo(f"binary: {binary or 'not installed (vecface weaviate install)'} (pinned {PINNED_VERSION})")
        info = running(data_dir)
        if info is None:
            typer.echo("server: not running (started on demand by the weaviate backend)")
        else:
            typer.echo(f"server: running (pid {info.pid}) at {info.url}, gRPC port {info.grpc_port}, "
                       f"version {server_version(info.url)}; log {info.log_path}")

    @wv.command("stop")
    def stop_cmd(data_dir: str = typer.Option(None, help="vecface data directory (default: VECFACE_HOME)")) -> None:
        """Stop a server started with 'vecface weaviate start'."""
        typer.echo("stopped" if stop_server(data_dir) else "no server was running")

    app.add_typer(wv, name="weaviate")
