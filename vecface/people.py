"""Faces become people: grouping the faces of a collection without a reference photo, and naming,
merging, splitting and unassigning them.

How it works
------------
* **Grouping** (:func:`group`) reads every face vector of the collection (the record ids from the
  store itself, :meth:`VectorStore.ids`), links each face to its nearest neighbours that lie within
  the embedder's same-person ``threshold`` (a cosine distance on the stored, normalised vectors) and
  splits that graph into people with dlib's Chinese whispers (``dlib.chinese_whispers``, the
  algorithm of dlib's own face clustering example).
* **Where it is kept.** Each face record gets a ``person`` id (``p1``, ``p2``, ...) in its metadata,
  written back by an upsert of the same id and vector with only that key changed, so every backend
  can filter on it natively (``{"person": "p3"}``). The people themselves (name, face count,
  representative face) are kept in the collection's own description in the store
  (``store.info["people"]``, see :mod:`vecface.collection_info`), so another machine pointed at the
  same server lists, searches and edits the same people with no local manifest.
* **Stable ids.** Grouping again keeps each group's id (the id most of its faces had), so names
  and merges survive new photos; ``fresh=True`` starts over. Faces set by hand (``unassign``,
  ``split``) carry ``person_fixed`` and are left as they are. An id is never given twice: the next
  number is kept in the store (``people_next``), so an id a merge freed never comes to mean someone else.
* **New photos** (:func:`assign_new`) join the person of their nearest already-grouped face within
  the threshold (a filtered search of the store); the rest are grouped among themselves into new people.
* **Counts** are recounted from the face records (:func:`refresh`) after every edit here, and by
  ingest after it stored or deleted faces (``--prune``, changed files).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .collection_info import spec_of
from .errors import InvalidArgument, UnknownRecord, UnsupportedOperation
from .grouping import check_threshold, cluster, representative, threshold_for
from .store import VectorStore
from .types import Record

_PERSON_ID = re.compile(r"^p(\d+)$")
INFO_KEY = "people"  # where the people are in the store's description
NEXT_KEY = "people_next"  # the next person number: an id is never given twice, even one a merge freed


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

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Person":
        bbox = d.get("bbox")
        return cls(str(d["id"]), d.get("name") or None, int(d.get("faces") or 0), d.get("representative"),
                   d.get("path"), [int(v) for v in bbox] if bbox is not None else None)


def _number(person_id: str) -> int:
    m = _PERSON_ID.match(person_id or "")
    return int(m.group(1)) if m else 0


def _ordered(people: list[Person]) -> list[Person]:
    return sorted(people, key=lambda p: (-p.faces, _number(p.id)))


def _info(store: VectorStore) -> dict[str, Any]:
    """The store's description, read once per operation (a round trip on a server backend); empty
    where the backend keeps no description."""
    try:
        return store.info
    except UnsupportedOperation:
        return {}


def _people(info: Mapping[str, Any]) -> list[Person]:
    """The people kept in a store's description ``info``."""
    raw = info.get(INFO_KEY) or []
    return _ordered([Person.from_dict(d) for d in raw if isinstance(d, Mapping) and d.get("id")])


def _stored(store: VectorStore) -> list[Person]:
    """The people kept in the store's description (none where the backend keeps no description)."""
    return _people(_info(store))


def _save(store: VectorStore, people: list[Person]) -> None:
    """Make ``people`` the collection's whole list, in its description (other keys kept)."""
    info = store.info
    info[INFO_KEY] = [p.to_dict() for p in people]
    info[NEXT_KEY] = _next_number(info, [p.id for p in people])
    store.set_info(info)


def _next_number(info: Mapping[str, Any], ids: Iterable[str] = ()) -> int:
    """The number of the next new person: past every id given so far (kept in the store's
    description ``info``) and ``ids``."""
    return max([int(info.get(NEXT_KEY) or 1)] + [_number(i) + 1 for i in ids])


# ---------------------------------------------------------------- reading and writing faces

@dataclass
class Faces:
    """The records of a collection: ids, vectors (n, dim) and metadata, in the same order."""

    ids: list[str]
    vectors: np.ndarray
    metadata: list[dict[str, Any]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)


