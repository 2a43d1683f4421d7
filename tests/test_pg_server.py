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
