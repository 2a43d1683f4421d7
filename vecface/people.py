"""Faces become people: grouping the faces of a collection without a reference photo, and naming,
merging, splitting and unassigning them.

How it works
------------
* **Grouping** (:func:`group`) reads every face vector of the collection (the record ids come from
  the ingest manifest; the vectors from the store), links each face to its nearest neighbours that
  lie within the embedder's same-person ``threshold`` (a cosine distance on the stored, normalised
  vectors) and splits that graph into people with dlib's Chinese whispers
  (``dlib.chinese_whispers``, the algorithm of dlib's own face clustering example).
* **Where it is kept.** Each face record gets a ``person`` id (``p1``, ``p2``, ...) in its metadata,
  written back by an upsert of the same id and vector with only that key changed, so every backend
  can filter on it natively (``{"person": "p3"}``). The people themselves (name, face count,
  representative face) are a ``people`` table in the ingest manifest's SQLite file (see
  :class:`PeopleTable`), beside the collection's files and embedder.
* **Stable ids.** Grouping again keeps each group's id (the id most of its faces had), so names
  and merges survive new photos; ``fresh=True`` starts over. Faces set by hand (``unassign``,
  ``split``) carry ``person_fixed`` and are left as they are.
* **New photos** (:func:`assign_new`) join the person of their nearest already-grouped face within
  the threshold (a filtered search of the store); the rest are grouped among themselves into new people.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from .errors import InvalidArgument, UnknownCollection, UnknownRecord
from .grouping import check_threshold, cluster, representative, threshold_for
from .manifest import ManifestFile
from .store import VectorStore
from .types import Record

_PERSON_ID = re.compile(r"^p(\d+)$")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS people (
    backend TEXT NOT NULL, collection TEXT NOT NULL, person TEXT NOT NULL, name TEXT,
    faces INTEGER NOT NULL, representative TEXT, path TEXT, bbox TEXT,
    PRIMARY KEY (backend, collection, person));
"""


@dataclass
class Person:
    """One person of a collection: id (``p3``), name (or None), face count, representative face."""

    id: str
    name: str | None = None
    faces: int = 0
    representative: str | None = None  # a face record id
    path: str | None = None
    bbox: list[int] | None = None

    @property
    def label(self) -> str:
        return self.name or self.id

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "faces": self.faces, "representative": self.representative,
                "path": self.path, "bbox": self.bbox}


class PeopleTable(ManifestFile):
    """The people of each (backend, collection), in the ingest manifest's SQLite file."""

    SCHEMA = _SCHEMA

    def list(self, backend: str, collection: str) -> list[Person]:
        rows = self._db.execute("SELECT person, name, faces, representative, path, bbox FROM people "
                                "WHERE backend=? AND collection=?", (backend, collection)).fetchall()
        people = [Person(p, n, int(f), r, path, json.loads(b) if b else None) for p, n, f, r, path, b in rows]
        return sorted(people, key=lambda p: (-p.faces, _number(p.id)))

    def replace(self, backend: str, collection: str, people: Iterable[Person]) -> None:
        """Make ``people`` the collection's whole table, in one transaction."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute("DELETE FROM people WHERE backend=? AND collection=?", (backend, collection))
                self._db.executemany(
                    "INSERT INTO people (backend, collection, person, name, faces, representative, path, bbox) "
                    "VALUES (?,?,?,?,?,?,?,?)",
                    [(backend, collection, p.id, p.name, p.faces, p.representative, p.path,
                      json.dumps(p.bbox) if p.bbox is not None else None) for p in people])
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def forget(self, backend: str, collection: str) -> None:
        self.replace(backend, collection, [])


def _number(person_id: str) -> int:
    m = _PERSON_ID.match(person_id or "")
    return int(m.group(1)) if m else 0


# ---------------------------------------------------------------- reading and writing faces

@dataclass
class Faces:
    """The records of a collection: ids, vectors (n, dim) and metadata, in the same order."""

    ids: list[str]
    vectors: np.ndarray
    metadata: list[dict[str, Any]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)


@contextlib.contextmanager
def _manifest(manifest: Any) -> Iterator[Any]:
    """The given ingest manifest, or the default one opened (and closed) here."""
    if manifest is not None:
        yield manifest
        return
    from .manifest import Manifest

    with Manifest() as opened:
        yield opened


def collection_ids(store: VectorStore, manifest: Any = None) -> list[str]:
    """Every record id ingest stored in ``store``'s collection (from the manifest)."""
    with _manifest(manifest) as m:
        files = m.files(store.backend, store.name)
    if not files:
        raise UnknownCollection(f"no ingest of collection {store.name!r} in {store.backend} is recorded here; "
                                "people are grouped from the faces vecface ingest stored")
    return [i for path in sorted(files) for i in files[path].ids]


