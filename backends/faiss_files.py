"""The FAISS collection's files below the journal: the writer lock, the change stamp, the flat vector
file and the stamped index file. Each does one OS-level job and knows nothing about records.

- :class:`WriterLock`: ``flock`` on ``writer.lock``, exclusive, waited for up to a bound. ``flock``
  (not ``lockf``) so two stores in one process exclude each other too, and closing one file
  descriptor never drops a lock another store holds.
- :class:`Stamp`: an 8-byte counter in ``stamp``, memory-mapped by every process. A writer bumps it
  after each commit; a reader compares one integer per search to learn that something changed.
  It is only a hint (the journal is the truth), so it needs no fsync.
- :class:`VectorFile`: ``vectors.<epoch>.f32``, float32 rows addressed by slot (row number).
  Written with ``pwrite`` + ``fdatasync`` before the journal commit that makes the rows visible.
- :class:`StateLock`: within one process, many searches at once or one change to the in-memory state.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import sqlite3
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

from vecface.errors import BackendError, CollectionBusy

LOCK_NAME = "writer.lock"
STAMP_NAME = "stamp"


def fsync_dir(directory: Path) -> None:
    """Make a rename or a new file in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def unique_tmp(path: Path) -> Path:
    """A temporary name next to ``path`` that no other process or thread uses."""
    return path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.{uuid.uuid4().hex[:8]}.tmp")


def pid_alive(pid: str) -> bool:
    """Whether a process id (as text, from a temporary file's name) still runs."""
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (ValueError, PermissionError):
        return True  # not ours to judge
    return True


def tidy(directory: Path, keep: str) -> None:
    """Under the writer lock: remove the files of epochs other than ``keep`` (a finished compaction's
    old ones, or a crashed one's new ones) and temporary files of processes that no longer run."""
    for p in directory.iterdir():
        parts = p.name.split(".")
        if len(parts) == 3 and parts[0] in ("vectors", "index") and parts[1] != keep:
            p.unlink(missing_ok=True)
        elif p.name.startswith(".") and p.name.endswith(".tmp") and len(parts) >= 6 and not pid_alive(parts[-4]):
            p.unlink(missing_ok=True)


@contextmanager
def disk_errors(name: str) -> Iterator[None]:
    """The disk's and SQLite's own errors (disk full, a file removed under the collection) as BackendError."""
    try:
        yield
    except (OSError, sqlite3.Error) as e:
        raise BackendError(f"the FAISS collection {name!r} could not be read or written: {e}") from e


class WriterLock:
    """One writer at a time per collection, across processes and within one."""

    def __init__(self, directory: Path, timeout: float):
        self._path = directory / LOCK_NAME
        self._timeout = timeout
        self._fd: int | None = None
        self._depth = 0
        self._mutex = threading.RLock()  # threads of one store share its file descriptor

    def acquire(self, timeout: float | None = None) -> bool:
        """Take the lock, waiting up to ``timeout`` seconds (the store's bound by default); raise
        CollectionBusy when another writer keeps it longer. ``timeout=0``: try once, return False."""
        timeout = self._timeout if timeout is None else timeout
        if not self._mutex.acquire(timeout=max(timeout, 0.001)):
            if timeout == 0:
                return False
            raise CollectionBusy(f"another thread of this process kept the writer lock {self._path} "
                                 f"for more than {timeout:g} s")
        if self._depth:
            self._depth += 1
            return True
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + timeout
        pause = 0.002
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    self._mutex.release()
                    if timeout == 0:
                        return False
                    raise CollectionBusy(
                        f"another process is writing to this collection (writer lock {self._path}); "
                        f"waited {timeout:g} s. Try again when it is done, or give a longer lock_timeout"
                    ) from None
                time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
                pause = min(pause * 2, 0.05)
        self._fd, self._depth = fd, 1
        return True

    def release(self) -> None:
        self._depth -= 1
        if self._depth == 0 and self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
        self._mutex.release()

    def __enter__(self) -> "WriterLock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class Stamp:
    """A shared change counter: cheap to read on every search (one item of a memory view)."""

    def __init__(self, directory: Path):
        path = directory / STAMP_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if os.fstat(fd).st_size < 8:
                os.ftruncate(fd, 8)  # a new file reads as zeros; growing it never changes a written value
            self._mm = mmap.mmap(fd, 8)
        finally:
            os.close(fd)
        #: the counter, in the machine's byte order (every process sharing the file runs on this
        #: machine); ``count[0]`` is the value, read without a Python call on the search path
        self.count = memoryview(self._mm).cast("Q")

    def read(self) -> int:
        return self.count[0]

    def bump(self) -> None:
        """Called by the writer (under the writer lock) after a commit."""
        self.count[0] = (self.count[0] + 1) & 0xFFFF_FFFF_FFFF_FFFF

    def close(self) -> None:
        self.count.release()
        try:
            self._mm.close()
        except (BufferError, ValueError):
            pass


