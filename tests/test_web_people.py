"""The web page's People API and search filters: real dlib faces of the photos built from
scikit-image's and matplotlib's portraits (tests/people_photos.py, with EXIF date, place and camera),
ingested and grouped into people (vecface.people.group) on FAISS, pgvector and Weaviate, served by the real app.
(Collections without people: tests/test_web.py.)

Every filtered search is checked against what the stored records' own metadata says (a brute force
over every record of the collection)."""

from __future__ import annotations

import io
import os
from datetime import datetime, timezone

import pytest
from fastapi.testclient import TestClient
from PIL import Image

import vecface
from vecface import people
from vecface.ingest import ingest_folder
from vecface.web import create_app
from vecface.whenwhere import haversine_km

from .people_photos import PLACES, build, exif_jpeg, portraits
from .test_web import BASE, assert_error

pytest.importorskip("dlib")

PEOPLE = ["eileen", "grace", "alex"]


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    root = tmp_path_factory.mktemp("web-people")
    return root, build(root, per_person=4, people=PEOPLE)


@pytest.fixture(scope="module", params=["faiss", "pgvector", "weaviate"])
def served(request, photos, dlib_embedder, vecface_home):
    """(client, records by id, {person name: person id}) of a grouped collection served by the app."""
    backend = request.param
    options = request.getfixturevalue(f"{backend}_options")
    root, built = photos
    name = f"webpeople_{backend}_{os.getpid()}"
    with vecface.open_store(backend, name, dlib_embedder.dim, "cosine", **options) as store:
        report = ingest_folder(store, root, dlib_embedder, progress=False, workers=0, log_dir=root.parent / "logs")
        assert not report.skipped, report.skipped
        people.group(store)
        records = {r.id: r for r in store.get(store.ids())}
    truth = {os.path.realpath(p.path): p.people for p in built}
    who = {}  # person name -> person id, from the single-face photos
    for r in records.values():
        names = truth[os.path.realpath(r.metadata["path"])]
        if len(names) == 1:
            assert who.setdefault(names[0], r.metadata["person"]) == r.metadata["person"], "a person split in two"
    assert len(set(who.values())) == len(PEOPLE), who
    app = create_app(backend, name, store_options=options)
    with TestClient(app, base_url=BASE) as client:
        yield client, records, who, truth


def _expected(records, keep) -> set[str]:
    return {i for i, r in records.items() if keep(r.metadata)}


def _epoch(meta) -> float | None:
    t = meta.get("taken")
    if t is None:
        return None
    d = datetime.fromisoformat(t)
    return (d if d.tzinfo else d.replace(tzinfo=timezone.utc)).timestamp()


def _ids(resp) -> set[str]:
    assert resp.status_code == 200, resp.text
    return {h["id"] for h in resp.json()["hits"]}


# ---------------------------------------------------------------- people

def test_people_list_face_and_photos(served):
    client, records, who, truth = served
    r = client.get("/api/people")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["message"] is None
    listed = {p["id"]: p for p in body["people"]}
    assert set(listed) == set(who.values())
    for name, pid in who.items():
        p = listed[pid]
        faces = [i for i, rec in records.items() if rec.metadata.get("person") == pid]
        assert p["faces"] == len(faces) == (5 if name in ("eileen", "grace") else 4)  # 4 photos (+ the group photo)
        assert p["representative"] in faces and p["face"] == f"/api/people/{pid}/face"

        crop = client.get(p["face"])
        assert crop.status_code == 200 and crop.headers["content-type"] == "image/jpeg"
        assert Image.open(io.BytesIO(crop.content)).size == (160, 160)

        got = client.get(p["photos"])
        hits = got.json()["hits"]
        assert {h["id"] for h in hits} == set(faces), name  # all their faces, nobody else's
        assert all(name in truth[os.path.realpath(records[h["id"]].metadata["path"])] for h in hits)
        assert all(h["person"] == pid and h["thumb"].startswith("/api/thumb/") for h in hits)
        assert got.json()["query"] == {"mode": "person", "person": pid, "name": None, "faces": len(faces)}
        assert hits[0]["id"] == p["representative"]  # closest to their representative face: itself
    assert len(client.get(f"/api/people/{who['eileen']}/photos?k=2").json()["hits"]) == 2
    assert_error(client.get("/api/people/p999/face"), 404, "no person 'p999'")
    assert_error(client.get("/api/people/nobody/photos"), 404, "no person")


def test_rename_in_place(served):
    client, _, who, _ = served
    eileen, grace = who["eileen"], who["grace"]
    r = client.put(f"/api/people/{eileen}", json={"name": "  Eileen Collins "})
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "Eileen Collins" and r.json()["id"] == eileen
    named = {p["id"]: p["name"] for p in client.get("/api/people").json()["people"]}
    assert named[eileen] == "Eileen Collins" and named[grace] is None
    # by name too (case does not matter), and its photos say who
    assert client.get("/api/people/eileen collins/photos").json()["query"]["name"] == "Eileen Collins"
    # a name someone else has: the API's own error, nothing changed
    assert_error(client.put(f"/api/people/{grace}", json={"name": "eileen collins"}), 400, "already named")
    assert {p["id"]: p["name"] for p in client.get("/api/people").json()["people"]}[grace] is None
    assert_error(client.put("/api/people/p999", json={"name": "x"}), 404, "no person")
    assert_error(client.put(f"/api/people/{grace}", json={"name": "x" * 201}), 400, "name")
    # a form post (what another site could send without asking) is not a JSON body: refused
    r = client.put(f"/api/people/{grace}", content=b'{"name": "Mallory"}', headers={"content-type": "text/plain"})
    assert r.status_code == 400 and client.get(f"/api/people/{grace}/photos").json()["query"]["name"] is None
    assert client.post(f"/api/people/{grace}", json={"name": "x"}).status_code == 405
    # an empty name removes it
    assert client.put(f"/api/people/{eileen}", json={"name": ""}).json()["name"] is None
    assert {p["id"]: p["name"] for p in client.get("/api/people").json()["people"]}[eileen] is None


