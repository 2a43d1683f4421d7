"""Connections of the pgvector backend: opening one (embedded server or a DSN), turning psycopg's
errors into vecface's (one pattern, used by every method), and routing reads over replicas.

``Router`` holds the primary connection (writes, index builds, catalog) and, when read DSNs are
given, one connection per hot standby. Searches go round-robin over the standbys; one that cannot
be reached is set aside for a while and the search runs on the primary instead. With
``read_your_writes`` a search on a standby first waits until the standby has replayed the WAL
position of this store's last write (``pg_last_wal_replay_lsn``), or goes to the primary.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import threading
import time
from typing import Any, Callable, Iterator, TypeVar

import psycopg
from pgvector.psycopg import register_vector

from vecface.config import redact
from vecface.errors import BackendError, BackendUnavailable, VecfaceError

from . import pg_server

F = TypeVar("F", bound=Callable[..., Any])

#: how long a standby that failed is left out before it is tried again, seconds
RETRY_DOWN_AFTER = 5.0
#: how long a read-your-writes search waits for a standby to catch up before using the primary
CATCH_UP_WAIT = 2.0


def as_vecface_error(e: psycopg.Error, what: str) -> VecfaceError:
    """The vecface error for a psycopg error: lost or refused connections (no SQLSTATE, class 08,
    a server shutting down 57P) are BackendUnavailable; everything else the server refused is
    BackendError. The message is redacted (no password from a DSN)."""
    state = getattr(e, "sqlstate", None) or ""
    text = f"pgvector {what} failed: {redact(str(e)).strip()}"
    if isinstance(e, psycopg.OperationalError) and (not state or state.startswith(("08", "57P"))):
        return BackendUnavailable(text)
    return BackendError(text)


def converts_errors(what: str) -> Callable[[F], F]:
    """Decorator: every psycopg error raised inside becomes a vecface error (see as_vecface_error)."""
    def deco(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except psycopg.Error as e:
                raise as_vecface_error(e, what) from e
        return wrapper  # type: ignore[return-value]
    return deco


def open_connection(dsn: str | None, data_dir: Any) -> tuple[psycopg.Connection, bool, str]:
    """A connection with the pgvector types registered: to ``dsn``, or to the embedded server for
    ``data_dir`` (started on demand; ``True`` is returned as the second item, the caller then
    releases it with :func:`close_connection`), and the URI it connected to."""
    embedded = dsn is None
    uri = pg_server.acquire(data_dir) if embedded else dsn
    try:
        conn = psycopg.connect(uri, autocommit=True, connect_timeout=10)
    except psycopg.Error as e:
        if embedded:
            pg_server.release(data_dir)
        where = "the embedded PostgreSQL" if embedded else f"PostgreSQL at {redact(uri)}"
        raise BackendUnavailable(f"cannot connect to {where}: {redact(str(e)).strip()}") from None
    try:
        if conn.execute("SELECT pg_is_in_recovery()").fetchone()[0] is False:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        register_vector(conn)
    except psycopg.Error as e:
        conn.close()
        if embedded:
            pg_server.release(data_dir)
        raise BackendUnavailable(
            f"the pgvector extension is not available on that server: {redact(str(e)).strip()}") from None
    return conn, embedded, uri


def close_connection(conn: psycopg.Connection | None, embedded: bool, data_dir: Any) -> None:
    if conn is None:
        return
    try:
        conn.close()
    finally:
        if embedded:
            pg_server.release(data_dir)


def dsn_or_env(dsn: str | None) -> str | None:
    """The PostgreSQL to use: ``dsn``, else $VECFACE_PG_DSN, else None (the embedded server)."""
    return dsn or os.environ.get("VECFACE_PG_DSN") or None


@contextlib.contextmanager
def session(dsn: str | None, data_dir: Any) -> Iterator[psycopg.Connection]:
    """A connection for a few statements (:func:`open_connection`), closed afterwards, and the
    embedded server released when it was the one used. ``dsn`` as :func:`dsn_or_env` reads it."""
    conn, embedded, _ = open_connection(dsn_or_env(dsn), data_dir)
    try:
        yield conn
    finally:
        close_connection(conn, embedded, data_dir)


def versions(conn: psycopg.Connection) -> dict[str, str]:
    row = conn.execute("SELECT current_setting('server_version'), "
                       "(SELECT extversion FROM pg_extension WHERE extname = 'vector')").fetchone()
    return {"postgresql": row[0].split()[0], "pgvector": row[1]}


class _Replica:
    def __init__(self, dsn: str):
        self.dsn = dsn
        self.conn: psycopg.Connection | None = None
        self.down_until = 0.0
        self.settings: Any = None  # what was last applied to this connection (see Router.run_read)

    def drop_connection(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except psycopg.Error:
                pass
        self.conn = None


class Router:
    """The primary connection plus optional read replicas (see the module docstring)."""

    def __init__(self, dsn: str | None, data_dir: Any, read_dsns: list[str] | None = None,
                 read_your_writes: bool = False):
        self.data_dir = data_dir
        self.primary, self.embedded, self.uri = open_connection(dsn, data_dir)
        self.primary_settings: Any = None
        self.replicas = [_Replica(d) for d in (read_dsns or [])]
        self.read_your_writes = read_your_writes
        self._turn = itertools.count()
        self._last_lsn: str | None = None
        self.lock = threading.RLock()

    def close(self) -> None:
        for r in self.replicas:
            r.drop_connection()
        close_connection(self.primary, self.embedded, self.data_dir)

    # ---- writes
    def wrote(self) -> None:
        """Call after a write committed on the primary: remembers its WAL position for read-your-writes."""
        if self.replicas and self.read_your_writes:
            self._last_lsn = str(self.primary.execute("SELECT pg_current_wal_lsn()").fetchone()[0])

    # ---- reads
    def run_read(self, fn: Callable[[psycopg.Connection], Any], apply: Callable[[psycopg.Connection, Any], Any]) -> Any:
        """``fn(conn)``'s result on the next live standby that has caught up (read-your-writes), else
        on the primary. Before it, ``apply(conn, old)`` brings the connection's session settings up
        to date from ``old`` (what was last applied to that connection) and returns what it
        applied, kept per connection. A standby that cannot be reached is set aside for
        RETRY_DOWN_AFTER seconds; one that has not replayed the collection's table yet is skipped.
        The primary's errors reach the caller."""
        for replica in self._candidates():
            try:
                conn = self._replica_conn(replica)
                if not self._caught_up(conn):
                    continue
                replica.settings = apply(conn, replica.settings)
                return fn(conn)
            except psycopg.OperationalError:
                self._set_aside(replica)
            except psycopg.errors.UndefinedTable:
                continue  # a collection the standby has not replayed yet: the primary has it
        self.primary_settings = apply(self.primary, self.primary_settings)
        return fn(self.primary)

    def _candidates(self) -> list[_Replica]:
        if not self.replicas:
            return []
        now = time.monotonic()
        start = next(self._turn) % len(self.replicas)
        order = self.replicas[start:] + self.replicas[:start]
        return [r for r in order if r.down_until <= now]

    def _replica_conn(self, replica: _Replica) -> psycopg.Connection:
        if replica.conn is None or replica.conn.closed or replica.conn.broken:
            replica.conn = psycopg.connect(replica.dsn, autocommit=True, connect_timeout=3)
            register_vector(replica.conn)
            replica.settings = None
        return replica.conn

    def _set_aside(self, replica: _Replica) -> None:
        replica.down_until = time.monotonic() + RETRY_DOWN_AFTER
        replica.drop_connection()

    def _caught_up(self, conn: psycopg.Connection) -> bool:
        if not (self.read_your_writes and self._last_lsn):
            return True
        deadline = time.monotonic() + CATCH_UP_WAIT
        while True:
            done = conn.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (self._last_lsn,)).fetchone()[0]
            if done:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)

