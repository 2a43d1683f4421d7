"""A committed load survives SIGKILL of the PostgreSQL postmaster: both write paths (several COPY
streams into an empty collection, filter btrees built after; and streams into a collection that
has rows, with merges of existing ids) are in the WAL when upsert returns."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

import psutil

import vecface
from vecface.backends import pg_server
from vecface.backends.pg_store import EMPTY_FAST_PATH_MIN_ROWS

N = EMPTY_FAST_PATH_MIN_ROWS + 500


def test_sigkill_of_the_server_right_after_a_committed_load_loses_nothing(tmp_path):
    data = tmp_path / "home"
    pgdata = pg_server.pgdata_for(data)
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time, numpy as np, vecface
        x = np.random.default_rng(0).normal(size=({N}, 8)).astype(np.float32)
        ids = [f"r{{i}}" for i in range({N})]
        s = vecface.open_store("pgvector", "fresh", 8, data_dir={str(data)!r})
        s.upsert_arrays(ids, x, [{{"tag": "t", "n": i}} for i in range({N})])   # parallel streams
        t = vecface.open_store("pgvector", "grown", 8, data_dir={str(data)!r})
        t.upsert_arrays(ids[:10], x[:10])
        t.upsert_arrays(ids, x, [{{"n": i}} for i in range({N})], batch_size=4000)  # streams + merges
        print("committed", flush=True)
        time.sleep(120)
    """)], stdout=subprocess.PIPE, text=True)
    procs: list[psutil.Process] = []
    try:
        assert child.stdout.readline().strip() == "committed"
        pm = psutil.Process(pg_server.postmaster(pgdata).pid)
        procs = [pm, *pm.children(recursive=True)]
        pm.send_signal(signal.SIGKILL)
        child.kill()
        child.wait(10)
        psutil.wait_procs(procs, timeout=30)  # the backends notice their postmaster died and exit
        deadline = time.time() + 60
        while True:  # a restart runs crash recovery from the WAL
            try:
                fresh = vecface.open_store("pgvector", "fresh", data_dir=str(data))
                break
            except vecface.BackendUnavailable:
                if time.time() > deadline:
                    raise
                time.sleep(1)
        with fresh, vecface.open_store("pgvector", "grown", data_dir=str(data)) as grown:
            assert fresh.count() == N and grown.count() == N
            assert [r.metadata["n"] for r in fresh.get(["r0", f"r{N - 1}"])] == [0, N - 1]
            assert [r.metadata["n"] for r in grown.get(["r3", f"r{N - 1}"])] == [3, N - 1]
    finally:
        if child.poll() is None:
            child.kill()
        for p in procs:
            if p.is_running():
                p.kill()