# ---------------------------------------------------------------- filters

def test_filters_match_the_records_metadata(served):
    client, records, who, _ = served
    query = next(i for i, r in records.items() if r.metadata["path"].endswith("eileen_0.jpg"))
    everything = _ids(client.get(f"/api/search/id/{query}?k=100"))
    assert everything == set(records) - {query}

    def search(**params):
        return _ids(client.get(f"/api/search/id/{query}", params={"k": 100, **params})) | {query}

    lo = datetime(2024, 2, 1, tzinfo=timezone.utc).timestamp()
    hi = datetime(2024, 3, 31, 23, 59, 59, tzinfo=timezone.utc).timestamp()
    in_range = _expected(records, lambda m: _epoch(m) is not None and lo <= _epoch(m) <= hi)
    assert search(since="2024-02-01", until="2024-03-31") == in_range | {query}
    assert 0 < len(in_range) < len(records)

    nikon = _expected(records, lambda m: m.get("camera") == "NIKON D750")
    assert search(camera="NIKON D750") == nikon | {query} and 0 < len(nikon) < len(records)

    grace = _expected(records, lambda m: m.get("person") == who["grace"])
    assert search(person=who["grace"]) == grace | {query} and len(grace) == 5

    lisbon = PLACES["lisbon"]
    near = _expected(records, lambda m: haversine_km(*lisbon, m["lat"], m["lon"]) <= 100)
    assert search(near=f"{lisbon[0]},{lisbon[1]}", km=100) == near | {query}
    assert 0 < len(near) < len(records)

    # a box around Paris: south, west, north, east
    paris = _expected(records, lambda m: 48 <= m["lat"] <= 49 and 2 <= m["lon"] <= 3)
    assert search(box="48,2,49,3") == paris | {query} and 0 < len(paris) < len(records)
    assert paris == _expected(records, lambda m: haversine_km(*PLACES["paris"], m["lat"], m["lon"]) < 1)  # Paris's photos

    both = grace & in_range
    assert search(person=who["grace"], since="2024-02-01", until="2024-03-31") == both | {query} and both
    answer = client.get(f"/api/search/id/{query}", params={"person": who["grace"], "camera": ""}).json()
    assert answer["filters"] == {"person": who["grace"]}  # blank fields are no filter
    assert all(h["person"] == who["grace"] and h["taken"] and h["camera"] for h in answer["hits"])


def test_upload_with_filters(served):
    client, records, who, _ = served
    data = exif_jpeg(portraits()["eileen"].resize((300, 300)))
    files = {"image": ("q.jpg", data, "image/jpeg")}
    r = client.post("/api/search/image", files=files, data={"k": "100", "person": who["alex"]})
    assert r.status_code == 200, r.text
    hits = r.json()["hits"]
    assert {h["id"] for h in hits} == _expected(records, lambda m: m.get("person") == who["alex"])
    assert hits[0]["similarity"] < 0.95  # the closest of alex's faces is not eileen
    r = client.post("/api/search/image", files=files, data={"k": "100", "near": "48.8566,2.3522", "km": "10",
                                                            "until": "2024-03-01"})
    paris_early = _expected(records, lambda m: haversine_km(*PLACES["paris"], m["lat"], m["lon"]) <= 10
                            and _epoch(m) <= datetime(2024, 3, 1, 23, 59, 59, 999000, tzinfo=timezone.utc).timestamp())
    assert {h["id"] for h in r.json()["hits"]} == paris_early and paris_early
    assert_error(client.post("/api/search/image", files=files, data={"since": "last week"}), 400, "iso 8601")


@pytest.mark.parametrize("params, words", [
    ({"since": "yesterday"}, ("not an iso 8601",)),
    ({"until": "2024-13-01"}, ("iso 8601",)),
    ({"near": "lisbon"}, ("lat,lon",)),
    ({"near": "95,10"}, ("latitude",)),
    ({"near": "38.7,-9.1", "km": "0"}, ("km",)),
    ({"km": "5"}, ("give near",)),
    ({"person": "Nobody"}, ("no person 'nobody'",)),
    ({"km": "far"}, ("km",)),
    ({"box": "48,2,49"}, ("south,west,north,east",)),
    ({"box": "49,2,48,3"}, ("south edge",)),
])
def test_bad_filters_are_400(served, params, words):
    client, records, _, _ = served
    assert_error(client.get(f"/api/search/id/{next(iter(records))}", params=params), 400, *words)