class VectorFile:
    """float32 rows of ``dim`` by slot, in one flat file per epoch."""

    def __init__(self, path: Path, dim: int, create: bool = False):
        """Open the file (FileNotFoundError if it is gone and ``create`` is False)."""
        self.path = path
        self.dim = dim
        self._row = dim * 4
        self._fd = os.open(path, os.O_RDWR | (os.O_CREAT if create else 0), 0o644)
        self._map: np.ndarray | None = None

    def write(self, start: int, vectors: np.ndarray) -> None:
        """Write rows at slots [start, start + len) and make them durable (before any commit names them)."""
        data = np.ascontiguousarray(vectors, dtype=np.float32)
        view = memoryview(data).cast("B")
        off, done = start * self._row, 0
        while done < len(view):
            done += os.pwrite(self._fd, view[done:], off + done)
        os.fdatasync(self._fd)

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop) as a fresh array."""
        want = (stop - start) * self._row
        buf = os.pread(self._fd, want, start * self._row)
        if len(buf) != want:
            raise OSError(f"{self.path} holds fewer rows than the journal names ({stop})")
        return np.frombuffer(buf, dtype=np.float32).reshape(stop - start, self.dim)

    def rows(self, n: int) -> np.ndarray:
        """A read-only memory map of the first ``n`` rows (shared page cache, nothing copied)."""
        if n == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self._map is None or self._map.shape[0] < n:
            size = os.fstat(self._fd).st_size // self._row
            if size < n:
                raise OSError(f"{self.path} holds {size} rows, the journal names {n}")
            self._map = np.memmap(self.path, dtype=np.float32, mode="r", shape=(size, self.dim))
        return self._map[:n]

    def close(self) -> None:
        self._map = None
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class StateLock:
    """Many searches at once, or one change to the in-memory state (writers go first once waiting).

    The read side takes no lock: ``readers`` is the set of the reading threads' ids, entered and left
    by one set operation each (each atomic under the GIL). A reader adds its id, then looks at
    ``writer``; a writer sets ``writer``, then waits until ``readers`` is empty. Whichever of the two
    comes second sees the other, so a reader never runs beside a writer; a reader that finds a writer
    steps out and waits for it to finish. Not reentrant (a thread reads or writes once at a time)."""

    def __init__(self) -> None:
        self.readers: set[int] = set()
        self.writer = False
        self._one_writer = threading.Lock()
        self._done = threading.Condition()  # readers waiting for a writer to finish

    def acquire_read(self) -> None:
        me = threading.get_ident()
        self.readers.add(me)
        if self.writer:
            self.wait_read(me)

    def wait_read(self, me: int) -> None:
        """The reader ``me`` found a writer: step out, wait until no writer is in or waiting, enter."""
        readers = self.readers
        with self._done:
            while True:
                readers.discard(me)
                while self.writer:
                    self._done.wait()
                readers.add(me)
                if not self.writer:
                    return

    def release_read(self) -> None:
        self.readers.discard(threading.get_ident())

    @contextmanager
    def reading(self) -> Iterator[None]:
        self.acquire_read()
        try:
            yield
        finally:
            self.release_read()

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._one_writer:
            self.writer = True
            try:
                pause = 1e-5
                while self.readers:  # the searches that entered before: each a fraction of a millisecond
                    time.sleep(pause)
                    pause = min(pause * 2, 1e-3)
                yield
            finally:
                with self._done:
                    self.writer = False
                    self._done.notify_all()
