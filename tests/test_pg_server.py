"""The embedded PostgreSQL: started on demand, shared, and stopped by the last user."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

import psutil

from vecface.backends import pg_server


def _running(pgdata) -> bool:
    pid_file = pgdata / "postmaster.pid"
    if not pid_file.exists():
        return False
    pid = int(pid_file.read_text().split()[0])
    return psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE


def test_server_stops_even_after_a_user_was_killed(tmp_path):
    """A process killed with SIGKILL never unregisters itself; the last live user still stops
    the server instead of leaving it running forever."""
    data = tmp_path / "home"
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time, vecface
        s = vecface.open_store("pgvector", "killed", 4, data_dir={str(data)!r})
        s.upsert_arrays(["a"], [[1, 2, 3, 4]])
        print("ready", flush=True)
        time.sleep(120)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        pgdata = pg_server.pgdata_for(data)
        assert _running(pgdata)
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        # this process joins the server the killed one started, and the data is there
        import vecface

        with vecface.open_store("pgvector", "killed", data_dir=str(data)) as s:
            assert s.count() == 1
        deadline = time.time() + 15
        while _running(pgdata) and time.time() < deadline:
            time.sleep(0.2)
        assert not _running(pgdata)
    finally:
        if child.poll() is None:
            child.kill()


def test_a_client_killed_while_its_server_starts_leaves_one_usable_server(tmp_path):
    """The client dies between spawning the postmaster and its being ready: the next user finds
    the server PostgreSQL recorded (postmaster.pid), waits for it, and no second one starts."""
    data = tmp_path / "home"
    pgdata = pg_server.pgdata_for(data)
    pg_server.acquire(data)  # initdb first (its bootstrap run writes a postmaster.pid too)
    pg_server.release(data)
    assert pg_server.postmaster(pgdata) is None
    code = "import sys, time; from vecface.backends import pg_server; pg_server.acquire(sys.argv[1]); time.sleep(120)"
    child = subprocess.Popen([sys.executable, "-c", code, str(data)])
    try:
        deadline = time.time() + 120
        while not (pgdata / "postmaster.pid").exists() and time.time() < deadline and child.poll() is None:
            time.sleep(0.02)
        assert (pgdata / "postmaster.pid").exists(), "the child never started a server"
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        st = pg_server.status(data)
        assert st.recorded is not None and st.unrecorded == []
        uri = pg_server.acquire(data)
        try:
            import psycopg

            with psycopg.connect(uri) as conn:
                assert conn.execute("SELECT 1").fetchone() == (1,)
            assert pg_server.postmasters_on(pgdata) == [pg_server.postmaster(pgdata).pid]
        finally:
            pg_server.release(data)
        deadline = time.time() + 15
        while pg_server.postmasters_on(pgdata) and time.time() < deadline:
            time.sleep(0.2)
        assert pg_server.postmasters_on(pgdata) == []  # the last user stopped it: nothing left running
    finally:
        if child.poll() is None:
            child.kill()
        pg_server.stop_server(data)


def test_detached_start_outlives_its_users_and_stop_stops_it(tmp_path):
    data = tmp_path / "home"
    pgdata = pg_server.pgdata_for(data)
    try:
        pg_server.acquire(data, detach=True)
        pid = pg_server.postmaster(pgdata).pid
        pg_server.acquire(data)
        pg_server.release(data)  # the last handle: a detached server keeps running
        assert pg_server.status(data).detached and _running(pgdata)
        assert pg_server.postmaster(pgdata).pid == pid
        assert pg_server.stop_server(data)
        assert pg_server.status(data).recorded is None and not pg_server.postmasters_on(pgdata)
    finally:
        pg_server.stop_server(data)


def test_a_second_user_starting_up_never_cancels_another_users_new_connections(tmp_path):
    """A backend that has just been forked still carries its postmaster's command line (``postgres
    -D <pgdata>``) for a moment; a process that starts using the server (``settle``) must not take
    it for a stray postmaster and signal it, which cancels that client's connection."""
    data = tmp_path / "home"
    pgdata = pg_server.pgdata_for(data)
    uri = pg_server.acquire(data)
    code = textwrap.dedent("""
        import sys, time, psycopg
        deadline, n = time.time() + 6, 0
        while time.time() < deadline:
            with psycopg.connect(sys.argv[1], connect_timeout=10) as conn:
                conn.execute("SELECT 1")
            n += 1
        print(n, flush=True)
    """)
    child = subprocess.Popen([sys.executable, "-c", code, uri], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    try:
        deadline = time.time() + 6
        while child.poll() is None and time.time() < deadline:
            pg_server.settle(pgdata)  # what every process runs before it uses the server
        out, err = child.communicate(timeout=60)
        assert child.returncode == 0, err[-2000:]
        assert int(out) > 10  # it kept connecting all along
        assert pg_server.postmasters_on(pgdata) == [pg_server.postmaster(pgdata).pid]
    finally:
        if child.poll() is None:
            child.kill()
        pg_server.release(data)
        pg_server.stop_server(data)
