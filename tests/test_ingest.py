"""Ingest: exact counts over good, duplicate and bad files, idempotent re-runs, changed files,
and a run killed with SIGKILL then finished by a re-run. Real dlib face model, real backends."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vecface.images import path_text, text_path
from vecface.ingest import EXIT_SKIPPED, ingest_folder, record_id
from vecface.manifest import Manifest

from .conftest import astronaut, encode, png_bomb

skimage_data = pytest.importorskip("skimage.data")

CLI = [sys.executable, "-m", "vecface.cli"]

# ingest one file per batch, sleeping 0.4 s after each, so a test can kill it midway
SLOW_INGEST = """
import json, sys, time
import vecface
from vecface.embedders import make_embedder
from vecface.ingest import ingest_folder
root, backend, name, options = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
with vecface.open_store(backend, name, 128, "cosine", **options) as store:
    report = ingest_folder(store, root, make_embedder("face-dlib"), batch_size=1, progress=False, workers=2,
                           on_batch=lambda report: time.sleep(0.4))
print(json.dumps(report.to_dict()))
"""


def build_folder(root: Path) -> dict:
    """Good face photos in several formats and nested folders, a duplicate, and each bad kind.
    Returns what ingest must report."""
    face = astronaut(320)
    jpg = encode(face, "JPEG", quality=90)
    good = {
        "astro.jpg": jpg,
        "ASTRO_UPPER.JPG": encode(face.rotate(0), "JPEG", quality=80),
        "nested/a/astro_small.png": encode(face.resize((280, 280)), "PNG"),
        "nested/a/deeper/astro_flip.webp": encode(face.transpose(Image.FLIP_LEFT_RIGHT), "WEBP", quality=90),
        "nested/b/astro.bmp": encode(face, "BMP"),
        "nested/b/astro.gif": encode(face, "GIF"),
        "nested/b/astro.tiff": encode(face, "TIFF"),
        "dup/astro_copy.jpg": jpg,  # same bytes as astro.jpg at another path: its own records
    }
    png = encode(face, "PNG")
    corrupt = bytearray(png)
    mid = len(png) // 2
    for i in range(mid, mid + 200):
        corrupt[i] ^= 0x5A
    bad = {
        "bad/truncated.jpg": jpg[: len(jpg) // 2],
        "bad/corrupt.png": bytes(corrupt),
        "bad/zero.jpg": b"",
        "bad/not_an_image.jpg": b"these are my holiday notes, not a photo\n" * 10,
        "bad/bomb.png": png_bomb(),
        "nested/cat_no_face.png": encode(Image.fromarray(skimage_data.chelsea()), "PNG"),
    }
    for rel, data in {**good, **bad}.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    (root / "nested" / "notes.txt").write_text("not scanned")
    (root / "bad" / "dangling.jpg").symlink_to(root / "does-not-exist.jpg")  # unreadable
    reasons = {"bad/truncated.jpg": "truncated", "bad/corrupt.png": "corrupt", "bad/zero.jpg": "empty",
               "bad/not_an_image.jpg": "not an image", "bad/bomb.png": "decompression bomb",
               "nested/cat_no_face.png": "no face", "bad/dangling.jpg": "unreadable"}
    if os.geteuid() != 0:  # root reads anything; the dangling link covers "unreadable" there
        p = root / "bad" / "locked.jpg"
        p.write_bytes(jpg)
        p.chmod(0)
        reasons["bad/locked.jpg"] = "unreadable"
    return {"good": sorted(str((root / r).absolute()) for r in good),
            "skipped": {str((root / r).absolute()): why for r, why in reasons.items()}}


def check_skips(report, expected: dict) -> None:
    got = {s.path: s.reason for s in report.skipped}
    assert set(got) == set(expected["skipped"])
    for path, why in expected["skipped"].items():
        assert got[path].startswith(why), (path, got[path])


def stored_ids(store, paths) -> set[str]:
    return {h.id for p in paths for h in store.search(np.ones(store.dim), 50, {"path": p})}


def test_ingest_counts_rerun_and_changes(store_factory, tmp_path, dlib_embedder):
    root = tmp_path / "photos"
    expected = build_folder(root)
    store = store_factory(dim=128)
    logs = tmp_path / "logs"
    with Manifest(tmp_path / "manifest.sqlite") as manifest:
        report = ingest_folder(store, root, dlib_embedder, tag="trip", batch_size=3, progress=False,
                               manifest=manifest, log_dir=logs)
        n_good = len(expected["good"])
        assert report.files_seen == n_good + len(expected["skipped"])
        assert report.files_stored == n_good and report.records_stored == n_good  # one face each
        assert report.files_unchanged == 0 and report.records_deleted == 0
        check_skips(report, expected)
        assert report.exit_code == EXIT_SKIPPED
        assert store.count() == n_good
        log = Path(report.log_path).read_text()
        for path in expected["skipped"]:
            assert path in log
        # every stored record: its path, its face box, the tag, and the stable id
        for rec in store.get(stored_ids(store, expected["good"])):
            assert rec.path in expected["good"] and rec.tag == "trip"
            top, right, bottom, left = rec.bbox
            assert 0 <= top < bottom <= 320 and 0 <= left < right <= 320
            assert rec.id == record_id(rec.path, rec.metadata["sha256"], rec.bbox)
        assert len(stored_ids(store, expected["good"])) == n_good

        # second run: nothing new
        again = ingest_folder(store, root, dlib_embedder, tag="trip", batch_size=3, progress=False,
                              manifest=manifest, log_dir=logs)
        assert again.files_stored == 0 and again.records_stored == 0 and again.records_deleted == 0
        assert again.files_unchanged == n_good
        check_skips(again, expected)
        assert store.count() == n_good

        # a changed file replaces its old records; a good file turned bad loses them
        changed = str((root / "nested/a/deeper/astro_flip.webp").absolute())
        old_ids = {h.id for h in store.search(np.ones(128), 5, {"path": changed})}
        Path(changed).write_bytes(encode(astronaut(300), "WEBP", quality=70))
        broken = str((root / "nested/b/astro.bmp").absolute())
        Path(broken).write_bytes(b"BM" + b"\0" * 40)
        third = ingest_folder(store, root, dlib_embedder, tag="trip", batch_size=3, progress=False,
                              manifest=manifest, log_dir=logs)
        assert third.files_stored == 1 and third.files_replaced == 1
        assert third.records_deleted == 2  # the old version of the changed file, and the broken one
        assert broken in {s.path for s in third.skipped}
        assert store.count() == n_good - 1
        assert store.get(list(old_ids)) == []
        assert len({h.id for h in store.search(np.ones(128), 5, {"path": changed})}) == 1
        assert store.search(np.ones(128), 5, {"path": broken}) == []
        files = manifest.files(store.backend, store.name)
        assert broken not in files and sum(len(s.ids) for s in files.values()) == n_good - 1


def _cli_flags(store_factory) -> list[str]:
    flags = {"path": "--faiss-path", "dsn": "--dsn", "url": "--url", "data_dir": "--data-dir"}
    out = []
    for key, value in store_factory.options.items():
        out += [flags[key], str(value)]
    return out


def _files_done(manifest_path: Path, backend: str, collection: str) -> int:
    if not manifest_path.exists():
        return 0
    con = sqlite3.connect(manifest_path, timeout=10)
    try:
        return con.execute("SELECT count(*) FROM files WHERE backend=? AND collection=?",
                           (backend, collection)).fetchone()[0]
    except sqlite3.OperationalError:
        return 0
    finally:
        con.close()


def _worker_pids(parent: int) -> list[int]:
    """The ingest worker processes (multiprocessing spawn children) of ``parent``."""
    try:
        children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    except OSError:
        return []
    pids = []
    for pid in map(int, children):
        try:
            if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                pids.append(pid)
        except OSError:
            pass
    return pids


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.parametrize("victim", ["parent", "worker"])
def test_sigkill_midway_then_rerun(store_factory, tmp_path, vecface_home, victim):
    """SIGKILL of the ingest process (its workers then exit too), or of one of its two worker
    processes (the run goes on: the lost files are re-run), then a re-run: exact counts."""
    if not Path("/proc/self/task").exists():
        pytest.skip("finding the worker processes needs Linux's /proc")
    root = tmp_path / "photos"
    expected = build_folder(root)
    store = store_factory(dim=128)
    name, backend = store.name, store.backend
    store.close()  # the ingest process owns the collection while it runs
    cmd = CLI + ["ingest", str(root), "--backend", backend, "--collection", name, "--embedder", "face-dlib",
                 "--batch-size", "1", "--no-progress", *_cli_flags(store_factory)]
    # the run to kill: the same ingest through the library, slowed down by its on_batch callback
    proc = subprocess.Popen([sys.executable, "-c", SLOW_INGEST, str(root), backend, name,
                             json.dumps(store_factory.options)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    manifest_path = Path(os.environ["VECFACE_HOME"]) / "ingest.sqlite"
    deadline = time.monotonic() + 120
    workers: list[int] = []
    try:
        while _files_done(manifest_path, backend, name) < 3 or len(workers) < 2:
            assert proc.poll() is None, proc.stdout.read().decode()
            assert time.monotonic() < deadline, "the ingest made no progress"
            workers = _worker_pids(proc.pid)
            time.sleep(0.05)
        os.kill(proc.pid if victim == "parent" else workers[0], signal.SIGKILL)
        out, _ = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(30)
        gone = time.monotonic() + 10
        while any(map(_alive, workers)) and time.monotonic() < gone:
            time.sleep(0.1)
        for pid in filter(_alive, workers):  # never leave one behind, even when the test fails
            os.kill(pid, signal.SIGKILL)
    assert not any(map(_alive, workers)), "worker processes outlived the ingest"
    done_before = _files_done(manifest_path, backend, name)
    n_good = len(expected["good"])
    if victim == "parent":
        assert proc.returncode == -signal.SIGKILL
        assert 3 <= done_before < n_good
    else:  # the killed worker's files were re-run; nothing skipped for it
        assert proc.returncode == 0, out.decode()
        first = json.loads(out.decode().strip().splitlines()[-1])
        assert first["files_stored"] + first["files_unchanged"] == n_good == done_before
        assert {s["path"] for s in first["skipped"]} == set(expected["skipped"])

    rerun = subprocess.run(cmd + ["--json"], capture_output=True, text=True, timeout=300)
    assert rerun.returncode == EXIT_SKIPPED, rerun.stdout + rerun.stderr
    report = json.loads(rerun.stdout)
    assert report["files_unchanged"] == done_before
    assert report["files_stored"] == n_good - done_before
    assert {s["path"] for s in report["skipped"]} == set(expected["skipped"])

    fresh = store_factory(dim=None, name=name, create=False)  # dropped after the test
    assert fresh.count() == n_good
    ids = stored_ids(fresh, expected["good"])
    assert len(ids) == n_good
    with Manifest() as manifest:
        files = manifest.files(backend, name)
    assert sorted(files) == expected["good"]
    assert {i for s in files.values() for i in s.ids} == ids


def test_odd_file_names_are_stored_and_cannot_forge_log_lines(store_factory, tmp_path, dlib_embedder):
    """A name that is not valid UTF-8 is stored with a path that maps back to the same bytes; a
    name holding newlines and tabs is one escaped line in the log."""
    root = tmp_path / "photos"
    root.mkdir()
    jpg = encode(astronaut(320), "JPEG", quality=90)
    latin1 = os.fsencode(root) + b"/caf\xe9.jpg"  # Latin-1 "café": not valid UTF-8
    with open(latin1, "wb") as fh:
        fh.write(jpg)
    backslash = root / "caf\\xe9.jpg"  # valid UTF-8 whose text looks like an escape
    backslash.write_bytes(encode(astronaut(300), "JPEG", quality=90))
    forged = root / "evil\nSKIPPED\tforged.jpg\tfake reason.jpg"
    forged.write_bytes(b"not a photo")
    store = store_factory(dim=128)
    with Manifest(tmp_path / "m.sqlite") as manifest:
        report = ingest_folder(store, root, dlib_embedder, progress=False, manifest=manifest, log_dir=tmp_path)
        assert report.files_stored == 2 and report.records_stored == 2 and store.count() == 2
        assert [s.reason.split(":")[0] for s in report.skipped] == ["not an image (unrecognised format)"]
        by_bytes = {}
        for rec in store.get(list(stored_ids(store, [path_text(latin1), str(backslash)]))):
            assert rec.id == record_id(rec.path, rec.metadata["sha256"], rec.bbox)
            by_bytes[os.fsencode(text_path(rec.path))] = rec.path
        assert set(by_bytes) == {latin1, os.fsencode(backslash)}
        assert by_bytes[latin1].startswith("fsbytes:") and by_bytes[os.fsencode(backslash)] == str(backslash)
        with open(text_path(by_bytes[latin1]), "rb") as fh:  # the stored path opens the file
            assert fh.read() == jpg
        again = ingest_folder(store, root, dlib_embedder, progress=False, manifest=manifest, log_dir=tmp_path)
        assert again.files_unchanged == 2 and again.files_stored == 0 and store.count() == 2
    log = Path(report.log_path).read_text(encoding="utf-8").splitlines()
    skipped = [line for line in log if line.startswith("SKIPPED")]
    assert len(skipped) == 1 and "evil\\nSKIPPED\\tforged.jpg\\tfake reason.jpg\t" in skipped[0]
    assert skipped[0].count("\t") == 2


def _without_root_privileges() -> list[str]:
    """A command prefix that runs a process without root's power to read any directory."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: root reads every directory")
    return ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"]


def test_unreadable_subdirectory_is_reported_exit_3(tmp_path):
    root = tmp_path / "photos"
    (root / "locked").mkdir(parents=True)
    (root / "ok.jpg").write_bytes(encode(astronaut(320), "JPEG"))
    (root / "locked" / "hidden.jpg").write_bytes(encode(astronaut(320), "JPEG"))
    (root / "locked").chmod(0)
    try:
        run = subprocess.run(_without_root_privileges() + CLI + [
            "ingest", str(root), "--backend", "faiss", "--collection", "locked", "--embedder", "face-dlib",
            "--faiss-path", str(tmp_path / "faiss"), "--data-dir", str(tmp_path / "home"), "--json"],
            capture_output=True, text=True, timeout=300)
    finally:
        (root / "locked").chmod(0o755)
    assert run.returncode == EXIT_SKIPPED, run.stdout + run.stderr
    report = json.loads(run.stdout)
    assert report["files_stored"] == 1
    assert report["skipped"] == [{"path": str(root / "locked"), "reason": "unreadable directory: permission denied"}]