def load_faces(store: VectorStore, ids: Sequence[str], chunk: int = 500) -> Faces:
    recs: list[Record] = []
    for start in range(0, len(ids), chunk):
        recs.extend(store.get(list(ids[start:start + chunk])))
    vectors = np.stack([np.asarray(r.vector, dtype=np.float32) for r in recs]) if recs \
        else np.zeros((0, store.dim), dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors = vectors / np.where(norms == 0, 1, norms)
    return Faces([r.id for r in recs], vectors.astype(np.float32), [dict(r.metadata) for r in recs])


def _write(store: VectorStore, faces: Faces, rows: Sequence[int], changes: dict[int, dict[str, Any]]) -> int:
    """Upsert the given rows with the same id and vector and metadata changed by ``changes[row]``
    (a value None removes the key). Returns how many records were rewritten."""
    rows = [r for r in rows if r in changes]
    if not rows:
        return 0
    metas = []
    for r in rows:
        meta = dict(faces.metadata[r])
        for key, value in changes[r].items():
            if value is None:
                meta.pop(key, None)
            else:
                meta[key] = value
        faces.metadata[r] = meta
        metas.append(meta)
    return store.upsert_arrays([faces.ids[r] for r in rows], faces.vectors[rows], metas)


def _summarise(faces: Faces, names: dict[str, str | None]) -> list[Person]:
    """People from the faces' ``person`` keys, with names kept from ``names``."""
    rows: dict[str, list[int]] = {}
    for r, meta in enumerate(faces.metadata):
        if meta.get("person"):
            rows.setdefault(meta["person"], []).append(r)
    people = []
    for pid, members in rows.items():
        best = members[representative(faces.vectors[members])]
        meta = faces.metadata[best]
        people.append(Person(pid, names.get(pid), len(members), faces.ids[best], meta.get("path"), meta.get("bbox")))
    return sorted(people, key=lambda p: (-p.faces, _number(p.id)))


def _embedder_kind(store: VectorStore, manifest: Any) -> str | None:
    with _manifest(manifest) as m:
        found = m.embedder(store.backend, store.name)
    return found[0].kind if found else None


# ---------------------------------------------------------------- the operations

@dataclass
class GroupReport:
    people: list[Person]
    faces: int  # faces read
    changed: int  # face records rewritten
    threshold: float

    def to_dict(self) -> dict[str, Any]:
        return {"people": [p.to_dict() for p in self.people], "faces": self.faces, "changed": self.changed,
                "threshold": self.threshold}


def group(store: VectorStore, *, threshold: float | None = None, fresh: bool = False, manifest: Any = None,
          table: PeopleTable | None = None) -> GroupReport:
    """Group every face of ``store``'s collection into people (see the module docstring)."""
    threshold = check_threshold(threshold) if threshold is not None else threshold_for(_embedder_kind(store, manifest))
    faces = load_faces(store, collection_ids(store, manifest))
    with _table(table, manifest) as people_table:
        names = {p.id: p.name for p in people_table.list(store.backend, store.name)}
        free = [r for r, m in enumerate(faces.metadata) if not m.get("person_fixed")]
        labels = cluster(faces.vectors[free], threshold) if free else np.zeros(0, dtype=np.int64)
        next_id = max([_number(p) for p in list(names) + [m.get("person") or "" for m in faces.metadata]] + [0]) + 1
        changes: dict[int, dict[str, Any]] = {}
        for lab in range(int(labels.max()) + 1 if len(labels) else 0):
            members = [free[i] for i in np.flatnonzero(labels == lab)]
            before = Counter(faces.metadata[r].get("person") for r in members if faces.metadata[r].get("person"))
            pid = before.most_common(1)[0][0] if before and not fresh else None
            if pid is None:
                pid, next_id = f"p{next_id}", next_id + 1
            changes.update({r: {"person": pid} for r in members if faces.metadata[r].get("person") != pid})
        changed = _write(store, faces, sorted(changes), changes)
        people = _summarise(faces, names)
        people_table.replace(store.backend, store.name, people)
    return GroupReport(people, len(faces), changed, threshold)


def assign_new(store: VectorStore, ids: Sequence[str] | None = None, *, threshold: float | None = None,
               manifest: Any = None, table: PeopleTable | None = None) -> dict[str, str]:
    """Give faces without a person (``ids``, or every such face of the collection) the person of
    their nearest grouped face within the threshold; group the rest among themselves into new
    people. Does nothing where the collection has no people yet (run :func:`group` first).
    Returns {face id: person id} for the faces it assigned."""
    threshold = check_threshold(threshold) if threshold is not None else threshold_for(_embedder_kind(store, manifest))
    with _table(table, manifest) as people_table:
        known = people_table.list(store.backend, store.name)
        if not known:
            return {}
        faces = load_faces(store, list(ids) if ids is not None else collection_ids(store, manifest))
        todo = [r for r, m in enumerate(faces.metadata) if not m.get("person") and not m.get("person_fixed")]
        if not todo:
            return {}
        hits = store.search_many(faces.vectors[todo], 1, {"person": [p.id for p in known]})
        changes: dict[int, dict[str, Any]] = {}
        for r, found in zip(todo, hits):
            if found and found[0].distance <= threshold:
                changes[r] = {"person": found[0].metadata.get("person")}
        rest = [r for r in todo if r not in changes]
        next_id = max(_number(p.id) for p in known) + 1
        labels = cluster(faces.vectors[rest], threshold) if rest else np.zeros(0, dtype=np.int64)
        for r, lab in zip(rest, labels.tolist()):
            changes[r] = {"person": f"p{next_id + lab}"}
        _write(store, faces, sorted(changes), changes)
        _refresh(store, people_table, manifest)
        return {faces.ids[r]: c["person"] for r, c in changes.items()}


def _refresh(store: VectorStore, people_table: PeopleTable, manifest: Any = None) -> list[Person]:
    """Recount the people table from the face records (after an edit)."""
    names = {p.id: p.name for p in people_table.list(store.backend, store.name)}
    faces = load_faces(store, collection_ids(store, manifest))
    people = _summarise(faces, names)
    people_table.replace(store.backend, store.name, people)
    return people


@contextlib.contextmanager
def _table(table: PeopleTable | None, manifest: Any = None) -> Iterator[PeopleTable]:
    """The given people table, or the one in ``manifest``'s file (else the default one), opened here."""
    if table is not None:
        yield table
        return
    with PeopleTable(getattr(manifest, "path", None)) as opened:
        yield opened


def list_people(store: VectorStore, table: PeopleTable | None = None) -> list[Person]:
    with _table(table) as t:
        return t.list(store.backend, store.name)


def resolve(store: VectorStore, who: str | Sequence[str], table: PeopleTable | None = None) -> list[str]:
    """Person ids for names or ids (``"Grandpa"``, ``"p3"``; names compare case-insensitively).
    Raises UnknownRecord naming the people there are for one that matches nobody."""
    wanted = [who] if isinstance(who, str) else list(who)
    people = list_people(store, table)
    out = []
    for w in wanted:
        found = [p.id for p in people if p.id == w] or [p.id for p in people if (p.name or "").casefold() == w.casefold()]
        if not found:
            known = ", ".join(p.name or p.id for p in people[:20]) or "none yet (run vecface people first)"
            raise UnknownRecord(f"collection {store.name!r} has no person {w!r}; people: {known}")
        out.extend(found)
    return sorted(set(out))


def rename(store: VectorStore, who: str, name: str | None, table: PeopleTable | None = None) -> Person:
    """Name a person (None or "" removes the name). A name another person has is refused: merge them."""
    name = (name or "").strip() or None
    with _table(table) as t:
        (pid,) = resolve(store, who, t)[:1]
        people = t.list(store.backend, store.name)
        if name and any(p.id != pid and (p.name or "").casefold() == name.casefold() for p in people):
            raise InvalidArgument(f"another person is already named {name!r}; merge them with vecface people merge")
        for p in people:
            if p.id == pid:
                p.name = name
        t.replace(store.backend, store.name, people)
        return next(p for p in people if p.id == pid)


def merge(store: VectorStore, keep: str, other: str, *, manifest: Any = None,
          table: PeopleTable | None = None) -> Person:
    """Move every face of ``other`` to ``keep`` (which keeps its name, or takes ``other``'s if it has none)."""
    with _table(table, manifest) as t:
        (kid,), (oid,) = resolve(store, keep, t)[:1], resolve(store, other, t)[:1]
        if kid == oid:
            raise InvalidArgument(f"{keep!r} and {other!r} are the same person")
        faces = load_faces(store, collection_ids(store, manifest))
        changes = {r: {"person": kid} for r, m in enumerate(faces.metadata) if m.get("person") == oid}
        _write(store, faces, sorted(changes), changes)
        names = {p.id: p.name for p in t.list(store.backend, store.name)}
        names[kid] = names.get(kid) or names.get(oid)
        people = _summarise(faces, names)
        t.replace(store.backend, store.name, people)
        return next(p for p in people if p.id == kid)


def unassign(store: VectorStore, face_ids: Sequence[str], *, manifest: Any = None,
             table: PeopleTable | None = None) -> int:
    """Take faces out of their person for good (grouping again leaves them out). Returns how many."""
    return _move(store, face_ids, None, manifest, table)


def split(store: VectorStore, face_ids: Sequence[str], *, manifest: Any = None,
          table: PeopleTable | None = None) -> Person:
    """Make the given faces a new person of their own (kept apart when grouping again)."""
    with _table(table, manifest) as t:
        known = t.list(store.backend, store.name)
        pid = f"p{max([_number(p.id) for p in known] + [0]) + 1}"
        _move(store, face_ids, pid, manifest, t)
        return next(p for p in t.list(store.backend, store.name) if p.id == pid)


def _move(store: VectorStore, face_ids: Sequence[str], pid: str | None, manifest: Any,
          table: PeopleTable | None) -> int:
    face_ids = list(dict.fromkeys(face_ids))
    if not face_ids:
        raise InvalidArgument("name at least one face id")
    faces = load_faces(store, face_ids)
    missing = sorted(set(face_ids) - set(faces.ids))
    if missing:
        raise UnknownRecord(f"collection {store.name!r} has no face {missing[0]!r}")
    with _table(table, manifest) as t:
        changes = {r: {"person": pid, "person_fixed": True} for r in range(len(faces))}
        n = _write(store, faces, sorted(changes), changes)
        _refresh(store, t, manifest)
        return n
