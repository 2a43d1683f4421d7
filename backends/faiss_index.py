"""The FAISS collection's index: built over the flat vector file, saved with a stamp, loaded back.

``index.<epoch>.faiss`` holds a one-line JSON header (epoch, index spec, rows covered) and the
serialised index in ONE file, written under a name unique to this process and thread, fsynced, then
renamed over the old one: the header can never describe other data than the index bytes after it.

Labels are slots: vectors are added in slot order with no id map, so a saved index is a cache of
the first ``rows`` slots of its epoch. :func:`load_or_build` adds the slots after it from the vector
file, and rebuilds when the header names another epoch or spec, or the file is damaged.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from vecface.errors import InvalidArgument
from vecface.types import HNSW, Exact, IndexSpec, IVFFlat, Metric, spec_to_dict

from .faiss_files import VectorFile, fsync_dir, unique_tmp

_MAGIC = b"VECFACE-FAISS-INDEX 1\n"
_IVF_TRAIN_PER_LIST = 256
#: rows read from the vector file at a time
CHUNK = 50_000


def build(spec: IndexSpec, dim: int, metric: Metric, vectors: VectorFile, n: int) -> Any:
    """A new index of ``spec`` over slots [0, n) of the vector file (IVF trained on an even sample)."""
    m = metric.faiss_metric
    if isinstance(spec, HNSW):
        index = faiss.IndexHNSWFlat(dim, spec.m, m)
        index.hnsw.efConstruction = spec.ef_construction
    elif isinstance(spec, IVFFlat):
        if n < 1:
            raise InvalidArgument("an IVFFlat index is trained on the data: load rows before building it")
        lists = min(spec.resolve_lists(n), n)
        # IVF lists keep the labels they are given (slots, in order): no id map needed
        index = faiss.IndexIVFFlat(faiss.IndexFlat(dim, m), dim, lists, m)
        step = max(1, n // (lists * _IVF_TRAIN_PER_LIST))  # every step-th row: reproducible
        index.train(np.ascontiguousarray(vectors.rows(n)[::step][: lists * _IVF_TRAIN_PER_LIST]))
    else:
        index = faiss.IndexFlat(dim, m)
    add_slots(index, vectors, 0, n)
    return index


def make_room(index: Any, rows: int) -> None:
    """Grow a flat index's vector storage for ``rows`` more vectors in one step, ahead of their adds
    (the caller holds the state lock: the storage may move). FAISS grows it add by add, and the
    first touch of the new memory (page faults) is most of an add's cost: 9 ms for 5,000 x 512 rows,
    1.3 ms into storage grown ahead. Other index kinds are left as they are."""
    if isinstance(index, faiss.IndexFlat):
        codes, used = index.codes, index.ntotal * index.code_size
        codes.resize(used + rows * index.code_size)
        codes.resize(used)  # back to the rows it holds: a vector keeps its capacity when it shrinks


def add_slots(index: Any, vectors: VectorFile, start: int, stop: int) -> None:
    for s in range(start, stop, CHUNK):
        index.add(vectors.read(s, min(stop, s + CHUNK)))


def header_for(epoch: str, spec: IndexSpec, index: Any) -> dict[str, Any]:
    return {"epoch": epoch, "spec": spec_to_dict(spec), "rows": int(index.ntotal)}


def load_or_build(path: Path, epoch: str, spec: IndexSpec, dim: int, metric: Metric,
                  vectors: VectorFile, n: int) -> Any:
    """The saved index if it belongs to this epoch and spec (plus the slots after it), else a new one.
    Exact (flat) indexes are never saved: adding the vector file to an IndexFlat costs what reading it does."""
    if not isinstance(spec, Exact):
        found = load(path)
        if found is not None:
            header, index = found
            if header.get("epoch") == epoch and header.get("spec") == spec_to_dict(spec) and header["rows"] <= n:
                add_slots(index, vectors, header["rows"], n)
                return index
    return build(spec, dim, metric, vectors, n)


def is_current(path: Path, epoch: str, spec: IndexSpec, rows: int) -> bool:
    """Whether the saved index already holds at least ``rows`` slots of this epoch and spec."""
    header = read_header(path)
    return bool(header and header.get("epoch") == epoch and header.get("spec") == spec_to_dict(spec)
                and header.get("rows", -1) >= rows)


def save(path: Path, index: Any, header: dict[str, Any]) -> None:
    """Write the header and the serialised index together, atomically and durably."""
    blob = faiss.serialize_index(index)
    head = json.dumps(header, sort_keys=True).encode() + b"\n"
    tmp = unique_tmp(path)
    try:
        with open(tmp, "wb") as f:
            f.write(_MAGIC)
            f.write(head)
            f.write(memoryview(blob))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def read_header(path: Path) -> dict[str, Any] | None:
    """The header of an index file, or None if there is none (or it is not one of ours)."""
    try:
        with open(path, "rb") as f:
            if f.read(len(_MAGIC)) != _MAGIC:
                return None
            return json.loads(f.readline())
    except (OSError, ValueError):
        return None


def load(path: Path) -> tuple[dict[str, Any], Any] | None:
    """(header, index) from an index file; None if missing, foreign or damaged (then it is rebuilt)."""
    try:
        with open(path, "rb") as f:
            if f.read(len(_MAGIC)) != _MAGIC:
                return None
            header = json.loads(f.readline())
            blob = np.frombuffer(f.read(), dtype=np.uint8)
        index = faiss.deserialize_index(blob)
    except (OSError, ValueError, RuntimeError):
        return None
    if index.ntotal != header.get("rows"):
        return None
    return header, index


class RawAdd:
    """The raw load baseline: FAISS's own ``index.add`` into a new in-memory flat index of the
    collection's dimension and metric (nothing persisted, no ids or metadata kept); let go on leaving."""

    method = "IndexFlat.add, in memory (nothing persisted, no metadata)"

    def __init__(self, dim: int, metric: Metric):
        self.dim, self.metric, self.index = dim, metric, None

    def __enter__(self) -> "RawAdd":
        self.index = faiss.IndexFlat(self.dim, self.metric.faiss_metric)
        return self

    def __exit__(self, *exc: object) -> None:
        self.index = None

    def __call__(self, ids: Any, vectors: np.ndarray, metadata: Any) -> None:
        self.index.add(np.ascontiguousarray(vectors, dtype=np.float32))
