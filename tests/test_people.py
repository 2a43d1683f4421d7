"""People: faces grouped without a reference photo, named, merged, split; searched by person and date.

Real parts only: photos built from scikit-image's and matplotlib's portraits (tests/people_photos.py),
the real dlib face pipeline, and each real backend.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from pathlib import Path
import numpy as np
import pytest

from vecface import grouping, people
from vecface.errors import InvalidArgument, UnknownRecord
from vecface.ingest import ingest_folder
from vecface.manifest import Manifest

from .conftest import clustered
from .people_photos import build

pytest.importorskip("dlib")


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("people")
    return root, build(root)


@pytest.fixture
def manifest(tmp_path):
    """The ingest manifest of this test (the people themselves are kept in the store)."""
    with Manifest(tmp_path / "ingest.sqlite") as m:
        yield m


def _ingest(store, root, dlib_embedder, manifest, people=False):
    report = ingest_folder(store, root, dlib_embedder, manifest=manifest, progress=False, log_dir=root.parent / "logs",
                           workers=0, people=people)
    assert not report.skipped, report.skipped
    return report


def _truth(photos):
    """path -> the person names in it."""
    return {str(p.path): p.people for p in photos}


def _groups(store):
    """person id -> list of (path, bbox) of its faces."""
    out = defaultdict(list)
    for rec in store.get(store.ids()):
        out[rec.metadata.get("person")].append((rec.metadata["path"], rec.metadata["bbox"]))
    return out


def _name_of(faces_of_person, truth):
    """The one labelled person a group's faces belong to (single-face photos decide)."""
    names = {truth[p][0] for p, _ in faces_of_person if len(truth[p]) == 1}
    assert len(names) == 1, f"a group mixes {names}"
    return names.pop()


def test_cluster_groups_tight_vectors_and_checks_threshold():
    x = clustered(60, 16, clusters=4, spread=0.05, seed=3)
    labels = grouping.cluster(x, 0.1)
    centres = np.round(x @ x.T > 0.9)  # pairs of the same centre
    same = labels[:, None] == labels[None, :]
    assert (same == centres.astype(bool)).all()
    assert labels.max() + 1 == 4 and (np.bincount(labels) == sorted(np.bincount(labels), reverse=True)).all()
    assert len(set(grouping.cluster(x, 1.99).tolist())) == 1  # everything within reach: one group
    few = grouping.cluster(x, 0.1, neighbours=3)  # crowded rows keep their 3 nearest: never across groups
    assert not (few[:, None] == few[None, :])[~centres.astype(bool)].any()
    assert len(grouping.cluster(np.zeros((0, 16), np.float32), 0.1)) == 0
    for bad in (0, -0.1, 2.5, True):
        with pytest.raises(InvalidArgument):
            grouping.cluster(x, bad)


def test_people_grouped_named_and_searched_by_person_and_date(store_factory, photo_folder, dlib_embedder, manifest):
    """The issue's acceptance test: each person's faces in one group, different people apart, and
    a search with person= and a taken range returns only their photos in that range."""
    root, photos = photo_folder
    store = store_factory(dim=dlib_embedder.dim)
    _ingest(store, root, dlib_embedder, manifest)
    report = people.group(store)
    truth = _truth(photos)
    groups = _groups(store)
    assert None not in groups  # every face has a person
    names = {pid: _name_of(faces, truth) for pid, faces in groups.items()}
    assert sorted(names.values()) == sorted({"eileen", "grace", "alex", "blake", "casey"})  # apart, and one each
    for pid, faces in groups.items():  # each person's faces all in their group, the group photo's too
        assert {p for p, _ in faces} == {p for p, who in truth.items() if names[pid] in who}
    assert [p.faces for p in report.people] == sorted((len(f) for f in groups.values()), reverse=True)
    assert all(p.representative in {r.id for r in store.get(store.ids())
                                    if r.metadata["person"] == p.id} for p in report.people)

    grace = next(pid for pid, n in names.items() if n == "grace")
    people.rename(store, grace, "Grace Hopper")
    assert people.resolve(store, "grace hopper") == [grace]
    with pytest.raises(UnknownRecord, match="no person 'Ada'"):
        people.resolve(store, "Ada")

    # person= and a taken range: grace's photos are dated 2024-01-02, -02-02, -03-02, -04-02 and the group photo 03-15
    flt = {"person": people.resolve(store, "Grace Hopper"), "taken": {"gte": "2024-02-01", "lte": "2024-03-31"}}
    query = next(r.vector for r in store.get(store.ids()) if r.metadata["person"] != grace)
    hits = store.search(query, k=50, filter=flt)
    want = {str(p.path) for p in photos if "grace" in p.people and datetime(2024, 2, 1) <= p.taken <= datetime(2024, 3, 31)}
    assert len(want) == 3
    assert {h.path for h in hits} == want
    assert all(h.metadata["person"] == grace for h in hits)


