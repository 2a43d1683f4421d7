"""FAISS backend: an in-process index over a flat vector file, records in memory by column, and a
SQLite journal as the durable truth; safe to share between processes.

Layout of a collection directory (``<root>/<collection>/``)::

    records.sqlite           the journal: config (dim, metric, index, epoch) + one row per write
    vectors.<epoch>.f32      float32 rows by slot (a slot is also the vector's label in the index)
    index.<epoch>.faiss      the HNSW / IVF index with a header (epoch, spec, rows covered)
    writer.lock              flock'ed by the one process writing at a time
    stamp                    a change counter every process maps, to notice new commits cheaply

A write (one batch): take the writer lock, catch up with what others committed, write the vectors
at the next free slots and fdatasync them, commit one journal row, apply it in memory, bump the
stamp. A record is committed when its journal row is; its vector was durable before that.

The index file is a cache of a prefix of the slots: its header says which epoch and how many rows
it holds, in the same file as the index bytes. On open (and on catching up) the slots after it are
read from the vector file and added, so an index written by a process that was behind is never
wrong, only shorter; a header from another epoch or spec means a rebuild. Exact (flat) indexes
are not saved: adding the vector file to an IndexFlat is as fast as reading one.

Replaced and deleted records leave dead slots, excluded from every search by the filter bitmap;
once they pass 20% of the slots, the next close (or ``build_index``) compacts: the live records
are written under a new epoch (vector file, index, a snapshot of the journal), switched to in
one journal transaction, and the old files removed.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from threading import get_ident
from typing import Any, Iterator

import numpy as np

try:
    import faiss
except ImportError as e:  # pragma: no cover - depends on the environment
    from vecface.errors import MissingDependency

    raise MissingDependency("faiss-cpu", extra="faiss", purpose="the faiss backend") from e

from vecface.config import data_dir
from vecface.errors import BackendError, CollectionMismatch
from vecface.store import VectorStore
from vecface.types import Exact, Hit, IndexSpec, Metric, Record, spec_from_dict, spec_to_dict

from . import faiss_index as fi
from . import faiss_search as fs
from .faiss_columns import Batch, Columns
from .faiss_files import StateLock, Stamp, VectorFile, WriterLock, disk_errors, fsync_dir, tidy
from .faiss_journal import DB_NAME, FORMAT, Journal, collection_names
from .faiss_migrate import upgrade

_COMPACT_FRACTION = 0.2
#: a reader checks the journal at least this often even when the stamp did not move (a writer
#: killed between its commit and its stamp bump)
_RECHECK_S = 1.0
#: one upsert call holds the writer lock for at most this many rows at a time (other writers wait)
_LOCK_ROWS = 100_000


class _View:
    """What one epoch holds in memory: columns, vector file, index; swapped whole on an epoch change."""

    def __init__(self, epoch: str, spec: IndexSpec, cols: Columns, vectors: VectorFile, index: Any, gen: int):
        self.epoch, self.spec, self.cols, self.vectors, self.index, self.gen = epoch, spec, cols, vectors, index, gen


class FaissStore(VectorStore):
    backend = "faiss"
    supported_indexes = ("exact", "hnsw", "ivfflat")
    in_process = True
    filter_strategies = ("auto", "selector", "exact", "post")

    def __init__(self, collection: str, dim: int | None = None, metric: Metric | str | None = None, *,
                 create: bool = True, path: str | os.PathLike[str] | None = None, lock_timeout: float = 60.0):
        self._root = Path(path).expanduser() if path else data_dir() / "faiss"
        self._lock_timeout = float(lock_timeout)
        self._view: _View | None = None
        self._journal: Journal | None = None
        self._stamp: Stamp | None = None
        self._wlock: WriterLock | None = None
        self._sync_mu = threading.RLock()   # journal access and catching up, one thread at a time
        self._state = StateLock()             # searches share it; applying changes takes it alone
        self._seen_stamp = -1
        self._next_check = 0.0
        self._searcher = fs.Searcher()      # its caches are valid for one generation
        super().__init__(collection, dim, metric, create=create)

    @classmethod
    def probe(cls, **options: Any) -> str:
        return f"faiss {faiss.__version__}, in-process (threads: {faiss.omp_get_max_threads()})"

    @property
    def directory(self) -> Path:
        return self._root / self.name

    # ------------------------------------------------------------------ lifecycle
    def _connect(self) -> None:
        pass  # the directory is opened in _describe / _create, once the name is known

    def _open_files(self) -> None:
        if self._wlock is None:
            self._wlock = WriterLock(self.directory, self._lock_timeout)
            self._stamp = Stamp(self.directory)

    def _describe(self) -> tuple[int, Metric, IndexSpec] | None:
        if not (self.directory / DB_NAME).exists():
            return None
        self._open_files()
        self._journal = Journal(self.directory, create=False)
        cfg = self._journal.config()
        if not cfg.get("dim"):
            return None  # created but never committed: create it now
        self.dim, self.metric = int(cfg["dim"]), Metric.parse(cfg["metric"])
        with disk_errors(self.name):
            if cfg.get("format") != FORMAT:
                upgrade(self._journal, self._wlock, self.directory, self.dim, self.name)
            self._reload()
        assert self._view is not None
        return self.dim, self.metric, self._view.spec

    def _create(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._open_files()
        with self._wlock:  # two processes creating the same collection: the second opens the first's
            if self._journal is not None:
                self._journal.close()
            self._journal = Journal(self.directory, create=True)
            cfg = self._journal.config()
            if not cfg.get("dim"):
                epoch = uuid.uuid4().hex
                VectorFile(self._vector_path(epoch), self.dim, create=True).close()
                self._journal.create(self.dim, self.metric.label, json.dumps(spec_to_dict(Exact())), epoch)
                fsync_dir(self.directory)
            elif int(cfg["dim"]) != self.dim or cfg["metric"] != self.metric.label:
                raise CollectionMismatch(f"collection {self.name!r} was just created by another process "
                                         f"with dimension {cfg['dim']} and metric {cfg['metric']}")
            self._reload()

    def _disconnect(self) -> None:
        try:
            if self._view is not None and self._journal is not None:
                if self._wlock.acquire(0):  # only when no other writer is busy: never wait in close
                    try:
                        if self._view.cols.dead > _COMPACT_FRACTION * max(1, self._view.cols.n):
                            self._catch_up()
                            self._compact(self._view.spec)
                        tidy(self.directory, self._journal.config()["epoch"])
                    finally:
                        self._wlock.release()
                self._save_index()
        finally:
            self._release_files()

    def _release_files(self) -> None:
        if self._view is not None:
            self._view.vectors.close()
        if self._journal is not None:
            self._journal.close()
        if self._stamp is not None:
            self._stamp.close()
        self._view = self._journal = self._stamp = None

    def flush(self) -> None:
        """Write the index file now if it lags behind (close does it too)."""
        self._check_open()
        self._save_index()

    def _vector_path(self, epoch: str) -> Path:
        return self.directory / f"vectors.{epoch}.f32"

    def _index_path(self, epoch: str) -> Path:
        return self.directory / f"index.{epoch}.faiss"

    # ------------------------------------------------------------------ catching up with the journal
    def _refresh(self) -> None:
        """Catch up when the stamp moved (or every _RECHECK_S): the check costs one shared-memory read."""
        if self._stamp.count[0] != self._seen_stamp or time.monotonic() >= self._next_check:
            with self._sync_mu, disk_errors(self.name):
                self._catch_up()

    def _catch_up(self) -> None:
        seen = self._stamp.read()
        view = self._view
        cfg, entries = self._journal.read(view.gen)
        if cfg.get("epoch") != view.epoch:
            self._reload()
            return
        if entries:
            tail = [(s, b) for _, s, b, _ in entries if b is not None]
            vectors = [view.vectors.read(s, s + len(b)) for s, b in tail]
            with self._state.write():
                for vecs in vectors:
                    view.index.add(vecs)
                for _, start, batch, dead in entries:
                    if batch is not None:
                        view.cols.append(start, batch)
                    view.cols.kill(dead)
                view.gen = entries[-1][0]
                self._searcher.clear()
        self._seen_stamp = seen
        self._next_check = time.monotonic() + _RECHECK_S

    def _reload(self) -> None:
        """Load the current epoch whole: columns from the journal, the index from its file (plus the
        slots after it) or rebuilt from the vector file."""
        for _ in range(5):
            seen = self._stamp.read()
            cfg, entries = self._journal.read(0)
            epoch, spec = cfg["epoch"], spec_from_dict(json.loads(cfg["index"]))
            try:
                vectors = VectorFile(self._vector_path(epoch), self.dim)
            except FileNotFoundError:
                continue  # compacted under us: read the new epoch
            break
        else:
            raise BackendError(f"the FAISS collection {self.name!r} keeps changing epoch; cannot load it")
        cols = Columns()
        for _, start, batch, dead in entries:
            if batch is not None:
                cols.append(start, batch)
            cols.kill(dead)
        index = fi.load_or_build(self._index_path(epoch), epoch, spec, self.dim, self.metric, vectors, cols.n)
        view = _View(epoch, spec, cols, vectors, index, entries[-1][0] if entries else 0)
        with self._state.write():
            old, self._view = self._view, view
            self._searcher.clear()
        if old is not None and old.vectors is not vectors:
            old.vectors.close()
        self._seen_stamp = seen
        self._next_check = time.monotonic() + _RECHECK_S

    def _save_index(self) -> None:
        view = self._view
        if view is None or isinstance(view.spec, Exact):
            return
        path = self._index_path(view.epoch)
        if fi.is_current(path, view.epoch, view.spec, view.index.ntotal):
            return  # another process saved as much or more
        with self._state.reading():
            fi.save(path, view.index, fi.header_for(view.epoch, view.spec, view.index))

    # ------------------------------------------------------------------ writes
    @contextmanager
    def _writing(self) -> Iterator[_View]:
        """The writer lock, caught up with every commit before it; the stamp bumped after. The disk's
        and SQLite's own errors (disk full, a file removed under the collection) become BackendError."""
        with self._wlock, self._sync_mu, disk_errors(self.name):
            self._catch_up()
            try:
                yield self._view
            finally:
                self._stamp.bump()
                self._seen_stamp = self._stamp.read()

    def _upsert(self, ids: list[str], vectors: np.ndarray, metadata: list[dict[str, Any]]) -> None:
        self._upsert_all(ids, vectors, metadata, len(ids))

    def _upsert_all(self, ids: list[str], mat: np.ndarray, metas: list[dict[str, Any]], batch_size: int) -> int:
        """Batch by batch, each committed on its own, as a pipeline under one writer lock (per
        ``_LOCK_ROWS`` rows): while this thread encodes and commits batch i, one helper thread writes
        and fdatasyncs batch i+1's vectors and another adds batch i-1 to the index and the columns,
        having grown the index for every row first (FAISS and the disk work without the GIL). A
        batch's vectors are durable before the commit that names it, and it is searchable once
        added; vectors written past the last commit (a failure or a crash mid-call) are garbage the
        next write overwrites. A single batch (every ``upsert``) has nothing to overlap and runs on
        the caller's thread alone."""
        for lo in range(0, len(ids), _LOCK_ROWS):
            hi = min(lo + _LOCK_ROWS, len(ids))
            with self._writing() as view:
                at = view.cols.n - lo  # the slot of row r of this call is at + r
                if hi - lo <= batch_size:  # one batch: nothing to overlap, so all on this thread
                    batch = Batch.from_metadata(ids[lo:hi], metas[lo:hi])
                    view.vectors.write(at + lo, mat[lo:hi])
                    self._apply(view, at + lo, mat[lo:hi], batch, self._log(at + lo, batch))
                    continue
                with ThreadPoolExecutor(1, "vecface-faiss-io") as io, \
                        ThreadPoolExecutor(1, "vecface-faiss-add") as adder:
                    cuts = list(range(lo, hi, batch_size)) + [hi]
                    written = io.submit(view.vectors.write, at + lo, mat[lo:cuts[1]])
                    # the adder is idle until the first commit: meanwhile it grows the index for all rows
                    added = [adder.submit(self._make_room, view, hi - lo)]
                    for a, b, c in zip(cuts, cuts[1:], cuts[2:] + [None]):
                        batch = Batch.from_metadata(ids[a:b], metas[a:b])
                        written.result()
                        if c is not None:
                            written = io.submit(view.vectors.write, at + b, mat[b:c])
                        added.append(adder.submit(self._apply, view, at + a, mat[a:b], batch, self._log(at + a, batch)))
                    for done in added:
                        done.result()
        return len(ids)

    def _log(self, start: int, batch: Batch) -> int:
        """Commit one batch's journal row (its vectors are durable already); its generation."""
        with self._journal.transaction() as j:
            return j.append_batch(start, batch)

    def _make_room(self, view: _View, rows: int) -> None:
        with self._state.write():
            fi.make_room(view.index, rows)

    def _apply(self, view: _View, start: int, vectors: np.ndarray, batch: Batch, gen: int) -> None:
        """A committed batch into the index and the columns, together (searches see both or neither)."""
        with self._state.write():
            view.index.add(vectors)
            view.cols.append(start, batch)
            view.gen = gen
            self._searcher.clear()
        self._stamp.bump()  # other processes see each batch as it commits
        # this one has it already, and no other writer can commit: its searches need not catch up
        self._seen_stamp, self._next_check = self._stamp.read(), time.monotonic() + _RECHECK_S

    def _delete(self, ids: list[str]) -> int:
        with self._writing() as view:
            slots = list(view.cols.slots_for(ids).values())
            if slots:
                with self._journal.transaction() as j:
                    gen = j.append_dead(slots)
                with self._state.write():
                    view.cols.kill(slots)
                    view.gen = gen
                    self._searcher.clear()
            return len(slots)

    def _build_index(self, spec: IndexSpec) -> None:
        with self._writing():
            self._compact(spec)

    def _compact(self, spec: IndexSpec) -> None:
        """Under the writer lock: the live records under a new epoch, with ``spec`` built over them."""
        old = self._view
        epoch = uuid.uuid4().hex
        live = np.flatnonzero(old.cols.alive[: old.cols.n])
        vectors = VectorFile(self._vector_path(epoch), self.dim, create=True)
        try:
            rows = old.vectors.rows(old.cols.n)
            for start in range(0, len(live), fi.CHUNK):
                vectors.write(start, rows[live[start:start + fi.CHUNK]])
            fsync_dir(self.directory)
            index = fi.build(spec, self.dim, self.metric, vectors, len(live))
            if not isinstance(spec, Exact):
                fi.save(self._index_path(epoch), index, fi.header_for(epoch, spec, index))
            cols, batches, pos = Columns(), [], 0
            for _, batch in old.cols.chunks(fi.CHUNK):
                batches.append((pos, batch))
                cols.append(pos, batch)
                pos += len(batch)
            with self._journal.transaction() as j:
                gen = j.replace_all(iter(batches), epoch, index=json.dumps(spec_to_dict(spec)))
        except BaseException:
            vectors.close()
            tidy(self.directory, old.epoch)
            raise
        view = _View(epoch, spec, cols, vectors, index, gen)
        with self._state.write():
            self._view = view
            self._searcher.clear()
        old.vectors.close()
        tidy(self.directory, epoch)

    def _drop(self) -> None:
        import shutil

        with self._wlock:
            self._release_files()
            shutil.rmtree(self.directory, ignore_errors=True)

    # ------------------------------------------------------------------ reads
    def _get(self, ids: list[str]) -> list[Record]:
        self._refresh()
        with self._state.reading():
            view = self._view
            found = view.cols.slots_for(ids)
            rows = view.vectors.rows(view.cols.n)
            metas = view.cols.metadata(list(found.values()))
            return [Record(i, np.array(rows[s]), m) for (i, s), m in zip(found.items(), metas)]

    def _count(self) -> int:
        self._refresh()
        return self._view.cols.alive_count

    def _ids(self) -> list[str]:  # the live slots of the in-memory id column
        self._refresh()
        with self._state.reading():
            cols = self._view.cols
            return cols.ids[:cols.n][cols.alive[:cols.n]].tolist()

    def _search(self, queries: np.ndarray, k: int, flt: dict[str, Any] | None) -> list[list[Hit]]:
        # _refresh's test and StateLock.acquire_read / release_read written out: after a graph walk
        # has evicted the caches each Python call costs 1-2 us, a tenth of vecface's budget per search
        if self._stamp.count[0] != self._seen_stamp or time.monotonic() >= self._next_check:
            self._refresh()
        me, state = get_ident(), self._state
        state.readers.add(me)
        if state.writer:
            state.wait_read(me)
        try:
            return self._searcher.search(self._view, self._query, self.metric, queries, k, flt)
        finally:
            state.readers.discard(me)

    def _apply_query_params(self) -> None:
        self._searcher.clear()

    # ------------------------------------------------------------------ measurement hooks
    def raw_loader(self, batch_size: int) -> Any:
        self._check_open()
        return fi.RawAdd(self.dim, self.metric)

    def raw_searcher(self, k: int) -> Any:
        """FAISS's own ``index.search`` on this collection's index, same efSearch / nprobe, one thread."""
        self._check_open()
        return fs.raw_searcher(self._view, self._query, k)

    def check(self, repair: bool = False, progress: Any = None) -> Any:
        """Whether the index returns every stored record by its own vector; ``repair`` rebuilds it."""
        from .faiss_check import check

        self._check_open()
        return check(self, repair=repair, progress=progress)

    def storage_bytes(self) -> int | None:
        self._check_open()
        return sum(p.stat().st_size for p in self.directory.iterdir() if p.is_file())

    def _read_info(self) -> dict | None:
        with self._sync_mu, disk_errors(self.name):
            return self._journal.info()

    def _write_info(self, info: dict) -> None:
        with self._wlock, self._sync_mu, disk_errors(self.name):
            self._journal.set_info(info)

    @classmethod
    def _collection_names(cls, path: Any = None, **_: Any) -> list[str]:
        return collection_names(Path(path).expanduser() if path else data_dir() / "faiss")

    def _index_size(self) -> int | None:
        with self._state.reading():
            return int(faiss.serialize_index(self._view.index).nbytes)

