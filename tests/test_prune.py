"""``vecface ingest --prune``: the records of files gone from disk under the given folders go (with
their manifest rows); files still there, and folders not named, are not touched. Real dlib model,
real backends."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import vecface
from vecface.cli import app

from .conftest import astronaut

pytest.importorskip("skimage.data")

FLAGS = {"path": "--faiss-path", "dsn": "--dsn", "url": "--url", "data_dir": "--data-dir"}


def _photos(root, names):
    root.mkdir(parents=True)
    face = astronaut(320)
    variants = [face, face.transpose(Image.FLIP_LEFT_RIGHT), face.resize((280, 280))]
    for name, img in zip(names, variants):
        img.save(root / name, quality=90)
    return [root / n for n in names]


def test_prune_removes_only_gone_files_under_the_given_roots(store_factory, tmp_path, vecface_home):
    runner = CliRunner()
    name = f"prune_{store_factory.backend}_{np.random.default_rng().integers(1 << 30)}"
    flags = ["--backend", store_factory.backend, "--collection", name]
    for key, value in store_factory.options.items():
        flags += [FLAGS[key], str(value)]

    def cli(*args):
        res = runner.invoke(app, [str(a) for a in args] + flags, catch_exceptions=False)
        return res

    def stored():
        """(count, paths) as a store opened now sees them."""
        with vecface.open_store(store_factory.backend, name, None, create=False, **store_factory.options) as s:
            return s.count(), {h.metadata["path"] for h in s.search(np.ones(128), 50)}

    a = _photos(tmp_path / "a", ["one.jpg", "two.jpg", "three.jpg"])
    b = _photos(tmp_path / "b", ["four.jpg", "five.jpg"])
    try:
        res = cli("ingest", tmp_path / "a", tmp_path / "b", "--embedder", "face-dlib", "--workers", "0",
                  "--no-progress", "--json")
        assert res.exit_code == 0, res.output
        assert stored()[0] == 5  # one face per photo

        a[1].unlink()
        b[0].unlink()
        # without --prune nothing is removed
        res = cli("ingest", tmp_path / "a", tmp_path / "b", "--workers", "0", "--no-progress")
        assert res.exit_code == 0, res.output
        assert "pruned" not in res.output
        assert stored()[0] == 5

        # --prune on folder a only: a's gone file goes, b's gone file (b not named) stays
        res = cli("ingest", tmp_path / "a", "--prune", "--workers", "0", "--no-progress", "--json")
        assert res.exit_code == 0, res.output
        out = json.loads(res.output)
        assert out["files_pruned"] == 1 and out["records_pruned"] == 1
        count, paths = stored()
        assert count == 4 and paths == {str(a[0]), str(a[2]), str(b[0]), str(b[1])}

        # a second prune finds nothing more; re-ingesting a does not bring the file back
        res = cli("ingest", tmp_path / "a", "--prune", "--workers", "0", "--no-progress")
        assert res.exit_code == 0, res.output
        assert "pruned 0 file(s) gone from disk: 0 record(s) deleted" in res.output
        assert stored()[0] == 4

        # then b: its gone file goes too, and the manifest no longer lists either
        res = cli("ingest", tmp_path / "b", "--prune", "--workers", "0", "--no-progress", "--json")
        assert json.loads(res.output)["records_pruned"] == 1
        count, paths = stored()
        assert count == 3 and paths == {str(a[0]), str(a[2]), str(b[1])}
        from vecface.config import data_dir
        from vecface.manifest import MANIFEST_NAME, Manifest

        with Manifest(data_dir() / MANIFEST_NAME) as manifest:
            assert set(manifest.files(store_factory.backend, name)) == {str(a[0]), str(a[2]), str(b[1])}
    finally:
        try:
            store_factory(dim=None, name=name, create=False)
        except Exception:
            pass


def test_prune_and_changed_files_recount_the_people(store_factory, tmp_path):
    """People's face counts (kept in the store) follow the faces: a prune and a file that changed
    into one without a face both recount them, and a representative face that is gone is replaced."""
    import skimage.data

    name = f"prune_people_{np.random.default_rng().integers(1 << 30)}"
    flags = ["--backend", store_factory.backend, "--collection", name]
    for key, value in store_factory.options.items():
        flags += [FLAGS[key], str(value)]

    def cli(*args):
        return CliRunner().invoke(app, [str(a) for a in args] + flags, catch_exceptions=False)

    def listed():
        res = cli("people", "list", "--json")
        assert res.exit_code == 0, res.output
        return json.loads(res.output)

    photos = _photos(tmp_path / "a", ["one.jpg", "two.jpg", "three.jpg"])
    try:
        assert cli("ingest", tmp_path / "a", "--embedder", "face-dlib", "--workers", "0", "--no-progress").exit_code == 0
        res = cli("people", "--json")
        assert res.exit_code == 0, res.output
        (person,) = json.loads(res.output)["people"]
        assert person["faces"] == 3
        assert cli("people", "name", person["id"], "Eileen").exit_code == 0

        gone = next(p for p in photos if str(p) == person["path"])  # the representative's photo goes
        gone.unlink()
        res = cli("ingest", tmp_path / "a", "--prune", "--workers", "0", "--no-progress", "--json")
        assert res.exit_code == 0 and json.loads(res.output)["records_pruned"] == 1, res.output
        (after,) = listed()
        assert (after["id"], after["name"], after["faces"]) == (person["id"], "Eileen", 2)
        assert after["path"] != str(gone) and after["representative"] != person["representative"]

        left = next(p for p in photos if p.exists() and str(p) != after["path"])
        Image.fromarray(skimage.data.chelsea()).save(left, "JPEG")  # now a cat: its face record goes
        res = cli("ingest", tmp_path / "a", "--workers", "0", "--no-progress", "--json")
        assert json.loads(res.output)["records_deleted"] == 1, res.output
        (last,) = listed()
        assert (last["name"], last["faces"], last["path"]) == ("Eileen", 1, after["path"])
    finally:
        try:
            store_factory(dim=None, name=name, create=False)  # dropped after the test
        except vecface.VecfaceError:
            pass