def load_faces(store: VectorStore, ids: Sequence[str] | None = None, chunk: int = 500) -> Faces:
    """The records ``ids`` (default: every record of the collection) with L2-normalised vectors."""
    ids = store.ids() if ids is None else ids
    recs: list[Record] = []
    for start in range(0, len(ids), chunk):
        recs.extend(store.get(list(ids[start:start + chunk])))
    vectors = np.stack([np.asarray(r.vector, dtype=np.float32) for r in recs]) if recs \
        else np.zeros((0, store.dim), dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors = vectors / np.where(norms == 0, 1, norms)
    return Faces([r.id for r in recs], vectors.astype(np.float32), [dict(r.metadata) for r in recs])


def _write(store: VectorStore, faces: Faces, changes: dict[int, dict[str, Any]]) -> int:
    """Upsert the rows in ``changes`` with the same id and vector and metadata changed by
    ``changes[row]`` (a value None removes the key). Returns how many records were rewritten."""
    rows = sorted(changes)
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
    return _ordered(people)


def _threshold(info: Mapping[str, Any], threshold: float | None, faces: Faces) -> float:
    """The threshold asked for, else the default of the collection's embedder: the one its own
    description in the store (``info``) names, else the one most of its face records name."""
    if threshold is not None:
        return check_threshold(threshold)
    spec = spec_of(info)
    kinds = Counter(m.get("embedder") for m in faces.metadata if m.get("embedder"))
    return threshold_for(spec.kind if spec is not None else (kinds.most_common(1)[0][0] if kinds else None))


def _recount(store: VectorStore, faces: Faces, names: dict[str, str | None]) -> list[Person]:
    people = _summarise(faces, names)
    _save(store, people)
    return people


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


def group(store: VectorStore, *, threshold: float | None = None, fresh: bool = False) -> GroupReport:
    """Group every face of ``store``'s collection into people (see the module docstring)."""
    faces = load_faces(store)
    info = _info(store)
    threshold = _threshold(info, threshold, faces)
    names = {p.id: p.name for p in _people(info)}
    free = [r for r, m in enumerate(faces.metadata) if not m.get("person_fixed")]
    labels = cluster(faces.vectors[free], threshold) if free else np.zeros(0, dtype=np.int64)
    next_id = _next_number(info, list(names) + [m.get("person") or "" for m in faces.metadata])
    changes: dict[int, dict[str, Any]] = {}
    for lab in range(int(labels.max()) + 1 if len(labels) else 0):
        members = [free[i] for i in np.flatnonzero(labels == lab)]
        before = Counter(faces.metadata[r].get("person") for r in members if faces.metadata[r].get("person"))
        pid = before.most_common(1)[0][0] if before and not fresh else None
        if pid is None:
            pid, next_id = f"p{next_id}", next_id + 1
        changes.update({r: {"person": pid} for r in members if faces.metadata[r].get("person") != pid})
    changed = _write(store, faces, changes)
    return GroupReport(_recount(store, faces, names), len(faces), changed, threshold)


def assign_new(store: VectorStore, ids: Sequence[str] | None = None, *,
               threshold: float | None = None) -> dict[str, str]:
    """Give faces without a person (``ids``, or every such face of the collection) the person of
    their nearest grouped face within the threshold; group the rest among themselves into new
    people, and recount everyone. Does nothing where the collection has no people yet (run
    :func:`group` first). Returns {face id: person id} for the faces it assigned."""
    info = _info(store)
    known = _people(info)
    if not known:
        return {}
    faces = load_faces(store, ids)
    threshold = _threshold(info, threshold, faces)
    todo = [r for r, m in enumerate(faces.metadata) if not m.get("person") and not m.get("person_fixed")]
    changes: dict[int, dict[str, Any]] = {}
    if todo:
        hits = store.search_many(faces.vectors[todo], 1, {"person": [p.id for p in known]})
        for r, found in zip(todo, hits):
            if found and found[0].distance <= threshold:
                changes[r] = {"person": found[0].metadata.get("person")}
        rest = [r for r in todo if r not in changes]
        next_id = _next_number(info, [p.id for p in known])
        labels = cluster(faces.vectors[rest], threshold) if rest else np.zeros(0, dtype=np.int64)
        for r, lab in zip(rest, labels.tolist()):
            changes[r] = {"person": f"p{next_id + lab}"}
        _write(store, faces, changes)
    _recount(store, faces if ids is None else load_faces(store), {p.id: p.name for p in known})
    return {faces.ids[r]: c["person"] for r, c in changes.items()}


def refresh(store: VectorStore) -> list[Person]:
    """Recount the collection's people from its face records (after faces were deleted or edited);
    a collection without people is left as it is. Returns the people."""
    known = _stored(store)
    return _recount(store, load_faces(store), {p.id: p.name for p in known}) if known else []


def list_people(store: VectorStore) -> list[Person]:
    """The people as last grouped or edited, most faces first (read from the store)."""
    return _stored(store)


def resolve(store: VectorStore, who: str | Sequence[str]) -> list[str]:
    """Person ids for names or ids (``"Grandpa"``, ``"p3"``; names compare case-insensitively).
    Raises UnknownRecord naming the people there are for one that matches nobody."""
    return _resolve(store, who, _stored(store))


def find(store: VectorStore, who: str, people: list[Person] | None = None) -> Person:
    """The one person ``who`` (an id or a name) of ``people`` (default: the store's); UnknownRecord
    for nobody."""
    people = _stored(store) if people is None else people
    pid = _resolve(store, who, people)[0]
    return next(p for p in people if p.id == pid)


def _resolve(store: VectorStore, who: str | Sequence[str], people: list[Person]) -> list[str]:
    wanted = [who] if isinstance(who, str) else list(who)
    out = []
    for w in wanted:
        found = [p.id for p in people if p.id == w] or [p.id for p in people if (p.name or "").casefold() == w.casefold()]
        if not found:
            known = ", ".join(p.name or p.id for p in people[:20]) or "none yet (run vecface people first)"
            raise UnknownRecord(f"collection {store.name!r} has no person {w!r}; people: {known}")
        out.extend(found)
    return sorted(set(out))


def rename(store: VectorStore, who: str, name: str | None) -> Person:
    """Name a person (None or "" removes the name). A name another person has is refused: merge them."""
    name = (name or "").strip() or None
    people = _stored(store)
    person = find(store, who, people)
    if name and any(p.id != person.id and (p.name or "").casefold() == name.casefold() for p in people):
        raise InvalidArgument(f"another person is already named {name!r}; merge them with vecface people merge")
    person.name = name
    _save(store, people)
    return person


def merge(store: VectorStore, keep: str, other: str) -> Person:
    """Move every face of ``other`` to ``keep`` (which keeps its name, or takes ``other``'s if it has none)."""
    people = _stored(store)
    kid, oid = find(store, keep, people).id, find(store, other, people).id
    if kid == oid:
        raise InvalidArgument(f"{keep!r} and {other!r} are the same person")
    faces = load_faces(store)
    _write(store, faces, {r: {"person": kid} for r, m in enumerate(faces.metadata) if m.get("person") == oid})
    names = {p.id: p.name for p in people}
    names[kid] = names.get(kid) or names.get(oid)
    return next(p for p in _recount(store, faces, names) if p.id == kid)


def unassign(store: VectorStore, face_ids: Sequence[str]) -> int:
    """Take faces out of their person for good (grouping again leaves them out). Returns how many."""
    return _move(store, face_ids, None)[0]


def split(store: VectorStore, face_ids: Sequence[str]) -> Person:
    """Make the given faces a new person of their own (kept apart when grouping again)."""
    info = _info(store)
    pid = f"p{_next_number(info, [p.id for p in _people(info)])}"
    return next(p for p in _move(store, face_ids, pid)[1] if p.id == pid)


def _move(store: VectorStore, face_ids: Sequence[str], pid: str | None) -> tuple[int, list[Person]]:
    """Set the given faces' person to ``pid`` by hand; how many were rewritten, and the people recounted."""
    face_ids = list(dict.fromkeys(face_ids))
    if not face_ids:
        raise InvalidArgument("name at least one face id")
    picked = load_faces(store, face_ids)
    missing = sorted(set(face_ids) - set(picked.ids))
    if missing:
        raise UnknownRecord(f"collection {store.name!r} has no face {missing[0]!r}")
    names = {p.id: p.name for p in _stored(store)}
    n = _write(store, picked, {r: {"person": pid, "person_fixed": True} for r in range(len(picked))})
    return n, _recount(store, load_faces(store), names)
