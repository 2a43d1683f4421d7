"""What every local server vecface runs has in common: one supervisor base.

- :class:`Supervisor`: reference-counted handles per home directory within a process (the first
  ``acquire`` starts or attaches, the last ``release`` stops what this process owns, an ``atexit``
  hook stops the rest);
- :class:`StateFile`: a JSON record of the server processes on a home directory, written *before*
  vecface waits for them, so that a client killed while its server starts leaves a recorded
  server, never an orphan;
- :func:`processes_on`: the processes of a given program working on a given data directory, found
  in ``/proc`` (what was recorded is not trusted alone: an orphan is found by its data directory);
- :func:`wait_until`, :func:`terminate`, :func:`free_ports`, :func:`log_tail`,
  :func:`interprocess_lock`: readiness waits, stopping, ports, logs and start-up locking.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import socket
import subprocess
import threading
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Generic, Iterable, Iterator, TypeVar

STOP_TIMEOUT_S = 60.0

T = TypeVar("T")


# ====================================================================== processes

_children: dict[int, subprocess.Popen] = {}  # servers this process spawned and may outlive


def track(proc: subprocess.Popen) -> subprocess.Popen:
    """Keep a spawned server's Popen, so that it is reaped when it exits (no zombie, no
    "still running" warning when a detached server outlives the object)."""
    _children[proc.pid] = proc
    return proc


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not count)."""
    child = _children.get(pid)
    if child is not None:
        return child.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    fields = proc_stat(pid)
    return not fields or fields[0] != "Z"  # no /proc here: trust kill(0)


def proc_stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (state, parent pid, ...; man 5
    proc numbers them from 3); None where there is none (the process is gone, or no /proc)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None


def terminate(proc: subprocess.Popen | int, timeout: float = STOP_TIMEOUT_S, sig: int = signal.SIGTERM) -> None:
    """Send ``sig`` (a clean shutdown), wait up to ``timeout``, SIGKILL as a last resort."""
    if isinstance(proc, subprocess.Popen):
        _children.pop(proc.pid, None)
        if proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        return
    if proc in _children:
        terminate(_children.pop(proc), timeout, sig)
        return
    try:
        os.kill(proc, sig)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and pid_alive(proc):
        time.sleep(0.1)
    if pid_alive(proc):
        try:
            os.kill(proc, signal.SIGKILL)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and pid_alive(proc):
            time.sleep(0.05)


