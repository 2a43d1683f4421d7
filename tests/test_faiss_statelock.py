"""The FAISS store's in-process read/write exclusion (StateLock): searches share the state, a change
to it runs alone, and searches racing with writes in threads of one process stay correct."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

import vecface
from vecface import HNSW, Exact
from vecface.backends.faiss_files import StateLock

from .conftest import clustered

DIM = 16


def test_a_writer_never_runs_beside_a_reader():
    lock, inside, seen, errors = StateLock(), [0], [], []
    stop = time.monotonic() + 1.0

    def read() -> None:
        while time.monotonic() < stop:
            lock.acquire_read()
            try:
                inside[0] += 1
                if lock.writer and inside[0] and writing[0]:
                    errors.append("a reader ran beside the writer")
                time.sleep(0)
                inside[0] -= 1
            finally:
                lock.release_read()

    writing = [False]

    def write() -> None:
        while time.monotonic() < stop:
            with lock.write():
                writing[0] = True
                if inside[0]:
                    errors.append(f"the writer ran beside {inside[0]} readers")
                time.sleep(0.0005)
                seen.append(inside[0])
                writing[0] = False
            time.sleep(0.001)

    threads = [threading.Thread(target=read) for _ in range(4)] + [threading.Thread(target=write)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert not any(t.is_alive() for t in threads)
    assert not errors and len(seen) > 10  # the writer got in again and again, readers never beside it
    assert not lock.readers and not lock.writer


def test_a_reader_waits_for_a_writer_then_reads():
    lock, order = StateLock(), []
    with lock.write():
        t = threading.Thread(target=lambda: (lock.acquire_read(), order.append("read"), lock.release_read()))
        t.start()
        time.sleep(0.05)
        order.append("write done")
    t.join(timeout=5)
    assert order == ["write done", "read"] and not lock.readers


@pytest.mark.parametrize("spec", [Exact(), HNSW(m=8, ef_construction=40)], ids=["exact", "hnsw"])
def test_searches_in_threads_while_another_thread_writes(tmp_path, spec):
    """Each write grows the index (an IndexFlat's storage is reallocated, an HNSW graph gets new
    links) while three threads search it: every answer stays whole and sorted, and an exact index
    finds each query's own record first (an HNSW one may miss a few of 1,000 at m 8)."""
    x = clustered(3000, DIM, seed=21)
    errors: list[BaseException] = []
    with vecface.open_store("faiss", "c", DIM, "cosine", path=tmp_path) as s:
        s.upsert_arrays([f"a{i}" for i in range(1000)], x[:1000])
        s.build_index(spec)
        done = threading.Event()

        def search(seed: int) -> None:
            rng = np.random.default_rng(seed)
            try:
                while not done.is_set():
                    i = int(rng.integers(0, 1000))
                    hits = s.search(x[i], 5)
                    assert len({h.id for h in hits}) == 5 and all(0 <= int(h.id[1:]) < 3000 for h in hits)
                    assert [h.distance for h in hits] == sorted(h.distance for h in hits)
                    assert hits[0].id == f"a{i}" or isinstance(spec, HNSW)
            except BaseException as e:  # reported below
                errors.append(e)

        readers = [threading.Thread(target=search, args=(j,)) for j in range(3)]
        for t in readers:
            t.start()
        try:
            for lo in range(1000, 3000, 250):  # 8 writes, each searchable once it returns
                s.upsert_arrays([f"a{i}" for i in range(lo, lo + 250)], x[lo:lo + 250])
                assert s.count() == lo + 250
        finally:
            done.set()
            for t in readers:
                t.join(timeout=10)
        assert not errors, errors[0]
        assert s.count() == 3000


def test_a_search_during_a_many_batch_call_does_not_wait_for_its_end(tmp_path, monkeypatch):
    """A search in another thread of the writing process, made while one upsert call of several
    batches is still committing, answers from the batches applied so far instead of waiting for the
    call (and its hold on the journal) to end."""
    from vecface.backends import faiss_journal

    x = clustered(500, DIM, seed=22)
    real, calls, answers = faiss_journal.Journal.append_batch, [], []
    with vecface.open_store("faiss", "c", DIM, "cosine", path=tmp_path) as s:
        stamp0 = s._stamp.count[0]

        def third_searches(self, start, batch):
            calls.append(start)
            if len(calls) == 3:  # batches 1 and 2 committed; wait until the first is applied
                give_up = time.monotonic() + 10
                while s._stamp.count[0] == stamp0 and time.monotonic() < give_up:
                    time.sleep(0.001)
                t = threading.Thread(target=lambda: answers.append((s.count(), s.search(x[0], 3))))
                t.start()
                t.join(timeout=10)
                assert not t.is_alive(), "the search waited for the whole upsert call"
            return real(self, start, batch)

        monkeypatch.setattr(faiss_journal.Journal, "append_batch", third_searches)
        s.upsert_arrays([f"a{i}" for i in range(500)], x, batch_size=100)
        monkeypatch.undo()
        n, hits = answers[0]
        assert n in (100, 200) and hits[0].id == "a0"
        assert s.count() == 500