def test_merge_split_unassign_survive_regrouping(photo_folder, dlib_embedder, manifest, faiss_options):
    import vecface

    root, photos = photo_folder
    with vecface.open_store("faiss", "people_edit", dlib_embedder.dim, "cosine", **faiss_options) as store:
        try:
            _ingest(store, root, dlib_embedder, manifest)
            people.group(store)
            truth = _truth(photos)
            ids = {_name_of(f, truth): pid for pid, f in _groups(store).items()}
            people.rename(store, ids["alex"], "Alex")
            with pytest.raises(InvalidArgument, match="already named"):
                people.rename(store, ids["blake"], "alex")
            merged = people.merge(store, ids["blake"], "Alex")
            assert merged.id == ids["blake"] and merged.name == "Alex" and merged.faces == 8
            # one of casey's faces is wrong: take it out; another becomes a person of its own
            casey = [r for r in store.get(store.ids()) if r.metadata["person"] == ids["casey"]]
            assert people.unassign(store, [casey[0].id]) == 1
            alone = people.split(store, [casey[1].id])
            assert alone.faces == 1 and alone.id not in ids.values()
            with pytest.raises(UnknownRecord):
                people.unassign(store, ["no-such-face"])

            again = people.group(store)  # keeps ids, names, merge and hand edits
            by_id = {p.id: p for p in again.people}
            assert by_id[ids["blake"]].name == "Alex" and by_id[ids["blake"]].faces == 8
            assert ids["alex"] not in by_id
            assert by_id[ids["casey"]].faces == 2 and by_id[alone.id].faces == 1
            (gone,) = store.get([casey[0].id])
            assert "person" not in gone.metadata and gone.metadata["person_fixed"] is True
            assert by_id[ids["eileen"]].faces == 5 and by_id[ids["grace"]].faces == 5
            fresh = people.group(store, fresh=True)
            assert len(fresh.people) == 6  # alex and blake apart again; the split face stays alone
        finally:
            store.drop()


def test_a_person_id_is_never_given_twice(photo_folder, dlib_embedder, manifest, faiss_options):
    """After a merge frees the highest id, a new person (split, new photos, grouping again) gets a
    number past it: "p5" never comes to mean someone else."""
    import vecface

    root, _ = photo_folder
    with vecface.open_store("faiss", "people_ids", dlib_embedder.dim, "cosine", **faiss_options) as store:
        try:
            _ingest(store, root, dlib_embedder, manifest)
            given = sorted((p.id for p in people.group(store).people), key=lambda i: int(i[1:]))
            top, other = given[-1], given[0]
            people.merge(store, other, top)
            assert top not in {p.id for p in people.list_people(store)}
            face = next(r.id for r in store.get(store.ids()) if r.metadata.get("person") == other)
            assert int(people.split(store, [face]).id[1:]) > int(top[1:])
        finally:
            store.drop()


def test_new_photos_join_known_people(tmp_path, dlib_embedder, manifest, store_factory):
    """On each backend: new faces join their person through a search filtered on the known people."""
    first, later = tmp_path / "first", tmp_path / "later"
    build(first, per_person=3, people=["eileen", "grace", "alex"], group_photo=False)
    later_photos = build(later, per_person=5, people=["eileen", "blake"], group_photo=False)
    store = store_factory(dim=dlib_embedder.dim)
    _ingest(store, first, dlib_embedder, manifest)
    assert people.assign_new(store) == {}  # no people yet: nothing to do
    before = {p.id for p in people.group(store).people}
    eileen = {r.metadata["person"] for r in store.get(store.ids())
              if "/eileen/" in r.metadata["path"]}
    _ingest(store, later, dlib_embedder, manifest)
    assigned = people.assign_new(store)
    assert len(assigned) == len(later_photos)
    got = {r.metadata["path"]: r.metadata["person"] for r in store.get(list(assigned))}
    assert {got[str(p.path)] for p in later_photos if p.people == ("eileen",)} == eileen
    blake = {got[str(p.path)] for p in later_photos if p.people == ("blake",)}
    assert len(blake) == 1 and not blake & before  # one new person for all of blake's photos
    assert people.assign_new(store) == {}  # all placed now
    assert {p.id: p.faces for p in people.list_people(store)} == {**{pid: 3 for pid in before - eileen},
                                                                          **{pid: 8 for pid in eileen}, blake.pop(): 5}