def terminate_all(pids: Iterable[int], timeout: float = STOP_TIMEOUT_S, sig: int = signal.SIGTERM) -> None:
    """:func:`terminate` several processes at once (each shutdown can take seconds)."""
    threads = [threading.Thread(target=terminate, args=(p, timeout, sig)) for p in pids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def proc_cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")


def proc_environ(pid: int) -> dict[str, str]:
    """The environment ``pid`` was started with ({} when it cannot be read)."""
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
    except OSError:
        return {}
    return dict(kv.split("=", 1) for kv in raw.split("\0") if "=" in kv)


def processes_on(program: str, data_path: str | os.PathLike[str], *, env_key: str | None = None,
                 arg: str | None = None) -> list[int]:
    """Pids of running ``program`` processes (by executable name) working on ``data_path``: the
    path is the value of the environment variable ``env_key``, or the argument after ``arg`` on
    the command line. Linux only (/proc); elsewhere an empty list."""
    want = os.path.realpath(data_path)
    found = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        pid = int(entry)
        try:
            cmd = proc_cmdline(pid)
        except OSError:
            continue
        if not cmd or os.path.basename(cmd[0]) != program or not pid_alive(pid):
            continue
        paths = []
        if env_key:
            paths.append(proc_environ(pid).get(env_key, ""))
        if arg and arg in cmd[:-1]:
            paths.append(cmd[cmd.index(arg) + 1])
        if any(p and os.path.realpath(p) == want for p in paths):
            found.append(pid)
    return sorted(found)


# ====================================================================== waiting, ports, logs

def wait_until(ready: Callable[[], bool], timeout: float, *, alive: Callable[[], bool] | None = None,
               poll: float = 0.2) -> str | None:
    """Poll ``ready`` until it holds; None when it did, else why not ("exited" or "timed out")."""
    deadline = time.monotonic() + timeout
    while True:
        if alive is not None and not alive():
            return "exited"
        if ready():
            return None
        if time.monotonic() >= deadline:
            return "timed out"
        time.sleep(poll)


def free_ports(names: Iterable[str], wanted: dict[str, int] | None = None, *,
               pairs: Iterable[str] = ()) -> dict[str, int]:
    """One free loopback port per name (reusing the ``wanted`` ones still free). For a name in
    ``pairs`` the port after it is free too (and reserved under ``<name>_next``)."""
    pairs = set(pairs)
    out: dict[str, int] = {}
    taken: set[int] = set()
    with ExitStack() as stack:
        def bind(port: int) -> int | None:
            s = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return None
            got = s.getsockname()[1]
            taken.add(got)
            return got

        for name in names:
            want = (wanted or {}).get(name, 0)
            for attempt in range(200):
                first = want if attempt == 0 and want and want not in taken else 0
                port = bind(first) or bind(0)
                if port is None:
                    continue
                if name not in pairs:
                    break
                if port + 1 not in taken and bind(port + 1):
                    out[name + "_next"] = port + 1
                    break
            else:  # pragma: no cover
                raise OSError(f"no free loopback port for {name}")
            out[name] = port
    return out


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@contextmanager
def interprocess_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` between processes (released when the holder dies, too)."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# ====================================================================== the record

class StateFile:
    """A JSON document written atomically (a reader never sees half of it)."""

    def __init__(self, path: Path):
        self.path = path

    def read(self) -> Any:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None

    def write(self, doc: Any) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(doc, indent=1))
        os.replace(tmp, self.path)

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


# ====================================================================== ref-counted handles

@dataclass
class Handle(Generic[T]):
    """One server as this process holds it: what ``start`` returned, and how many users."""
    info: T
    owned: bool  # whether this process stops it when the last user lets go
    refs: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class Supervisor(Generic[T]):
    """Reference-counted local servers of one kind in this process, keyed by their home directory.

    ``start(home, *args) -> Handle`` starts a server or attaches to a running one (under the caller's own
    inter-process lock); ``stop(home, handle)`` stops or detaches it; ``alive(handle)`` says
    whether a held server still runs (a dead one is started again on the next ``acquire``, and
    the handles already out refer to the new one).
    """

    def __init__(self, start: Callable[..., Handle[T]], stop: Callable[[Path, Handle[T]], None],
                 alive: Callable[[Handle[T]], bool] = lambda h: True):
        self._start, self._stop, self._alive = start, stop, alive
        self._lock = threading.RLock()
        self._handles: dict[Path, Handle[T]] = {}
        atexit.register(self.stop_all)

    def acquire(self, home: Path, *args: Any) -> Handle[T]:
        with self._lock:
            handle = self._handles.get(home)
            if handle is None or not self._alive(handle):
                new = self._start(home, *args)
                if handle is not None:
                    new.refs = handle.refs
                handle = self._handles[home] = new
            handle.refs += 1
            return handle

    def release(self, home: Path) -> None:
        with self._lock:
            handle = self._handles.get(home)
            if handle is None:
                return
            handle.refs -= 1
            if handle.refs <= 0:
                del self._handles[home]
                self._stop(home, handle)

    def held(self, home: Path) -> Handle[T] | None:
        with self._lock:
            handle = self._handles.get(home)
            return handle if handle is not None and self._alive(handle) else None

    def forget(self, home: Path) -> Handle[T] | None:
        """Drop this process's handle without stopping anything (the caller stops the server)."""
        with self._lock:
            return self._handles.pop(home, None)

    @property
    def lock(self) -> threading.RLock:
        return self._lock

    def stop_all(self) -> None:
        with self._lock:
            for home, handle in list(self._handles.items()):
                try:
                    self._stop(home, handle)
                except Exception:  # pragma: no cover - best effort at exit
                    pass
            self._handles.clear()
