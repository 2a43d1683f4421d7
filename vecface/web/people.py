"""The People view's API: the people of the served collection (``vecface people`` grouped them),
a crop of each one's representative face, their faces in the collection, and renaming in place.
Everything goes through :mod:`vecface.people`'s functions (``list_people``, ``find``, ``rename``:
the people are kept in the collection itself) and the query service.

* ``GET /api/people`` every person: id, name, face count, URLs of their face and their photos;
  ``message`` says why there are none (not a face collection, or ``vecface people`` never run).
* ``GET /api/people/{person}/face`` a JPEG crop of their representative face.
* ``GET /api/people/{person}/photos`` their faces as search hits, closest to the representative first.
* ``PUT /api/people/{person}`` ``{"name": "Grandpa"}`` names them (empty or null removes the name);
  a name another person has is refused (400: merge them with ``vecface people merge``).

``{person}`` is an id (``p3``) or a name; one nobody has is 404.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Query
from fastapi.responses import Response

from .. import people, search
from .errors import WebError
from .schemas import ERRORS, MAX_K, ErrorOut, NameIn, PeopleOut, PersonOut, SearchOut
from .service import SearchService, _basename
from .thumbs import face_crop


def list_all(svc: SearchService) -> dict[str, Any]:
    """Every person of the collection (most faces first), or none and a ``message`` saying why."""
    if not svc.embedder.per_face:
        return {"people": [], "message": f"People are groups of faces: this collection holds whole images "
                                          f"({svc.embedder.kind}); ingest photos with --embedder face-dlib to get people."}
    with svc.lock:
        found = people.list_people(svc.store)
    if not found:
        return {"people": [], "message": f"No people yet: run vecface people --backend {svc.backend} "
                                          f"--collection {svc.collection} to group the faces into people."}
    return {"people": [_person(p) for p in found], "message": None}


def _person(p: people.Person) -> dict[str, Any]:
    url = "/api/people/" + quote(p.id, safe="")
    return {"id": p.id, "name": p.name, "faces": p.faces, "representative": p.representative,
            "file": _basename(p.path), "face": url + "/face", "photos": url + "/photos"}


def face(svc: SearchService, who: str) -> bytes:
    with svc.lock:
        rep = people.find(svc.store, who).representative
        record = search.get_record(svc.store, rep) if rep else None
    if record is None:
        raise WebError(404, f"person {who!r} has no representative face; run vecface people again")
    return face_crop(record, svc.thumb_dir)


def photos(svc: SearchService, who: str, k: int | None = None) -> dict[str, Any]:
    """Their faces in the collection as search hits: a search with their representative face's
    vector, filtered on the person (``k``: at most this many, default all of them up to MAX_K)."""
    with svc.lock:
        p = people.find(svc.store, who)  # UnknownRecord (404) for nobody
        k = min(k or p.faces, p.faces, MAX_K) or 1
        result = search.search_id(svc.store, p.representative, k, filter={"person": p.id}, include_self=True)
    query = {"mode": "person", "person": p.id, "name": p.name, "faces": p.faces}
    return svc.answer(result, query, k, None)


def rename(svc: SearchService, who: str, name: str | None) -> dict[str, Any]:
    with svc.lock:
        return _person(people.rename(svc.store, who, name))


def add_routes(app: FastAPI, svc: SearchService) -> None:
    """The People API on ``app`` (see the module docstring)."""

    @app.get("/api/people", response_model=PeopleOut, tags=["people"])
    def list_people():
        """Every person of the collection, most faces first (after ``vecface people``)."""
        return list_all(svc)

    @app.get("/api/people/{person}/face", tags=["people"], response_class=Response,
             responses={200: {"content": {"image/jpeg": {}}}, 404: {"model": ErrorOut}, 410: {"model": ErrorOut}})
    def person_face(person: str):
        """A JPEG crop of the person's representative face."""
        return Response(face(svc, person), media_type="image/jpeg", headers={"Cache-Control": "no-cache"})

    @app.get("/api/people/{person}/photos", response_model=SearchOut, tags=["people"], responses=ERRORS)
    def person_photos(person: str, k: int = Query(None, ge=1, le=MAX_K)):
        """The person's faces in the collection, closest to their representative face first."""
        return photos(svc, person, k)

    @app.put("/api/people/{person}", response_model=PersonOut, tags=["people"], responses=ERRORS)
    def rename_person(person: str, body: NameIn):
        """Name the person (an empty or null name removes it); a name another person has is refused."""
        return rename(svc, person, body.name)