def test_people_and_search_commands(photo_folder, tmp_path):
    """The commands end to end on FAISS: ingest, vecface people, name, then search by person,
    date range and place."""
    import json

    from typer.testing import CliRunner

    from vecface.cli import app

    root, photos = photo_folder
    run = CliRunner().invoke
    where = ["-c", "fam", "--data-dir", str(tmp_path / "home")]
    res = run(app, ["ingest", str(root), "-e", "face-dlib", "--workers", "0", "--no-progress", *where])
    assert res.exit_code == 0, res.output
    res = run(app, ["people", *where, "--json"])
    assert res.exit_code == 0, res.output
    grouped = json.loads(res.output)
    assert len(grouped["people"]) == 5 and grouped["faces"] == 22
    grace = next(p for p in grouped["people"] if "/grace/" in (p["path"] or ""))
    res = run(app, ["people", "name", grace["id"], "Grace Hopper", *where])
    assert res.exit_code == 0 and "Grace Hopper" in res.output
    res = run(app, ["people", "list", *where])
    assert res.exit_code == 0 and "Grace Hopper" in res.output and "eileen" in res.output  # the representative's path

    def search(*args):
        res = run(app, ["search", *args, *where, "--json", "-k", "50"])
        assert res.exit_code == 0, res.output
        hits = json.loads(res.output)["hits"]
        assert all(h["taken"] and h["camera"] and "lat" in h and "person" in h for h in hits)
        return sorted(Path(h["path"]).name for h in hits)

    query = str(root / "grace" / "grace_0.jpg")  # taken 2024-01-02: outside the range below
    assert search(query, "--person", "grace hopper", "--since", "2024-02-01", "--until", "2024-03-15") == \
        ["eileen_and_grace.jpg", "grace_1.jpg", "grace_2.jpg"]  # a bare --until is the whole day: 03-15 18:30 is in
    assert search(query, "--person", grace["id"], "--near", "48.8566,2.3522", "--km", "20") == \
        ["eileen_and_grace.jpg", "grace_2.jpg", "grace_3.jpg"]  # the Paris photos
    assert search(query, "--near", "38.7223,-9.1393", "--km", "20", "--camera", "NIKON D750") == \
        sorted(f"{n}_1.jpg" for n in ("alex", "blake", "casey", "eileen", "grace"))  # Lisbon, second camera
    res = run(app, ["search", query, "--person", "Ada", *where])
    assert res.exit_code == 1 and "no person 'Ada'" in res.output
    res = run(app, ["search", query, "--near", "91,0", *where])
    assert res.exit_code == 1 and "latitude" in res.output
    # hand edits through the commands
    one = json.loads(run(app, ["search", query, *where, "--json", "-k", "1", "--person", grace["id"]]).output)["hits"][0]
    res = run(app, ["people", "split", one["id"], *where, "--json"])
    assert res.exit_code == 0, res.output
    alone = json.loads(res.output)[0]
    assert alone["faces"] == 1 and alone["id"] not in {p["id"] for p in grouped["people"]}
    res = run(app, ["people", "merge", "Grace Hopper", alone["id"], *where, "--json"])
    assert res.exit_code == 0 and json.loads(res.output)[0]["faces"] == 5, res.output
    res = run(app, ["people", "unassign", one["id"], *where])
    assert res.exit_code == 0 and "1 face(s)" in res.output
    res = run(app, ["people", "assign", *where])
    assert res.exit_code == 0 and "0 new face(s)" in res.output  # the unassigned face stays out
    res = run(app, ["people", "merge", "Grace Hopper", "grace hopper", *where])
    assert res.exit_code == 1 and "same person" in res.output


def test_ingest_places_new_faces_among_known_people(tmp_path, dlib_embedder, manifest, faiss_options):
    import vecface

    first, later = tmp_path / "first", tmp_path / "later"
    build(first, per_person=2, people=["eileen", "grace"], group_photo=False)
    build(later, per_person=3, people=["grace", "casey"], group_photo=False)
    with vecface.open_store("faiss", "people_ingest", dlib_embedder.dim, "cosine", **faiss_options) as store:
        try:
            _ingest(store, first, dlib_embedder, manifest, people=True)  # no people yet: nothing placed
            assert all("person" not in r.metadata for r in store.get(store.ids()))
            people.group(store)
            grace = {r.metadata["person"] for r in store.get(store.ids())
                     if "/grace/" in r.metadata["path"]}
            _ingest(store, later, dlib_embedder, manifest, people=True)
            placed = {r.metadata["path"]: r.metadata.get("person") for r in store.get(store.ids())
                      if str(later) in r.metadata["path"]}
            assert len(placed) == 6 and all(placed.values())
            assert {v for k, v in placed.items() if "/grace/" in k} == grace
            assert len({v for k, v in placed.items() if "/casey/" in k} - grace) == 1
            assert len(people.list_people(store)) == 3
        finally:
            store.drop()


