"""Collections that describe themselves: the embedder spec and creation info live in the store, so a
second data directory with no ingest manifest, pointed at the same server (or FAISS folder), can
search and serve a collection ingested from the first; ``vecface collections --backend`` lists what
the backend holds; ``vecface drop`` deletes one after asking. Real servers, real dlib model."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import vecface
from vecface.cli import app
from vecface.embedders import EmbedderSpec
from vecface.errors import InvalidArgument
from vecface.manifest import MANIFEST_NAME, Manifest
from vecface.search import open_collection

from .conftest import astronaut, encode

skimage_data = pytest.importorskip("skimage.data")

SHARED = ["faiss", "pgvector", "weaviate"]


@pytest.fixture(params=SHARED)
def shared(request, tmp_path):
    """(backend, connection flags, store options) reaching one server from any data directory."""
    backend = request.param
    if backend == "faiss":
        path = str(tmp_path / "shared-faiss")
        yield backend, ["--faiss-path", path], {"path": path}
    elif backend == "pgvector":
        from vecface.backends import pg_server

        home = request.getfixturevalue("pgvector_options").get("data_dir")
        dsn = os.environ.get("VECFACE_PG_DSN") or pg_server.acquire(home)
        yield backend, ["--dsn", dsn], {"dsn": dsn}
        if not os.environ.get("VECFACE_PG_DSN"):
            pg_server.release(home)
    else:
        from vecface.backends import weaviate_server

        home = request.getfixturevalue("weaviate_options").get("data_dir")
        url = os.environ.get("VECFACE_WEAVIATE_URL")
        if not url:
            info = weaviate_server.running(home)
            url = f"http://127.0.0.1:{info.http_port}?grpc={info.grpc_port}"
        yield backend, ["--url", url], {"url": url}


def _cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def test_a_second_data_dir_searches_lists_serves_and_drops_a_collection(shared, tmp_path):
    backend, conn, options = shared
    name = f"shared_{np.random.default_rng().integers(1 << 30)}"
    first, second = tmp_path / "first", tmp_path / "second"
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "astronaut.jpg").write_bytes(encode(astronaut(320), "JPEG", quality=90))
    Image.fromarray(skimage_data.chelsea()).save(photos / "cat.png")  # no face: skipped
    flags = ["--backend", backend, "--collection", name, *conn]
    try:
        res = _cli("ingest", photos, *flags, "--data-dir", first, "--embedder", "face-dlib", "--workers", "0",
                   "--no-progress")
        assert res.exit_code == 3, res.output  # the cat is skipped
        assert not (second / MANIFEST_NAME).exists()

        # the store describes itself
        with vecface.open_store(backend, name, create=False, data_dir=second, **options) as store:
            info = store.info
            assert info["embedder"]["kind"] == "face-dlib" and info["dim"] == 128
            assert info["created"] and info["vecface_version"]
            store.build_index("hnsw")  # a new index (in Weaviate, a new class) keeps the description
            assert store.info == info

        # search from the second data dir, which has no manifest: the embedder comes from the store
        query = tmp_path / "query.jpg"
        astronaut(300).transpose(Image.FLIP_LEFT_RIGHT).save(query, quality=80)
        res = _cli("search", query, *flags, "--data-dir", second, "-k", "3", "--json")
        assert res.exit_code == 0, res.output
        hits = json.loads(res.output)["hits"]
        assert len(hits) == 1 and hits[0]["path"] == str(photos / "astronaut.jpg")
        assert hits[0]["bbox"] is not None  # a face search, as dlib ingested it

        # serve's service opens it from the second data dir too
        from vecface.web.service import SearchService

        service = SearchService(backend, name, data_dir=second, store_options=options)
        try:
            assert service.health()["embedder"]["kind"] == "face-dlib" and service.health()["count"] == 1
            out = service.search_image(query.read_bytes(), 3, None, None)
            assert [h["file"] for h in out["hits"]] == ["astronaut.jpg"] and out["hits"][0]["bbox"]
        finally:
            service.close()

        # the backend lists it (from the second data dir: nothing from a manifest)
        res = _cli("collections", "--backend", backend, *conn, "--data-dir", second, "--json")
        assert res.exit_code == 0, res.output
        rows = {r["collection"]: r for r in json.loads(res.output)}
        row = rows[name]
        assert (row["embedder"], row["dim"], row["count"], row["index"]) == ("face-dlib", 128, 1, "hnsw:m=16,ef_construction=64")
        assert row["files"] is None  # not ingested from here
        if backend != "weaviate":  # a Weaviate reached by URL does not tell its files' size
            assert row["size_bytes"] and row["size_bytes"] > 0

        # a manifest here that says another embedder is refused, clearly
        with Manifest(second / MANIFEST_NAME) as manifest:
            manifest.set_embedder(backend, name, EmbedderSpec("face-clip"), 128)
        with pytest.raises(InvalidArgument, match="face-dlib.*face-clip"):
            open_collection(backend, name, data_dir=second, **options)
        with Manifest(second / MANIFEST_NAME) as manifest:
            manifest.forget_collection(backend, name)

        # ingest from the second data dir with no --embedder: the collection's own (face-dlib), not clip
        more = tmp_path / "more"
        more.mkdir()
        astronaut(280).save(more / "astronaut_small.png")
        res = _cli("ingest", more, *flags, "--data-dir", second, "--workers", "0", "--no-progress", "--json")
        assert res.exit_code == 0, res.output
        out = json.loads(res.output)
        assert out["embedder"].startswith("face-dlib") and out["records_stored"] == 1

        # drop asks first: "no" keeps it, --yes drops it and its manifest rows in the first data dir
        res = CliRunner().invoke(app, ["drop", name, "--backend", backend, *conn, "--data-dir", str(first)],
                                 input="n\n")
        assert res.exit_code == 1 and "nothing deleted" in res.output
        with vecface.open_store(backend, name, create=False, data_dir=second, **options) as store:
            assert store.count() == 2
        res = _cli("drop", name, "--backend", backend, *conn, "--data-dir", first, "--yes")
        assert res.exit_code == 0, res.output
        with pytest.raises(vecface.UnknownCollection):
            vecface.open_store(backend, name, create=False, data_dir=second, **options)
        with Manifest(first / MANIFEST_NAME) as manifest:
            assert manifest.embedder(backend, name) is None and manifest.files(backend, name) == {}
        res = _cli("collections", "--backend", backend, *conn, "--data-dir", second, "--json")
        assert name not in {r["collection"] for r in json.loads(res.output)}
    finally:
        try:
            vecface.open_store(backend, name, create=False, data_dir=second, **options).drop()
        except vecface.VecfaceError:
            pass


def test_set_info_refuses_what_is_not_json(faiss_options):
    with vecface.open_store("faiss", f"info_{np.random.default_rng().integers(1 << 30)}", 4,
                            **faiss_options) as store:
        try:
            assert store.info == {}
            with pytest.raises(InvalidArgument):
                store.set_info({"x": object()})
            with pytest.raises(InvalidArgument):
                store.set_info(["not", "a", "mapping"])
            store.set_info({"note": "kept", "n": 1})
            assert store.info == {"note": "kept", "n": 1}
        finally:
            store.drop()


def test_people_named_on_one_data_dir_are_known_on_another(shared, tmp_path):
    """The people travel with the collection (kept in the store): a second data dir with no
    manifest lists them with their names, searches by name, groups and renames, and the first sees it."""
    from .people_photos import build

    backend, conn, options = shared
    name = f"shared_people_{np.random.default_rng().integers(1 << 30)}"
    first, second = tmp_path / "first", tmp_path / "second"
    build(tmp_path / "photos", per_person=2, people=["eileen", "grace"], group_photo=False)
    flags = ["--backend", backend, "--collection", name, *conn]

    def run(*args, home):
        res = _cli(*args, *flags, "--data-dir", home)
        assert res.exit_code == 0, res.output
        return res.output

    try:
        run("ingest", tmp_path / "photos", "--embedder", "face-dlib", "--workers", "0", "--no-progress", home=first)
        grouped = json.loads(run("people", "--json", home=first))["people"]
        assert sorted(p["faces"] for p in grouped) == [2, 2]
        grace = next(p for p in grouped if "/grace/" in p["path"])
        run("people", "name", grace["id"], "Grace Hopper", home=first)

        assert not (second / MANIFEST_NAME).exists()
        listed = json.loads(run("people", "list", "--json", home=second))
        assert {p["id"]: p["name"] for p in listed} == {p["id"]: ("Grace Hopper" if p is grace else None)
                                                        for p in grouped}
        hits = json.loads(run("search", tmp_path / "photos" / "eileen" / "eileen_0.jpg", "--person", "grace hopper",
                              "-k", "10", "--json", home=second))["hits"]
        assert sorted(os.path.basename(h["path"]) for h in hits) == ["grace_0.jpg", "grace_1.jpg"]

        regrouped = json.loads(run("people", "--json", home=second))  # grouping needs no manifest either
        assert regrouped["faces"] == 4 and regrouped["changed"] == 0
        assert {p["id"]: p["name"] for p in regrouped["people"]} == {p["id"]: p["name"] for p in listed}
        run("people", "name", "Grace Hopper", "Grandma", home=second)
        again = json.loads(run("people", "list", "--json", home=first))
        assert {p["name"] for p in again} == {"Grandma", None}
        res = _cli("search", tmp_path / "photos" / "eileen" / "eileen_0.jpg", *flags, "--data-dir", first,
                   "--person", "Grace Hopper")
        assert res.exit_code == 1 and "no person 'Grace Hopper'" in res.output and "Grandma" in res.output
    finally:
        try:
            vecface.open_store(backend, name, create=False, data_dir=second, **options).drop()
        except vecface.VecfaceError:
            pass
