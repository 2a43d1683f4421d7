"""``vecface ingest`` and ``vecface search`` end to end, on every backend, with the real dlib
face model and a tiny CLIP built here."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from vecface.cli import app

skimage_data = pytest.importorskip("skimage.data")

FLAGS = {"path": "--faiss-path", "dsn": "--dsn", "url": "--url", "data_dir": "--data-dir"}


@pytest.fixture(scope="module")
def cli():
    runner = CliRunner()

    def run(*args: str):
        return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)

    return run


@pytest.fixture
def target(store_factory):
    """--backend/--collection/connection flags for a fresh collection (dropped after the test)."""
    name = f"cli_{store_factory.backend}_{np.random.default_rng().integers(1 << 30)}"
    flags = ["--backend", store_factory.backend, "--collection", name]
    for key, value in store_factory.options.items():
        flags += [FLAGS[key], str(value)]
    yield flags, name
    try:  # drop what the CLI created
        store_factory(dim=None, name=name, create=False)
    except Exception:
        pass


def test_face_ingest_and_search_cli(cli, target, tmp_path):
    flags, name = target
    root = tmp_path / "album"
    (root / "2024").mkdir(parents=True)
    astro = skimage_data.astronaut()
    Image.fromarray(astro).save(root / "2024" / "astronaut.jpg", quality=92)
    Image.fromarray(skimage_data.chelsea()).save(root / "cat.png")
    res = cli("ingest", root, *flags, "--embedder", "face-dlib", "--tag", "family", "--no-progress")
    assert res.exit_code == 3, res.output  # the cat has no face: skipped, and the exit code says so
    assert "no face found" in res.output and "records stored" in res.output

    # exactly one face in the query: the collection's embedder comes from the manifest
    query = tmp_path / "query.jpg"
    Image.fromarray(np.ascontiguousarray(astro[:, ::-1])).resize((400, 400)).save(query, quality=70)
    res = cli("search", query, *flags, "-k", "3", "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    top = out["hits"][0]
    assert top["path"] == str((root / "2024" / "astronaut.jpg").absolute())
    assert top["rank"] == 1 and len(top["bbox"]) == 4 and top["tag"] == "family"
    assert np.sqrt(2 * max(top["distance"], 0)) < 0.6
    assert out["embed_ms"] > 0 and out["search_ms"] >= 0 and out["query"]["face"] == 1

    res = cli("search", query, *flags, "--tag", "family")
    assert res.exit_code == 0 and "rank" in res.output and "embed" in res.output and "search" in res.output

    # two faces: a clear error listing them, then --face picks one
    pair = tmp_path / "pair.png"
    Image.fromarray(np.concatenate([astro, np.ascontiguousarray(astro[:, ::-1])], axis=1)).save(pair)
    res = cli("search", pair, *flags)
    assert res.exit_code == 1 and "2 faces found" in res.output and "--face N" in res.output
    res = cli("search", pair, *flags, "--face", "2", "--json")
    assert res.exit_code == 0 and json.loads(res.output)["hits"][0]["path"] == top["path"]

    # a stored record as the query: nothing re-embedded
    res = cli("search", "--id", top["id"], *flags, "--json", "--k", "2", "--tag", "family")
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["query"]["mode"] == "id"

    # text needs CLIP
    res = cli("search", "--text", "old man with glasses", *flags)
    assert res.exit_code == 1 and "text search needs a CLIP" in res.output
    # one query at a time
    assert cli("search", *flags).exit_code == 2
    assert cli("search", query, "--text", "x", *flags).exit_code == 2
    # another embedder into the same collection is refused
    res = cli("ingest", root, *flags, "--embedder", "face-clip", "--model", tmp_path, "--no-progress")
    assert res.exit_code == 1
    # re-run: nothing new
    res = cli("ingest", root, *flags, "--json")
    assert res.exit_code == 3
    again = json.loads(res.output)
    assert again["files_stored"] == 0 and again["files_unchanged"] == 1 and again["records_stored"] == 0


def test_clip_ingest_and_text_search_cli(cli, target, tmp_path_factory, tiny_clip):
    flags, name = target
    model = tiny_clip
    root = tmp_path_factory.mktemp("pics")
    for n in ("astronaut", "chelsea", "coffee"):
        Image.fromarray(getattr(skimage_data, n)()).save(root / f"{n}.webp")
    res = cli("ingest", root, *flags, "--embedder", "clip", "--model", model, "--batch-size", "2", "--no-progress")
    assert res.exit_code == 0, res.output
    res = cli("search", "--text", "old man with glasses", *flags, "-k", "2", "--json")  # model from the manifest
    assert res.exit_code == 0, res.output
    hits = json.loads(res.output)["hits"]
    assert len(hits) == 2 and all(h["bbox"] is None for h in hits)
    res = cli("search", root / "coffee.webp", *flags, "-k", "1", "--json")
    assert json.loads(res.output)["hits"][0]["path"].endswith("coffee.webp")
    res = cli("search", "--text", "x", "--backend", flags[1], "--collection", "never_ingested", *flags[4:])
    assert res.exit_code == 1 and "run vecface ingest first" in res.output


def test_query_service_library(faiss_options, tmp_path):
    """vecface.search without the CLI: the filter builder, a stored record as the query (left
    out of its own hits), UnknownRecord for ids no record has, and the embedder an ingest uses."""
    import vecface
    from vecface.embedders import EmbedderSpec
    from vecface.errors import InvalidArgument, UnknownRecord
    from vecface.manifest import Manifest
    from vecface.search import get_record, make_filter, resolve_spec, search_id

    assert make_filter() is None and make_filter("", {"person": None}) is None
    assert make_filter("a", {"tag": "b", "person": "ann"}) == {"tag": "a", "person": "ann"}
    rng = np.random.default_rng(1)
    vecs = rng.normal(size=(6, 8)).astype(np.float32)
    with vecface.open_store("faiss", "lib_query", 8, "cosine", **faiss_options) as store:
        store.upsert_arrays([f"r{i}" for i in range(6)], vecs, [{"tag": "even" if i % 2 == 0 else "odd"}
                                                                 for i in range(6)])
        res = search_id(store, "r0", k=5)
        assert "r0" not in [h.id for h in res.hits] and len(res.hits) == 5
        assert res.query == {"mode": "id", "id": "r0", "path": None, "bbox": None} and res.embed_seconds == 0
        assert [h.id for h in search_id(store, "r0", k=3, include_self=True).hits][0] == "r0"
        assert {h.metadata["tag"] for h in search_id(store, "r0", k=5, tag="even").hits} == {"even"}
        for bad in ("missing", "", "x" * 300, "a\nb"):
            with pytest.raises(UnknownRecord):
                get_record(store, bad)
        with pytest.raises(UnknownRecord):
            search_id(store, "missing")
        store.drop()
    with Manifest(tmp_path / "ingest.sqlite") as manifest:
        assert resolve_spec(manifest, "faiss", "new") == EmbedderSpec("clip")
        manifest.set_embedder("faiss", "faces", EmbedderSpec("face-dlib", None, {"upsample": 2}), 128)
        assert resolve_spec(manifest, "faiss", "faces") == EmbedderSpec("face-dlib", None, {"upsample": 2})
        assert resolve_spec(manifest, "faiss", "faces", "face-dlib").detector == {"upsample": 2}
        with pytest.raises(InvalidArgument, match="was ingested with --embedder face-dlib"):
            resolve_spec(manifest, "faiss", "faces", "clip")


def test_ingest_several_paths_and_list_collections(cli, tmp_path, tiny_clip):
    """One ingest of two folders and a single file (one report each, the worst exit code), all in
    a data directory given by --data-dir only; then `vecface collections` lists what was ingested."""
    home = tmp_path / "home"
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    Image.fromarray(skimage_data.astronaut()).save(a / "astronaut.png")
    Image.fromarray(skimage_data.chelsea()).save(b / "cat.jpg")
    (b / "broken.jpg").write_bytes(b"not an image")
    Image.fromarray(skimage_data.coffee()).save(tmp_path / "coffee.webp")
    flags = ["--collection", "multi", "--data-dir", home, "--embedder", "clip", "--model", tiny_clip, "--no-progress"]

    res = cli("ingest", a, tmp_path / "missing", *flags)
    assert res.exit_code == 1 and "missing" in res.output and "not exist" in res.output
    assert not (home / "faiss" / "multi").exists()  # refused before anything was opened

    res = cli("ingest", a, b, tmp_path / "coffee.webp", *flags, "--json")
    assert res.exit_code == 3, res.output  # broken.jpg skipped
    reports = json.loads(res.stdout)
    assert [r["files_stored"] for r in reports] == [1, 1, 1] and len(reports[1]["skipped"]) == 1
    assert (home / "faiss" / "multi").is_dir() and (home / "ingest.sqlite").is_file()

    res = cli("search", tmp_path / "coffee.webp", "--collection", "multi", "--data-dir", home, "-k", "5", "--json")
    assert res.exit_code == 0, res.output
    assert [h["path"].rsplit("/", 1)[-1] for h in json.loads(res.output)["hits"]][0] == "coffee.webp"
    assert len(json.loads(res.output)["hits"]) == 3

    res = cli("collections", "--data-dir", home, "--json")
    assert res.exit_code == 0, res.output
    assert [(c["backend"], c["collection"], c["embedder"], c["dim"], c["files"], c["records"])
            for c in json.loads(res.output)] == [("faiss", "multi", "clip", 16, 3, 3)]
    assert json.loads(cli("collections", "--data-dir", home, "--backend", "pgvector", "--json").output) == []
    for cmd in (["collections"], ["search", "--text", "x"], ["ingest", a, "--no-progress"]):
        res = cli(*cmd, "--data-dir", home, "--backend", "milvus")
        assert res.exit_code == 1 and "error: unknown backend 'milvus'" in res.output, res.output
