"""The FAISS collection's files: an index file that is short, damaged or from another epoch is never
trusted over the journal; garbage after the last committed slot is harmless; compaction keeps
every live record; a collection in an older layout is refused clearly."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys

import numpy as np
import pytest

import vecface
from vecface import HNSW, Exact, IVFFlat, Record
from vecface.errors import BackendError

from .conftest import clustered
from .faiss_checks import searchable

DIM = 8


def _files(root, kind: str):
    return sorted((root / "c").glob(f"{kind}.*"))


def _check_all_searchable(root, n: int) -> None:
    assert searchable(root) == (n, n)


@pytest.mark.parametrize("spec", [HNSW(m=8, ef_construction=40), IVFFlat(lists=4)], ids=["hnsw", "ivfflat"])
def test_an_index_file_behind_the_journal_is_caught_up(tmp_path, spec):
    x = clustered(300, DIM, seed=1)
    with vecface.open_store("faiss", "c", DIM, path=tmp_path) as s:
        s.upsert_arrays([f"a{i}" for i in range(200)], x[:200])
        s.build_index(spec)
    (index_file,) = _files(tmp_path, "index")
    old = index_file.read_bytes()  # an index of 200 slots
    with vecface.open_store("faiss", "c", path=tmp_path) as s:
        s.upsert_arrays([f"b{i}" for i in range(100)], x[200:])
        s.delete(["a3"])
    index_file.write_bytes(old)  # as if a process that never saw the last writes saved last
    _check_all_searchable(tmp_path, 299)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "other_spec", "missing"])
def test_a_damaged_or_foreign_index_file_is_rebuilt(tmp_path, damage):
    x = clustered(400, DIM, seed=2)
    with vecface.open_store("faiss", "c", DIM, path=tmp_path) as s:
        s.upsert_arrays([f"a{i}" for i in range(400)], x)
        s.build_index(HNSW(m=8, ef_construction=40))
    (index_file,) = _files(tmp_path, "index")
    if damage == "truncated":
        index_file.write_bytes(index_file.read_bytes()[: index_file.stat().st_size // 2])
    elif damage == "garbage":
        index_file.write_bytes(b"\0" * 1000)
    elif damage == "missing":
        index_file.unlink()
    else:  # a valid index file, but of another spec: what a build in another process would leave
        with vecface.open_store("faiss", "d", DIM, path=tmp_path) as other:
            other.upsert_arrays([f"a{i}" for i in range(400)], x)
            other.build_index(HNSW(m=4, ef_construction=20))
        (foreign,) = sorted((tmp_path / "d").glob("index.*"))
        shutil.copyfile(foreign, index_file)
    _check_all_searchable(tmp_path, 400)
    with vecface.open_store("faiss", "c", path=tmp_path) as s:
        assert s.index == HNSW(m=8, ef_construction=40)


def test_garbage_after_the_last_committed_slot_is_overwritten(tmp_path):
    x = clustered(60, DIM, seed=3)
    with vecface.open_store("faiss", "c", DIM, path=tmp_path) as s:
        s.upsert_arrays([f"a{i}" for i in range(50)], x[:50])
    (vectors,) = _files(tmp_path, "vectors")
    with open(vectors, "ab") as f:  # a writer killed after writing its vectors, before its commit
        f.write(np.full((7, DIM), 9.0, dtype=np.float32).tobytes())
    with vecface.open_store("faiss", "c", path=tmp_path) as s:
        assert s.count() == 50
        s.upsert_arrays([f"b{i}" for i in range(10)], x[50:])
        np.testing.assert_allclose(s.get("b0")[0].vector, x[50], atol=1e-6)
    _check_all_searchable(tmp_path, 60)


def test_compaction_keeps_every_live_record(tmp_path):
    x = clustered(501, DIM, seed=4)
    with vecface.open_store("faiss", "c", DIM, path=tmp_path) as s:
        s.upsert_arrays([f"a{i}" for i in range(500)], x[:500], [{"tag": "even" if i % 2 == 0 else "odd", "i": i}
                                                           for i in range(500)])
        s.build_index(HNSW(m=8, ef_construction=40))
        first_epoch = _files(tmp_path, "vectors")
        s.delete([f"a{i}" for i in range(0, 500, 3)])                          # 167 dead
        s.upsert([Record("a1", x[500], {"tag": "moved"})])                       # one more dead slot
    # the close compacted: one epoch, new files, the same records
    assert _files(tmp_path, "vectors") != first_epoch and len(_files(tmp_path, "vectors")) == 1
    assert len(_files(tmp_path, "index")) == 1
    with vecface.open_store("faiss", "c", path=tmp_path) as s:
        assert s.count() == 333 and s.index == HNSW(m=8, ef_construction=40)
        assert s.get("a1")[0].metadata == {"tag": "moved"}
        np.testing.assert_allclose(s.get("a1")[0].vector, x[500], atol=1e-6)
        assert s.get("a3") == []
        odd = s.search(x[5], k=500, filter={"tag": "odd"})
        assert {h.id for h in odd} == {f"a{i}" for i in range(1, 500, 2) if i % 3 and i != 1}
    _check_all_searchable(tmp_path, 333)


def test_exact_collections_keep_no_index_file(tmp_path):
    with vecface.open_store("faiss", "c", DIM, path=tmp_path) as s:
        s.upsert_arrays(["a", "b"], clustered(2, DIM))
        assert s.index == Exact()
    assert _files(tmp_path, "index") == []
    _check_all_searchable(tmp_path, 2)


def _first_layout(root, n: int) -> np.ndarray:
    """A collection as vecface's first FAISS layout wrote it: one SQLite row per record, vector as a blob."""
    x = clustered(n, DIM, seed=9)
    d = root / "c"
    d.mkdir()
    db = sqlite3.connect(d / "records.sqlite")
    db.executescript("""
        CREATE TABLE config (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE records (rid INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, tag TEXT,
                              path TEXT, metadata TEXT NOT NULL, vector BLOB NOT NULL);
    """)
    db.executemany("INSERT INTO config VALUES (?, ?)", [("dim", str(DIM)), ("metric", "cosine"), ("generation", "7"),
                                                         ("index", '{"kind": "hnsw", "m": 8, "ef_construction": 40}')])
    db.executemany("INSERT INTO records(id, tag, path, metadata, vector) VALUES (?, ?, ?, ?, ?)",
                   [(f"old{i}", "t", f"/p/{i}.jpg", f'{{"tag": "t", "path": "/p/{i}.jpg", "i": {i}}}', v.tobytes())
                    for i, v in enumerate(x)])
    db.commit()
    db.close()
    (d / "index.faiss").write_bytes(b"an index of the first layout")
    (d / "index.json").write_text('{"generation": 7}')
    return x