def test_two_thousand_people_fit_in_every_store(store_factory):
    """The people travel in the collection's description (store.info): a realistic list of 2,000
    named people (about 0.4 MB of JSON) is kept whole on every backend, next to the other info."""
    store = store_factory(dim=8)
    store.set_info({"embedder": {"kind": "face-dlib"}})
    crowd = [people.Person(f"p{i}", f"Firstname Lastname {i}", 2000 - i, f"{i:032x}",
                           f"/home/someone/Pictures/2024/Holidays in Portugal/IMG_20240815_{i:06d}.jpg",
                           [1000 + i, 500, 1200 + i, 700]) for i in range(1, 2001)]
    people._save(store, crowd)
    assert people.list_people(store) == crowd
    assert store.info["embedder"] == {"kind": "face-dlib"}
    assert people.resolve(store, ["firstname lastname 1999", "p7"]) == ["p1999", "p7"]
    people.rename(store, "p1999", "Grandpa")
    assert people.list_people(store)[1998].name == "Grandpa"


def test_one_ingest_of_several_paths_updates_the_people_once(tmp_path, monkeypatch, dlib_embedder):
    """``vecface ingest A B C --prune`` places the new faces of every path and recounts the people once,
    after them all (it did once per path, plus once for the prune); a run that stores nothing writes
    the people not at all. The library's ingest_paths does the same, and when a later path fails the
    faces the earlier ones stored still get their people."""
    import json
    import vecface
    from typer.testing import CliRunner

    from vecface.cli import app
    from vecface.ingest import ingest_paths

    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    old = build(a, per_person=2, people=["eileen", "grace"], group_photo=False)
    build(b, per_person=2, people=["grace"], group_photo=False)
    build(c, per_person=2, people=["casey", "alex"], group_photo=False)
    where = ["-c", "several", "--data-dir", str(tmp_path / "home")]
    run = CliRunner().invoke
    res = run(app, ["ingest", str(a), "-e", "face-dlib", "--workers", "0", "--no-progress", *where])
    assert res.exit_code == 0, res.output
    first = json.loads(run(app, ["people", *where, "--json"]).output)["people"]
    grace = next(p["id"] for p in first if "/grace/" in p["path"])
    eileen = next(p["id"] for p in first if "/eileen/" in p["path"])

    saves = []
    real_save = people._save
    monkeypatch.setattr(people, "_save", lambda store, ppl: saves.append(len(ppl)) or real_save(store, ppl))
    next(p.path for p in old if "eileen" in p.path.name).unlink()  # the prune deletes one face
    res = run(app, ["ingest", str(a), str(b), str(c), "--prune", "--workers", "0", "--no-progress", "--json", *where])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["records_pruned"] == 1 and [r["records_stored"] for r in out["runs"]] == [0, 2, 4]
    assert saves == [4]  # one recount, of everyone: eileen, grace and two new people
    listed = {p["id"]: p["faces"] for p in json.loads(run(app, ["people", "list", *where, "--json"]).output)}
    assert listed[eileen] == 1 and listed[grace] == 4 and sorted(listed.values()) == [1, 2, 2, 4]

    saves.clear()
    res = run(app, ["ingest", str(a), str(b), str(c), "--prune", "--workers", "0", "--no-progress", *where])
    assert res.exit_code == 0 and saves == [], res.output  # nothing stored or deleted: people untouched

    d = tmp_path / "d"
    build(d, per_person=2, people=["blake"], group_photo=False)
    with vecface.open_store("faiss", "several", path=tmp_path / "home" / "faiss") as store, \
            Manifest(tmp_path / "home" / "ingest.sqlite") as manifest:
        with pytest.raises(InvalidArgument):
            ingest_paths(store, [d, tmp_path / "missing"], dlib_embedder, manifest=manifest, progress=False,
                         workers=0, log_dir=tmp_path / "logs")
        assert saves == [5]  # the new person of d's faces, placed although the second path failed
        assert all(r.metadata.get("person") for r in store.get(store.ids()))

        # a path that fails after storing a batch of its own: that batch's face gets its person too
        # (its report never comes back, so the people are updated whenever a path failed)
        e = tmp_path / "e"
        build(e, per_person=2, people=["grace"], group_photo=False)
        saves.clear()

        def stop(report):
            raise RuntimeError("stopped after the first batch")

        with pytest.raises(RuntimeError, match="first batch"):
            ingest_paths(store, [e], dlib_embedder, manifest=manifest, progress=False, workers=0,
                         log_dir=tmp_path / "logs", batch_size=1, on_batch=stop)
        assert saves == [5]  # the one face stored joined grace
        assert store.count() == 12 and all(r.metadata.get("person") for r in store.get(store.ids()))
