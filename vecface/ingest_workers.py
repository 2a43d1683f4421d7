"""Ingest's workers: read, hash, decode, detect and embed files in a pool of processes.

Each worker process builds the embedder once (from its :class:`EmbedderSpec`) and handles chunks
of files: it reads a file, hashes it, skips the decode when the hash is the one already stored,
and otherwise returns the items to store (vector, bbox, score) with the image size. CLIP chunks
are embedded as one batch; face embedders go image by image (one decoded photo in memory at a
time). ``max_pixels`` applies in the workers, where the decoding happens.

:class:`FilePool` hands chunks to the workers and gives the results back **in input order**, with
at most ``2 x workers`` chunks in flight (memory stays bounded whatever the folder holds). A worker
that dies (SIGKILL, the kernel's OOM killer, a crash in a native decoder) breaks the pool; the
pool is restarted and the chunks that were in flight are re-run one file at a time, so a file that
kills a worker again is skipped and reported instead of stopping the run. Workers exit by
themselves when the ingest process dies.

``workers=0`` runs the same code in one thread of the calling process (the embedder given is
used as is; nothing is re-loaded).
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections import deque
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

from .embedders import Embedder, EmbedderSpec, FaceImage, Item
from .errors import ImageError, VecfaceError
from .exif import photo_metadata
from .images import content_hash, read_file

WORKER_DIED = "crashed an ingest worker process (killed, or out of memory)"


@dataclass(frozen=True)
class Task:
    """One file to process: ``fs_path`` to open, ``path`` as stored, and the content hash already
    stored for it when it need not be decoded again if unchanged."""

    fs_path: str
    path: str
    known_sha256: str | None = None


@dataclass
class FileResult:
    path: str
    sha256: str | None = None
    items: list[Item] = field(default_factory=list)
    size: tuple[int, int] | None = None  # original (width, height), where the embedder keeps it
    skip: str | None = None
    unchanged: bool = False
    exif: dict[str, Any] = field(default_factory=dict)  # taken, lat, lon, camera (vecface.exif)


class FileProcessor:
    """What one worker does with a chunk of tasks."""

    def __init__(self, embedder: Embedder, max_pixels: int | None = None):
        self.embedder = embedder
        self.max_pixels = max_pixels

    def run(self, tasks: list[Task]) -> list[FileResult]:
        results: list[FileResult] = []
        waiting: list[tuple[FileResult, Any]] = []  # decoded, for one batched model call (CLIP)
        for task in tasks:
            result, prepared = self._load(task)
            results.append(result)
            if prepared is None:
                continue
            if self.embedder.per_face:
                self._extract([(result, prepared)])
            else:
                waiting.append((result, prepared))
        if waiting:
            self._extract(waiting)
        return results

    def _load(self, task: Task) -> tuple[FileResult, Any]:
        result = FileResult(task.path)
        try:
            data = read_file(task.fs_path)
            result.sha256 = content_hash(data)
            if task.known_sha256 is not None and task.known_sha256 == result.sha256:
                result.unchanged = True
                return result, None
            prepared = self.embedder.prepare(data, max_pixels=self.max_pixels)
            if isinstance(prepared, FaceImage):  # face images keep the original size
                result.size = tuple(prepared.size)
            result.exif = photo_metadata(data)
            return result, prepared
        except ImageError as e:
            result.skip = str(e)
        except Exception as e:  # a file must never stop the run
            result.skip = f"failed: {type(e).__name__}: {e}"
        return result, None

    def _extract(self, pairs: list[tuple[FileResult, Any]]) -> None:
        try:
            found = self.embedder.extract([p for _, p in pairs])
        except Exception as e:
            if len(pairs) > 1:  # find the one that fails; the others are stored
                for pair in pairs:
                    self._extract([pair])
                return
            pairs[0][0].skip = f"failed: {type(e).__name__}: {e}"
            return
        for (result, _), items in zip(pairs, found):
            result.items = items
            if not items:
                result.skip = "no face found" if self.embedder.per_face else "nothing to embed"


# ---------------------------------------------------------------- worker processes

_PROCESSOR: FileProcessor | None = None


def _watch_parent(parent: int) -> None:
    while True:
        if os.getppid() != parent:  # the ingest process died: nothing will read our results
            os._exit(1)
        time.sleep(0.5)


def _init_worker(spec_json: str, device: str | None, max_pixels: int | None, threads: int, parent: int) -> None:
    global _PROCESSOR
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True, name="vecface-parent-watch").start()
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)  # before torch or numpy's BLAS start their thread pools
    from .embedders import make_embedder

    embedder = make_embedder(EmbedderSpec.from_json(spec_json), device=device)
    if embedder.kind != "face-dlib":
        import torch

        torch.set_num_threads(threads)
    _PROCESSOR = FileProcessor(embedder, max_pixels)


def _run_chunk(tasks: list[Task]) -> list[FileResult]:
    assert _PROCESSOR is not None, "ingest worker not initialised"
    return _PROCESSOR.run(tasks)


def default_workers() -> int:
    return os.cpu_count() or 1


class OrderedPool:
    """Chunks of tasks run on workers, at most ``window`` chunks in flight, results yielded in the order
    of the tasks. A chunk lost with a dead worker is re-run a task at a time: a task that kills a worker
    again is skipped (``WORKER_DIED``), three deaths in a row end the run. Subclasses say how to submit
    a chunk, wait for it, which exceptions mean a worker died, and what a death costs."""

    chunk: int = 1
    restarts: int = 0
    #: the message when workers keep dying
    gives_up = "ingest workers keep dying"

    @property
    def window(self) -> int:
        raise NotImplementedError

    def _submit(self, tasks: list[Task]) -> Any:
        raise NotImplementedError

    def _wait(self, handle: Any) -> list[FileResult]:
        raise NotImplementedError

    def _deaths(self) -> tuple[type[BaseException], ...]:
        raise NotImplementedError

    def _lost(self, chunk: list[Task], pending: deque) -> list[Task]:
        """The tasks to re-run after ``chunk``'s worker died (``pending``: the chunks still in flight)."""
        return chunk

    def _after_death(self) -> None:
        """Called once per worker death, before anything is submitted again."""
        self.restarts += 1

    def results(self, tasks: Iterable[Task]) -> Iterator[FileResult]:
        """One :class:`FileResult` per task, in the order of ``tasks``."""
        source = iter(tasks)
        pending: deque[tuple[list[Task], Any]] = deque()

        def fill() -> None:
            while len(pending) < self.window:
                chunk = list(itertools.islice(source, self.chunk))
                if not chunk:
                    return
                pending.append((chunk, self._submit(chunk)))

        fill()
        while pending:
            chunk, handle = pending.popleft()
            try:
                done = self._wait(handle)
            except self._deaths():
                lost = self._lost(chunk, pending)
                self._after_death()
                yield from self._one_by_one(lost)
                fill()
                continue
            yield from done
            fill()

    def _one_by_one(self, tasks: list[Task]) -> Iterator[FileResult]:
        in_a_row = 0
        for task in tasks:
            try:
                done = self._wait(self._submit([task]))
            except self._deaths():
                in_a_row += 1
                if in_a_row >= 3:  # not one file's fault: workers cannot run here at all
                    raise VecfaceError(f"{self.gives_up}; what was stored so far is kept") from None
                self._after_death()
                yield FileResult(task.path, skip=WORKER_DIED)
                continue
            in_a_row = 0
            yield from done


