"""Ingest's workers on a Ray cluster: the same seam as :class:`vecface.ingest_workers.FilePool`.

:class:`RayPool` starts one Ray actor per worker (default: one per CPU of the cluster); each
actor builds the embedder once, exactly as a local worker process does (it runs the same
initialiser and the same :class:`~vecface.ingest_workers.FileProcessor`), and handles chunks of
files. The results (vectors, boxes, scores, sizes, EXIF metadata, or the reason a file was
skipped) come back to the driver **in input order**; the driver keeps the manifest and stores
batch by batch as a local run does, so record ids, resume after a crash and re-runs are
identical. Every node reads the files by the path the driver gives it: the photos must be at the
same absolute path on every node (a shared or replicated filesystem).

An actor that dies (its process killed, its node lost) is restarted by Ray; the chunks it had
are re-run one file at a time on the live actors, and a file that kills an actor again is
skipped and reported, as in the local pool. At most ``2 x workers`` chunks are in flight.
"""

from __future__ import annotations

import os
from typing import Any

from .embedders import Embedder
from .errors import InvalidArgument, MissingDependency, VecfaceError
from .ingest_workers import FileResult, OrderedPool, Task


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise MissingDependency("ray", "ray", "ingest on a Ray cluster") from None
    return ray


class _IngestWorker:
    """One Ray actor: the local pool's worker initialiser and chunk runner, in a Ray process."""

    def __init__(self, spec_json: str, device: str | None, max_pixels: int | None, threads: int):
        from .ingest_workers import _init_worker

        _init_worker(spec_json, device, max_pixels, threads, os.getppid())

    def pid(self) -> int:
        return os.getpid()

    def run(self, tasks: list[Task]) -> list[FileResult]:
        from .ingest_workers import _run_chunk

        return _run_chunk(tasks)


class RayPool(OrderedPool):
    """Processes tasks on Ray actors, giving the results back in input order (a context manager).

    ``address``: a Ray cluster's address (``host:port``), ``"auto"`` for the cluster this
    machine is part of, or ``"local"`` to start a Ray instance in this process. When Ray is
    already initialised in this process, that connection is used (and kept open on close).
    """

    gives_up = "Ray ingest workers keep dying (out of memory? nodes lost?): re-run to go on"

    def __init__(self, embedder: Embedder, address: str | None = "auto", workers: int | None = None, *,
                 max_pixels: int | None = None, device: str | None = None, chunk: int = 1):
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
            raise InvalidArgument("with a Ray cluster, workers must be an integer >= 1 (default: one per CPU)")
        self.embedder = embedder
        self.address = address or "auto"
        self.workers = workers
        self.max_pixels = max_pixels
        clip = getattr(embedder, "clip", embedder)
        self.device = device if device is not None else getattr(clip, "device", None)
        self.chunk = max(1, int(chunk))
        self.restarts = 0  # actor deaths seen (Ray restarts the actor itself)
        self.pids: list[int] = []
        self._actors: list[Any] = []
        self._next = 0
        self._own_connection = False

    def __enter__(self) -> "RayPool":
        ray = _ray()
        if not ray.is_initialized():
            try:
                local = self.address == "local"
                ray.init(address=None if local else self.address, log_to_driver=False,
                         **({"include_dashboard": False} if local else {}))
            except ConnectionError as e:
                raise VecfaceError(f"cannot reach the Ray cluster at {self.address}: {e}") from None
            self._own_connection = True
        try:
            n = self.workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
            gpu = 1 if self.device == "cuda" else 0
            actor = ray.remote(num_cpus=1, num_gpus=gpu, max_restarts=-1, max_task_retries=0)(_IngestWorker)
            spec = self.embedder.spec().to_json()
            self._actors = [actor.remote(spec, self.device, self.max_pixels, 1) for _ in range(n)]
            self.pids = ray.get([a.pid.remote() for a in self._actors])  # the models are loaded
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        ray = _ray()
        for a in self._actors:
            ray.kill(a, no_restart=True)
        self._actors = []
        if self._own_connection and ray.is_initialized():
            ray.shutdown()
            self._own_connection = False

    @property
    def window(self) -> int:
        return 2 * max(1, len(self._actors))

    def _submit(self, tasks: list[Task]) -> Any:
        actor = self._actors[self._next % len(self._actors)]
        self._next += 1
        return actor.run.remote(tasks)

    def _wait(self, handle: Any) -> list[FileResult]:
        return _ray().get(handle)

    def _deaths(self) -> tuple[type[BaseException], ...]:
        exc = _ray().exceptions
        return (exc.RayActorError, exc.WorkerCrashedError, exc.ObjectLostError)