def test_the_first_layout_is_upgraded_in_place(tmp_path):
    x = _first_layout(tmp_path, 300)
    with vecface.open_store("faiss", "c", path=tmp_path) as s:
        assert s.count() == 300 and s.dim == DIM and s.index == HNSW(m=8, ef_construction=40)
        (rec,) = s.get("old7")
        assert rec.metadata == {"tag": "t", "path": "/p/7.jpg", "i": 7}
        np.testing.assert_allclose(rec.vector, x[7], atol=1e-6)
        assert len(s.search(x[3], k=5, filter={"path": "/p/3.jpg"})) == 1
    assert not (tmp_path / "c" / "index.json").exists() and not (tmp_path / "c" / "index.faiss").exists()
    _check_all_searchable(tmp_path, 300)


def test_an_unknown_layout_is_refused_clearly(tmp_path):
    (tmp_path / "c").mkdir()
    db = sqlite3.connect(tmp_path / "c" / "records.sqlite")
    db.execute("CREATE TABLE config (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    db.executemany("INSERT INTO config VALUES (?, ?)", [("dim", "8"), ("metric", "cosine"), ("format", "99")])
    db.commit()
    db.close()
    with pytest.raises(BackendError, match="layout this vecface does not read"):
        vecface.open_store("faiss", "c", path=tmp_path)


def test_check_finds_every_record_searchable_and_repairs(tmp_path):
    x = clustered(400, DIM, seed=6)
    with vecface.open_store("faiss", "c", DIM, path=tmp_path) as s:
        s.upsert_arrays([f"a{i}" for i in range(400)], x)
        s.build_index(HNSW(m=8, ef_construction=40))
        s.delete(["a0", "a1"])
        ticks = []
        report = s.check(progress=ticks.append)
        assert report.stored == 398 and report.ok and report.unsearchable == [] and sum(ticks) == 398
        # an exact duplicate an HNSW graph may not reach: whatever check reports, repair rebuilds
        s.upsert([Record("dup", x[5])])
        report = s.check(repair=True)
        assert report.stored == 399
        assert set(report.repaired) | set(report.still_unsearchable) == set(report.unsearchable)
        assert s.count() == 399


def test_close_removes_orphans_of_crashed_processes(tmp_path):
    with vecface.open_store("faiss", "c", DIM, path=tmp_path) as s:
        s.upsert_arrays(["a", "b"], clustered(2, DIM))
        s.build_index(HNSW(m=8, ef_construction=40))
    d = tmp_path / "c"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    (index_file,) = _files(tmp_path, "index")
    orphans = [d / "vectors.0123456789abcdef.f32", d / "index.0123456789abcdef.faiss",  # a compaction killed
               d / f".{index_file.name}.{dead}.1.abcd1234.tmp"]                      # a save killed
    live_tmp = d / f".{index_file.name}.{os.getpid()}.1.abcd1234.tmp"    # a save under way
    for p in orphans + [live_tmp]:
        p.write_bytes(b"x")
    with vecface.open_store("faiss", "c", path=tmp_path) as s:
        assert s.count() == 2
    assert not [p for p in orphans if p.exists()] and live_tmp.exists()
    live_tmp.unlink()
    _check_all_searchable(tmp_path, 2)


def test_a_vector_file_cut_short_under_the_store_is_a_backend_error(tmp_path):
    x = clustered(20, DIM, seed=10)
    with vecface.open_store("faiss", "c", DIM, path=tmp_path) as s:
        s.upsert_arrays([f"a{i}" for i in range(10)], x[:10])
        with vecface.open_store("faiss", "c", path=tmp_path) as other:
            other.upsert_arrays([f"b{i}" for i in range(10)], x[10:])
            (vectors,) = _files(tmp_path, "vectors")
            os.truncate(vectors, 12 * DIM * 4)  # someone cut the file: the last 8 committed rows are gone
        with pytest.raises(BackendError, match="could not be read or written"):
            s.count()  # catching up needs the rows the journal names


def test_a_failed_commit_mid_call_keeps_the_batches_before_it(tmp_path, monkeypatch):
    """One upsert call, several batches (the vectors of the next batch are written while this one
    commits): a commit that fails leaves the earlier batches committed and whole, nothing after."""
    from vecface.backends import faiss_journal

    x = clustered(500, DIM, seed=11)
    real, calls = faiss_journal.Journal.append_batch, []

    def third_fails(self, start, batch):
        calls.append(start)
        if len(calls) == 3:
            raise sqlite3.OperationalError("database or disk is full")
        return real(self, start, batch)

    with vecface.open_store("faiss", "c", DIM, path=tmp_path) as s:
        s.build_index(HNSW(m=8, ef_construction=40))
        monkeypatch.setattr(faiss_journal.Journal, "append_batch", third_fails)
        with pytest.raises(BackendError, match="disk is full"):
            s.upsert_arrays([f"a{i}" for i in range(500)], x, batch_size=100)
        monkeypatch.undo()
        assert s.count() == 200 and [r.id for r in s.get(["a199", "a200"])] == ["a199"]
        s.upsert_arrays([f"b{i}" for i in range(300)], x[200:])  # over the uncommitted rows' slots
        np.testing.assert_allclose(s.get("b0")[0].vector, x[200] / np.linalg.norm(x[200]), atol=1e-6)
    _check_all_searchable(tmp_path, 500)



def test_a_journal_transaction_lands_whole_or_not_at_all(tmp_path):
    from vecface.backends.faiss_journal import Journal

    with vecface.open_store("faiss", "c", DIM, path=tmp_path) as s:
        s.set_info({"a": 1})
        j = Journal(tmp_path / "c", create=False)
        try:
            with pytest.raises(RuntimeError):
                with j.transaction():
                    j.set_config(info='{"a": 2}', extra="x")
                    raise RuntimeError("mid-write")
            assert not j.db.in_transaction
            assert j.info() == {"a": 1} and "extra" not in j.config()
            with j.transaction():
                j.set_config(extra="y")
            assert j.config()["extra"] == "y"
        finally:
            j.close()
        assert s.info == {"a": 1}


def test_a_one_batch_upsert_runs_on_the_callers_thread(tmp_path, monkeypatch):
    """Nothing to overlap in one batch: its vectors are written (and a failed commit stores nothing)
    on the calling thread; a call of several batches still writes them on a helper thread."""
    import threading

    from vecface.backends import faiss_files, faiss_journal

    writers = []
    real_write = faiss_files.VectorFile.write

    def write(self, start, vectors):
        writers.append(threading.current_thread())
        return real_write(self, start, vectors)

    monkeypatch.setattr(faiss_files.VectorFile, "write", write)
    x = clustered(300, DIM, seed=12)
    with vecface.open_store("faiss", "c", DIM, path=tmp_path) as s:
        s.upsert([Record(f"r{i}", x[i], {"tag": "t"}) for i in range(50)])
        s.upsert_arrays([f"a{i}" for i in range(50)], x[50:100], batch_size=100)
        assert writers == [threading.current_thread()] * 2
        s.upsert_arrays([f"b{i}" for i in range(100)], x[100:200], batch_size=50)
        assert len(writers) == 4 and all(t is not threading.current_thread() for t in writers[2:])

        def fails(self, start, batch):
            raise sqlite3.OperationalError("database or disk is full")

        monkeypatch.setattr(faiss_journal.Journal, "append_batch", fails)
        with pytest.raises(BackendError, match="disk is full"):
            s.upsert_arrays([f"c{i}" for i in range(10)], x[200:210])
        monkeypatch.undo()
        assert s.count() == 200 and not s.get(["c0"])
        s.upsert_arrays([f"d{i}" for i in range(100)], x[200:300])
        assert s.count() == 300 and s.search(x[250], 1)[0].id == "d50"
    _check_all_searchable(tmp_path, 300)


def test_room_made_ahead_keeps_a_flat_index_as_it_was():
    """make_room grows a flat index's storage before its adds (the bulk load's adder does it while the
    first batch is written): the rows held, the answers and the later adds stay exactly as without it."""
    import faiss

    from vecface.backends.faiss_index import make_room

    rng = np.random.default_rng(5)
    first, later = (rng.standard_normal((n, 8)).astype(np.float32) for n in (300, 500))
    grown, plain = faiss.IndexFlatIP(8), faiss.IndexFlatIP(8)
    for ix in (grown, plain):
        ix.add(first)
    make_room(grown, len(later))
    assert grown.ntotal == 300 and grown.codes.size() == 300 * grown.code_size
    np.testing.assert_array_equal(grown.reconstruct_n(0, 300), first)
    for ix in (grown, plain):
        ix.add(later[:200])
        ix.add(later[200:])
    np.testing.assert_array_equal(grown.reconstruct_n(0, 800), np.vstack([first, later]))
    assert (grown.search(later[:5], 3)[1] == plain.search(later[:5], 3)[1]).all()
    hnsw = faiss.IndexHNSWFlat(8, 4)
    make_room(hnsw, 100)  # another kind: left as it is
    assert hnsw.ntotal == 0
