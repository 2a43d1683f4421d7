"""Several processes on one FAISS collection (issue 14, item 1), and commits that survive SIGKILL.

Every other process here is a real Python subprocess working on the same directory, bounded in
time and killed on failure.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

import vecface
from vecface import HNSW, Record
from vecface.errors import CollectionBusy

from .conftest import clustered
from .faiss_checks import searchable

DIM = 16
TIMEOUT = 60


def _vectors(n: int, seed: int) -> np.ndarray:
    return clustered(n, DIM, seed=seed)


def _spawn(root: Path, body: str) -> subprocess.Popen:
    """A python subprocess with ``store`` bound to collection ``c`` under ``root``; it talks by lines."""
    code = textwrap.dedent(f"""
        import sys, numpy as np, vecface
        from vecface import Record
        def say(*a):
            print(*a, flush=True)
        def wait_line():
            return sys.stdin.readline().strip()
        from tests.conftest import clustered
        store = vecface.open_store("faiss", "c", path={str(root)!r})
    """) + textwrap.dedent(body)
    return subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[1])


def _expect(proc: subprocess.Popen, want: str) -> str:
    line = proc.stdout.readline().strip()
    if line != want:
        proc.kill()
        raise AssertionError(f"subprocess said {line!r}, expected {want!r}; stderr: {proc.stderr.read()}")
    return line


def _finish(proc: subprocess.Popen) -> None:
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err


@contextmanager
def _killed_after(proc: subprocess.Popen, lines: list[str]) -> Iterator[None]:
    """Wait for ``lines`` from ``proc``, run the block, then SIGKILL it (killed on any failure too)."""
    try:
        for want in lines:
            assert proc.stdout.readline().strip() == want
        yield
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _make(root: Path, n: int = 10, index=HNSW(m=8, ef_construction=40)) -> np.ndarray:
    x = _vectors(n, seed=1)
    with vecface.open_store("faiss", "c", DIM, "cosine", path=root) as s:
        s.upsert([Record(f"a{i}", v, {"tag": "first"}) for i, v in enumerate(x)])
        s.build_index(index)
    return x


@pytest.mark.parametrize("last", ["reader", "writer"])
def test_reader_open_while_another_process_writes(tmp_path, last):
    _make(tmp_path)
    reader = vecface.open_store("faiss", "c", path=tmp_path)
    assert reader.count() == 10
    writer = _spawn(tmp_path, """
        x = clustered(10, 16, seed=2)
        store.upsert([Record(f"b{i}", v, {"tag": "second"}) for i, v in enumerate(x)])
        say("upserted")
        if wait_line() == "close":
            store.close()
        say("closed")
    """)
    try:
        _expect(writer, "upserted")
        # the reader notices the other process's commit without reopening
        assert reader.count() == 20
        assert len(reader.search(np.ones(DIM), k=20)) == 20
        assert len(reader.search(np.ones(DIM), k=20, filter={"tag": "second"})) == 10
        if last == "reader":
            writer.stdin.write("close\n")
            writer.stdin.flush()
            _expect(writer, "closed")
            _finish(writer)
            reader.close()
        else:
            reader.close()
            writer.stdin.write("close\n")
            writer.stdin.flush()
            _expect(writer, "closed")
            _finish(writer)
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
        reader.close()
    assert searchable(tmp_path) == (20, 20)


def test_concurrent_closes_do_not_raise(tmp_path):
    _make(tmp_path, n=50)
    go = tmp_path / "go"
    procs = [_spawn(tmp_path, f"""
        import os, time
        x = clustered(5, 16, seed={10 + p})
        store.upsert([Record(f"p{p}_{{i}}", v, {{}}) for i, v in enumerate(x)])
        say("ready")
        deadline = time.monotonic() + 30
        while not os.path.exists({str(go)!r}) and time.monotonic() < deadline:
            time.sleep(0.001)
        store.close()
        say("closed")
    """) for p in range(4)]
    try:
        for p in procs:
            _expect(p, "ready")
        go.touch()
        for p in procs:
            _expect(p, "closed")
            _finish(p)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert searchable(tmp_path) == (70, 70)
    assert not [p.name for p in tmp_path.joinpath("c").iterdir() if p.name.endswith(".tmp")]


def test_reader_gets_k_hits_while_another_process_writes(tmp_path):
    _make(tmp_path, n=100)
    writer = _spawn(tmp_path, """
        import time
        say("start")
        deadline, i = time.monotonic() + 3, 0
        while time.monotonic() < deadline:
            x = clustered(50, 16, seed=100 + i)
            store.upsert([Record(f"w{i}_{j}", v, {"tag": "w"}) for j, v in enumerate(x)])
            store.delete([f"w{i - 1}_{j}" for j in range(0, 50, 2)])  # replaced and deleted slots too
            store.upsert([Record(f"a{j}", v, {"tag": "first"}) for j, v in enumerate(clustered(5, 16, seed=i))])
            i += 1
        store.close()
        say("done", i)
    """)
    short, searches = 0, 0
    try:
        _expect(writer, "start")
        with vecface.open_store("faiss", "c", path=tmp_path) as reader:
            rng = np.random.default_rng(0)
            while writer.poll() is None and searches < 20_000:
                hits = reader.search(rng.normal(size=DIM), k=10)
                short += len(hits) != 10 or len({h.id for h in hits}) != 10
                searches += 1
            line = writer.stdout.readline().split()
            assert line and line[0] == "done", writer.stderr.read()
            reader_count = reader.count()
        _finish(writer)
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
    assert searches > 0 and short == 0, f"{short} of {searches} searches returned fewer than k distinct hits"
    count, found = searchable(tmp_path)
    assert count == found == reader_count


def test_second_writer_waits_then_gets_a_clear_error(tmp_path):
    _make(tmp_path)
    lock_path = tmp_path / "c" / "writer.lock"
    with vecface.open_store("faiss", "c", path=tmp_path, lock_timeout=0.3) as s:
        fd = os.open(lock_path, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # another writer holds the collection
            with pytest.raises(CollectionBusy, match="another process is writing"):
                s.upsert([Record("late", np.ones(DIM))])
            with pytest.raises(CollectionBusy):
                s.delete(["a1"])
            assert s.count() == 10 and s.get("late") == []
            assert len(s.search(np.ones(DIM), k=5)) == 5  # readers never wait for the writer
        finally:
            os.close(fd)
    # a writer that frees the lock within the bound is waited for
    with vecface.open_store("faiss", "c", path=tmp_path, lock_timeout=30) as s:
        fd = os.open(lock_path, os.O_RDWR)
        fcntl.flock(fd, fcntl.LOCK_EX)
        threading.Timer(0.2, os.close, [fd]).start()
        s.upsert([Record("late", np.ones(DIM))])
        assert s.count() == 11


def test_committed_writes_survive_sigkill(tmp_path):
    _make(tmp_path, index=HNSW(m=8, ef_construction=40))
    writer = _spawn(tmp_path, """
        for b in range(1000):
            x = clustered(200, 16, seed=b)
            store.upsert_arrays([f"k{b}_{i}" for i in range(200)], x, [{"tag": "k", "b": b}] * 200)
            say(b)
    """)
    with _killed_after(writer, [str(b) for b in range(5)]):  # right after the 5th batch's commit returned
        pass
    with vecface.open_store("faiss", "c", path=tmp_path) as s:
        n = s.count()
        assert 10 + 5 * 200 <= n and (n - 10) % 200 == 0  # whole batches: committed or not at all
        want = [f"k{b}_{i}" for b in range(5) for i in range(200)]
        got = s.get(want)
        assert [r.id for r in got] == want
        s.set_query_params(ef_search=100)
        assert sum(s.search(r.vector, k=1)[0].id == r.id for r in got[::20]) == len(got[::20])
        # the next writer overwrites whatever the killed one left after the last committed slot
        s.upsert([Record("after", np.ones(DIM), {"tag": "after"})])
    assert searchable(tmp_path) == (n + 1, n + 1)


def test_sigkill_during_a_many_batch_call_keeps_whole_batches(tmp_path):
    """A writer killed in the middle of upsert calls of 20 batches each (the next batch's vectors
    being written while one commits): every record there has its own vector, they come in whole
    batches, and the next writer carries on."""
    with vecface.open_store("faiss", "c", DIM, path=tmp_path):
        pass
    writer = _spawn(tmp_path, """
        for call in range(10_000):
            ids = [f"c{call}_{i}" for i in range(2000)]
            store.upsert_arrays(ids, clustered(2000, 16, seed=call), batch_size=100)
            say(call)
    """)
    with _killed_after(writer, ["0"]):
        time.sleep(0.05)  # somewhere inside a later call
    with vecface.open_store("faiss", "c", path=tmp_path) as s:
        n = s.count()
        assert n >= 2000 and n % 100 == 0
        want = {f"c{c}_{i}": v for c in range(-(-n // 2000)) for i, v in enumerate(_vectors(2000, seed=c))}
        got = s.get(list(want))
        assert len(got) == n
        for r in got:
            np.testing.assert_allclose(r.vector, want[r.id] / np.linalg.norm(want[r.id]), atol=1e-5)
        s.upsert([Record("after", np.ones(DIM))])
    assert searchable(tmp_path) == (n + 1, n + 1)
