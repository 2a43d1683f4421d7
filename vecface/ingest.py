"""Ingest a folder of photos into a collection: idempotent, resumable, and never stopped by a bad file.

How it stays exact
------------------
* **Record ids** are ``sha256(absolute path, content sha256, bbox)`` (first 32 hex digits): the
  same file with the same content always gives the same ids, from any working directory and
  whichever folder above it was ingested. The absolute path (not the path relative to the ingest
  root) is used so ingesting ``~/photos`` and later ``~/photos/2024`` does not store a file twice;
  the price is that a moved folder is new data. Two copies of one photo at two paths are two
  files, each with its own records.
* **The manifest** (:mod:`vecface.manifest`) is a small SQLite database in vecface's data directory (``ingest.sqlite``),
  keyed by (backend, collection). It remembers the embedder a collection was built with (so
  ``vecface search`` needs only ``--backend`` and ``--collection``) and, for each path, the content
  hash, tag and record ids stored for it. The vector stores only search and fetch by id; they have
  no cheap "list ids by path", so this is where ingest looks up what is already stored.
* **Per batch** the records are upserted (committed by the store), then the old ids of files whose
  content changed are deleted, and only then the manifest marks the batch's files done, in one
  SQLite transaction. A crash (SIGKILL, Ctrl-C) therefore loses at most the batch in flight, and
  re-running re-does it: upserts are idempotent by id, and the old ids are still in the manifest.
* **On re-run** a file whose path and content hash match the manifest is skipped without
  decoding (unless ``--tag`` gives it a different tag: then it is stored again with the new tag;
  without ``--tag`` files keep the tag they have); a changed file is re-embedded and replaces its
  old records. Files that were skipped as
  bad are not remembered and are tried again (and reported again) on every run.
* **Workers** (:mod:`vecface.ingest_workers`) read, hash, decode and embed the files in other
  processes; this process alone writes to the store and the manifest, in file order, so the
  guarantees above do not depend on the number of workers.
* If the store holds a different number of records than the manifest says (the collection was
  dropped or re-created, or a run died between the store commit and the manifest write), the
  manifest entries are checked against the store by id and the missing ones forgotten.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from .config import data_dir
from .embedders import Embedder
from .errors import InvalidArgument, VecfaceError
from .images import path_text, scan_images, text_path
from .ingest_workers import FilePool, FileResult, Task, default_workers
from .manifest import FileState, Manifest, check_embedder
from .store import VectorStore

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_SKIPPED = 3  # the run finished, but some files were skipped (listed in the log)


def record_id(path: str, sha256: str, bbox: Any = None) -> str:
    """The stable id of one record: absolute path + content hash + bbox (None: the whole image)."""
    box = "image" if bbox is None else ",".join(str(int(v)) for v in bbox)
    return hashlib.sha256(f"{path}\n{sha256}\n{box}".encode()).hexdigest()[:32]


# ---------------------------------------------------------------- report

@dataclass
class Skipped:
    path: str
    reason: str


@dataclass
class IngestReport:
    root: str
    backend: str
    collection: str
    embedder: str
    files_seen: int = 0
    files_stored: int = 0      # new or changed files whose records were written this run
    files_unchanged: int = 0   # already stored with the same content and tag
    files_replaced: int = 0    # of files_stored: changed files whose old records were replaced
    records_stored: int = 0
    records_deleted: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    seconds: float = 0.0
    log_path: str | None = None

    @property
    def exit_code(self) -> int:
        return EXIT_SKIPPED if self.skipped else EXIT_OK

    @property
    def images_per_second(self) -> float:
        done = self.files_stored + len(self.skipped)
        return done / self.seconds if self.seconds > 0 else 0.0

    def skipped_by_reason(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in self.skipped:
            key = s.reason.split(":")[0]
            out[key] = out.get(key, 0) + 1
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"root": self.root, "backend": self.backend, "collection": self.collection,
                "embedder": self.embedder, "files_seen": self.files_seen, "files_stored": self.files_stored,
                "files_unchanged": self.files_unchanged, "files_replaced": self.files_replaced,
                "records_stored": self.records_stored, "records_deleted": self.records_deleted,
                "skipped": [{"path": s.path, "reason": s.reason} for s in self.skipped],
                "seconds": round(self.seconds, 3), "log_path": self.log_path}


# ---------------------------------------------------------------- ingest

def _reconcile(manifest: Manifest, store: VectorStore, known: dict[str, FileState]) -> dict[str, FileState]:
    """Drop manifest entries whose records are not all in the store (see the module docstring)."""
    expected = sum(len(s.ids) for s in known.values())
    if store.count() == expected:
        return known
    paths = list(known)
    missing: list[str] = []
    for start in range(0, len(paths), 500):
        chunk = paths[start:start + 500]
        ids = [i for p in chunk for i in known[p].ids]
        present = {r.id for r in store.get(ids)} if ids else set()
        missing.extend(p for p in chunk if not set(known[p].ids) <= present)
    if missing:
        manifest.commit(store.backend, store.name, {}, forget=missing)
        for p in missing:
            known.pop(p)
    return known


@contextlib.contextmanager
def _opened(manifest: Manifest | None) -> Iterator[Manifest]:
    """``manifest``, or the default one, opened for the call and closed after it."""
    if manifest is not None:
        yield manifest
        return
    with Manifest() as own:
        yield own


def ingest_folder(store: VectorStore, root: str | os.PathLike[str], embedder: Embedder, *,
                  tag: str | None = None, batch_size: int = 32, progress: bool = True, workers: int | None = None,
                  manifest: Manifest | None = None, log_dir: str | os.PathLike[str] | None = None,
                  max_pixels: int | None = None, console: Any = None, device: str | None = None,
                  on_batch: Callable[[IngestReport], None] | None = None, ray: str | None = None,
                  people: bool = True) -> IngestReport:
    """Embed every image under ``root`` into ``store`` (see the module docstring for the guarantees).

    Returns an :class:`IngestReport`; skipped files are listed in it and in a log file
    (``<data dir>/logs/ingest-<collection>-<time>.log``). Raises only for errors that stop the
    whole run (the store failing, a wrong embedder for the collection).

    ``workers`` processes (default: one per core) read, decode and embed the files, each loading
    the embedder once (built from ``embedder.spec()``; ``device`` for its torch model); ``0`` does
    the work in one thread of this process with ``embedder`` itself. This process stores the
    results batch by batch. ``on_batch(report)`` is called after each committed batch.
    ``ray``: a Ray cluster's address (``"auto"``, ``"local"``, ``host:port``) to do the work on Ray
    actors instead (:mod:`vecface.ingest_ray`; ``workers`` then defaults to the cluster's CPUs).
    ``people``: where the collection has people (``vecface people``), new faces join them or start
    new ones at the end, and the people are recounted (:func:`update_people`); ``False`` leaves
    that to the caller (:func:`ingest_paths` does it once for several folders).
    """
    if batch_size < 1:
        raise InvalidArgument("batch_size must be >= 1")
    if tag is not None and not isinstance(tag, str):
        raise InvalidArgument("tag must be a string")
    n_workers = default_workers() if workers is None else workers
    if isinstance(n_workers, bool) or not isinstance(n_workers, int) or n_workers < 0:
        raise InvalidArgument("workers must be an integer >= 0 (0: in this process)")
    t0 = time.perf_counter()
    with _opened(manifest) as manifest:
        check_embedder(manifest, store, embedder)
        unreadable: list[Skipped] = []
        files = scan_images(root, on_unreadable=lambda d, why: unreadable.append(Skipped(path_text(d), why)))
        report = IngestReport(path_text(Path(root).expanduser().absolute()), store.backend, store.name,
                              embedder.name, files_seen=len(files), skipped=unreadable)
        known = _reconcile(manifest, store, manifest.files(store.backend, store.name))

        bar = _Progress(progress, len(files), console)
        batch: list[FileResult] = []
        stale: list[str] = []  # changed files that turned bad: their old records go

        def flush() -> None:
            nonlocal batch, stale
            if batch or stale:
                _store_batch(store, manifest, embedder, batch, stale, known, tag, report)
                bar.advance(len(batch))
                if on_batch is not None:
                    on_batch(report)
            batch, stale = [], []

        def task(path: Path) -> Task:
            p = path_text(path)
            state = known.get(p)
            same = state is not None and (tag is None or state.tag == tag)  # else: stored again, new tag
            return Task(str(path), p, state.sha256 if same else None)

        # CLIP embeds a chunk as one batch in a worker; face embedders go image by image anyway
        chunk = 1 if embedder.per_face else max(1, min(batch_size, -(-len(files) // max(1, n_workers))))
        if ray is not None:
            from .ingest_ray import RayPool

            executor: Any = RayPool(embedder, ray, workers, max_pixels=max_pixels, device=device, chunk=chunk)
        else:
            executor = FilePool(embedder, n_workers, max_pixels=max_pixels, device=device, chunk=chunk)
        with bar, executor as pool:
            for item in pool.results(task(path) for path in files):
                if item.unchanged:
                    report.files_unchanged += 1
                    bar.advance(1)
                elif item.skip is not None:
                    report.skipped.append(Skipped(item.path, item.skip))
                    if item.path in known:
                        stale.append(item.path)
                    bar.advance(1)
                else:
                    batch.append(item)
                if len(batch) >= batch_size:
                    flush()
            flush()
        if people and _changed(report):
            update_people(store)
        report.seconds = time.perf_counter() - t0
        report.log_path = _write_log(report, log_dir)
        return report


def _changed(*reports: "IngestReport | PruneReport | None") -> bool:
    """Whether any of the runs stored or deleted records (then the people need updating)."""
    return any(isinstance(r, PruneReport) and r.records or isinstance(r, IngestReport) and
               (r.records_stored or r.records_deleted) for r in reports)


def update_people(store: VectorStore) -> None:
    """The collection's people after an ingest stored or deleted faces: faces without a person join
    one or start new ones, and everyone is recounted (faces of changed or pruned files are gone);
    nothing where the collection has no people (:func:`vecface.people.assign_new`)."""
    from .people import assign_new

    assign_new(store)


def ingest_paths(store: VectorStore, paths: Sequence[str | os.PathLike[str]], embedder: Embedder, *,
                 prune: bool = False, people: bool = True, manifest: Manifest | None = None,
                 **options: Any) -> tuple[list[IngestReport], PruneReport | None]:
    """:func:`ingest_folder` of each of ``paths`` in turn (``options`` are its keyword arguments),
    after :func:`prune_missing` of them when ``prune``; with ``people``, the collection's people are
    updated once, after them all, for what every path stored or deleted (:func:`update_people`),
    and also when a path failed (for what it and the paths before it stored). Returns the reports, one per
    path, and the prune's report (None without ``prune``)."""
    paths = list(paths)
    reports: list[IngestReport] = []
    pruned: PruneReport | None = None
    try:
        with _opened(manifest) as manifest:
            if prune:
                pruned = prune_missing(store, paths, manifest, people=False)
            for path in paths:
                reports.append(ingest_folder(store, path, embedder, manifest=manifest, people=False, **options))
    except Exception:
        # what was stored before the failure still gets its people, the failing path's own earlier
        # batches included (its report never came back, so nothing tells whether it stored any)
        if people:
            with contextlib.suppress(VecfaceError):
                update_people(store)
        raise
    if people and _changed(pruned, *reports):
        update_people(store)
    return reports, pruned


def _store_batch(store: VectorStore, manifest: Manifest, embedder: Embedder, batch: list[FileResult],
                 stale: list[str], known: dict[str, FileState], tag: str | None, report: IngestReport) -> None:
    ids: list[str] = []
    vectors: list[np.ndarray] = []
    metas: list[dict[str, Any]] = []
    done: dict[str, FileState] = {}
    forget = list(stale)
    for it in batch:
        file_ids = []
        # no --tag given: a changed file keeps the tag it had
        file_tag = tag if tag is not None else (known[it.path].tag if it.path in known else None)
        for n, item in enumerate(it.items, 1):
            rid = record_id(it.path, it.sha256, item.bbox)
            meta: dict[str, Any] = {"path": it.path, "sha256": it.sha256, "embedder": embedder.kind, **it.exif}
            if file_tag is not None:
                meta["tag"] = file_tag
            if item.bbox is not None:
                meta["bbox"] = list(item.bbox)
                meta["face"] = n
            if item.score is not None:
                meta["score"] = round(float(item.score), 4)
            if it.size:
                meta["width"], meta["height"] = it.size
            ids.append(rid)
            vectors.append(item.vector)
            metas.append(meta)
            file_ids.append(rid)
        done[it.path] = FileState(it.sha256, file_tag, file_ids)
    if ids:
        store.upsert_arrays(ids, np.stack(vectors), metas, batch_size=max(len(ids), 1))
    old: list[str] = []
    for p in list(done) + forget:
        if p in known:
            keep = set(done[p].ids) if p in done else set()
            old.extend(i for i in known[p].ids if i not in keep)
            if p in done:
                report.files_replaced += 1
    if old:
        report.records_deleted += store.delete(old)
    manifest.commit(store.backend, store.name, done, forget=forget)
    for p in forget:
        known.pop(p, None)
    known.update(done)
    report.files_stored += len(done)
    report.records_stored += len(ids)


@dataclass
class PruneReport:
    files: int = 0     # manifest entries whose file is gone from disk
    records: int = 0   # their records deleted from the store

    def to_dict(self) -> dict[str, int]:
        return {"files_pruned": self.files, "records_pruned": self.records}


def _under(path: str, roots: list[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip(os.sep) + os.sep) for r in roots)


def prune_missing(store: VectorStore, roots: list[str | os.PathLike[str]], manifest: Manifest | None = None,
                  *, people: bool = True) -> PruneReport:
    """Delete the records of files under ``roots`` (folders or files, as ingest was given them) that the
    manifest holds but that are gone from disk, and forget them in the manifest. Files elsewhere, and
    files still on disk (even unreadable ones), are not touched. The manifest is read afresh here.
    With ``people``, the collection's people, if it has any, are recounted without the deleted faces."""
    with _opened(manifest) as manifest:
        texts = [path_text(Path(r).expanduser().absolute()) for r in roots]
        known = manifest.files(store.backend, store.name)
        gone = [p for p in known if _under(p, texts) and not os.path.lexists(text_path(p))]
        report = PruneReport(files=len(gone))
        ids = [i for p in gone for i in known[p].ids]
        for start in range(0, len(ids), 500):  # store first: a crash leaves ids the next prune deletes
            report.records += store.delete(ids[start:start + 500])
        if gone:
            manifest.commit(store.backend, store.name, {}, forget=gone)
        if people and report.records:
            from .people import refresh

            refresh(store)  # the people's face counts and representatives without the deleted faces
        return report


def log_escape(text: str) -> str:
    """``text`` on one log line: backslashes doubled, control characters and line separators
    written as escapes, so a file name cannot forge or break lines of the log."""
    return "".join("\\\\" if c == "\\" else c if c.isprintable() or c == " " else c.encode("unicode_escape").decode("ascii")
                   for c in text)


def _write_log(report: IngestReport, log_dir: str | os.PathLike[str] | None) -> str:
    folder = Path(log_dir) if log_dir else data_dir() / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    path = folder / f"ingest-{report.collection}-{stamp}.log"
    lines = [f"# vecface ingest {log_escape(report.root)} -> {report.backend}/{report.collection} ({report.embedder})",
             f"# files {report.files_seen}, stored {report.files_stored}, unchanged {report.files_unchanged}, "
             f"skipped {len(report.skipped)}, records stored {report.records_stored}, "
             f"deleted {report.records_deleted}, {report.seconds:.1f} s"]
    lines += [f"SKIPPED\t{log_escape(s.path)}\t{log_escape(s.reason)}" for s in report.skipped]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


class _Progress:
    """A rich progress bar with images/s, or nothing."""

    def __init__(self, enabled: bool, total: int, console: Any = None):
        self.enabled = enabled
        self.total = total
        self.console = console
        self._progress = None
        self._task = None

    def __enter__(self) -> "_Progress":
        if self.enabled:
            from rich.console import Console
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn,
                                       TimeElapsedColumn, TimeRemainingColumn)
            from rich.text import Text

            class Rate(ProgressColumn):
                def render(self, task):  # type: ignore[override]
                    speed = task.finished_speed or task.speed
                    return Text(f"{speed:6.1f} images/s" if speed else "   ... images/s", style="cyan")

            self._progress = Progress(TextColumn("ingest"), BarColumn(), MofNCompleteColumn(), Rate(),
                                      TimeElapsedColumn(), TimeRemainingColumn(),
                                      console=self.console or Console(stderr=True), transient=False)
            self._progress.__enter__()
            self._task = self._progress.add_task("ingest", total=self.total)
        return self

    def advance(self, n: int) -> None:
        if self._progress is not None and n:
            self._progress.advance(self._task, n)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)