class FilePool(OrderedPool):
    """Processes tasks in worker processes (or, with ``workers=0``, one thread here), giving the
    results back in input order. Use as a context manager."""

    def __init__(self, embedder: Embedder, workers: int | None = None, *, max_pixels: int | None = None,
                 device: str | None = None, chunk: int = 1):
        self.embedder = embedder
        self.workers = default_workers() if workers is None else int(workers)
        if self.workers < 0:
            from .errors import InvalidArgument

            raise InvalidArgument("workers must be >= 0 (0: in this process)")
        self.max_pixels = max_pixels
        clip = getattr(embedder, "clip", embedder)  # face-clip wraps a CLIP embedder
        self.device = device if device is not None else getattr(clip, "device", None)
        self.chunk = max(1, int(chunk))
        self.restarts = 0
        self._executor: Executor | None = None

    def __enter__(self) -> "FilePool":
        self._start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _start(self) -> None:
        if self.workers == 0:
            processor = FileProcessor(self.embedder, self.max_pixels)
            pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vecface-ingest")
            self._call = processor.run
            self._executor = pool
            return
        import multiprocessing

        threads = max(1, (os.cpu_count() or 1) // self.workers)
        # spawn, not fork: the parent may hold torch threads, database connections and locks
        pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_init_worker,
                                   initargs=(self.embedder.spec().to_json(), self.device, self.max_pixels,
                                             threads, os.getpid()))
        self._call = _run_chunk
        self._executor = pool

    def _submit(self, tasks: list[Task]) -> Future:
        try:
            return self._executor.submit(self._call, tasks)
        except BrokenProcessPool as e:  # a worker died since the last result: seen when this one is due
            failed: Future = Future()
            failed.set_exception(e)
            return failed

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    @property
    def window(self) -> int:
        return 2 * max(1, self.workers)

    gives_up = ("ingest worker processes keep dying (out of memory?): re-run with fewer --workers, "
                "or --workers 0")

    def _wait(self, handle: Future) -> list[FileResult]:
        return handle.result()

    def _deaths(self) -> tuple[type[BaseException], ...]:
        return (BrokenProcessPool,)

    def _lost(self, chunk: list[Task], pending: deque) -> list[Task]:
        # a broken process pool fails every chunk in flight: re-run them all
        lost = [t for c in [chunk] + [c for c, _ in pending] for t in c]
        pending.clear()
        return lost

    def _after_death(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
        super()._after_death()
        self._start()


