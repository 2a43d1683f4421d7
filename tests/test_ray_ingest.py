"""Ingest on a Ray cluster: a head and one worker node started here on 127.0.0.1 (one CPU each),
the real dlib face model. The same ids as a local ingest, the same skipped files and reasons, a
Ray worker killed mid-run then a re-run ending with exact counts, and the CLI's --ray."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

# before Ray is imported: keep every Ray address on the loopback (otherwise Ray swaps 127.0.0.1
# for the machine's address, and its servers would listen there)
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
ray = pytest.importorskip("ray")
pytest.importorskip("skimage.data")

import vecface  # noqa: E402
from vecface.ingest import ingest_folder  # noqa: E402
from vecface.ingest_workers import WORKER_DIED  # noqa: E402
from vecface.manifest import Manifest  # noqa: E402

from .conftest import astronaut, encode  # noqa: E402
from .test_ingest import _files_done, build_folder, check_skips  # noqa: E402

CLI = [sys.executable, "-m", "vecface.cli"]
pytestmark = pytest.mark.timeout(240)


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            tree.setdefault(ppid, []).append(int(entry))
    return tree


def _descendants(pid: int) -> list[int]:
    tree, out, todo = _children(), [], [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def ingest_worker_pids() -> list[int]:
    """The Ray actor processes of this test's cluster doing ingest work."""
    return [p for p in _descendants(os.getpid()) if _cmdline(p).startswith("ray::_IngestWorker")]


@pytest.fixture(scope="module")
def ray_cluster():
    """A Ray head and one worker node (one CPU each), all on 127.0.0.1; the driver is this process."""
    from ray.cluster_utils import Cluster

    temp = tempfile.mkdtemp(prefix="vfray", dir="/tmp")  # short: Ray's socket paths have a length limit
    os.makedirs(os.path.join(temp, "ray"))
    old_tmp = os.environ.get("RAY_TMPDIR")
    os.environ["RAY_TMPDIR"] = temp
    cluster = None
    try:
        cluster = Cluster(initialize_head=True, shutdown_at_exit=True,
                          head_node_args={"num_cpus": 1, "node_ip_address": "127.0.0.1", "temp_dir": temp,
                                          "include_dashboard": False, "object_store_memory": 80 * 2**20})
        cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1", object_store_memory=80 * 2**20)
        ray.init(address=cluster.address, log_to_driver=False)
        assert ray.cluster_resources().get("CPU") == 2
        assert len([n for n in ray.nodes() if n["Alive"]]) == 2
        yield cluster.address
    finally:
        ours = _descendants(os.getpid())
        if ray.is_initialized():
            ray.shutdown()
        if cluster is not None:
            cluster.shutdown()
        for pid in ours:  # whatever outlived the shutdown (agents, workers)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if old_tmp is None:
            os.environ.pop("RAY_TMPDIR", None)
        else:
            os.environ["RAY_TMPDIR"] = old_tmp
        shutil.rmtree(temp, ignore_errors=True)


def _store(faiss_options, name):
    return vecface.open_store("faiss", name, 128, "cosine", **faiss_options)


def _ids_by_path(manifest: Manifest, name: str) -> dict[str, list[str]]:
    return {p: sorted(s.ids) for p, s in manifest.files("faiss", name).items()}


def test_ray_ingest_stores_the_same_ids_and_skips_as_local(ray_cluster, tmp_path, faiss_options, dlib_embedder):
    root = tmp_path / "photos"
    expected = build_folder(root)
    with Manifest(tmp_path / "local.sqlite") as m_local, Manifest(tmp_path / "ray.sqlite") as m_ray, \
            _store(faiss_options, "ray_local") as local, _store(faiss_options, "ray_cluster") as on_ray:
        a = ingest_folder(local, root, dlib_embedder, batch_size=4, progress=False, workers=0, manifest=m_local,
                          log_dir=tmp_path / "logs")
        b = ingest_folder(on_ray, root, dlib_embedder, batch_size=4, progress=False, manifest=m_ray,
                          log_dir=tmp_path / "logs", ray=ray_cluster)
        for report in (a, b):
            assert report.files_stored == len(expected["good"])
            check_skips(report, expected)
        assert {(s.path, s.reason) for s in b.skipped} == {(s.path, s.reason) for s in a.skipped}
        assert b.records_stored == a.records_stored > 0
        ids = _ids_by_path(m_ray, "ray_cluster")
        assert ids == _ids_by_path(m_local, "ray_local")
        assert sorted(ids) == expected["good"]
        assert on_ray.count() == local.count() == a.records_stored
        all_ids = [i for v in ids.values() for i in v]
        assert {r.id for r in on_ray.get(all_ids)} == set(all_ids)
        # the log lists the same skipped files
        assert Path(b.log_path).read_text().count("SKIPPED\t") == len(expected["skipped"])
        # a re-run on the cluster decodes nothing and stores nothing
        again = ingest_folder(on_ray, root, dlib_embedder, batch_size=4, progress=False, manifest=m_ray,
                              log_dir=tmp_path / "logs", ray=ray_cluster)
        assert again.files_unchanged == len(expected["good"])
        assert again.files_stored == 0 and again.records_stored == 0
        assert on_ray.count() == a.records_stored


def test_ray_worker_killed_midway_then_rerun_exact_counts(ray_cluster, tmp_path, faiss_options, dlib_embedder):
    root = tmp_path / "many"
    _portraits(root, 12)
    killed: list[int] = []

    def kill_one(report) -> None:
        if not killed and report.files_stored >= 2:
            pids = ingest_worker_pids()
            assert pids, "no Ray ingest worker found"
            os.kill(pids[0], signal.SIGKILL)
            killed.append(pids[0])

    with Manifest(tmp_path / "m.sqlite") as manifest, _store(faiss_options, "ray_killed") as store:
        first = ingest_folder(store, root, dlib_embedder, batch_size=1, progress=False, manifest=manifest,
                              log_dir=tmp_path / "logs", ray=ray_cluster, on_batch=kill_one)
        assert killed, "the run ended before a worker could be killed"
        # every file is accounted for exactly once: stored, or skipped because its worker died
        assert first.files_stored + len(first.skipped) == 12
        assert all(s.reason == WORKER_DIED for s in first.skipped)
        assert store.count() == first.records_stored == first.files_stored
        second = ingest_folder(store, root, dlib_embedder, batch_size=1, progress=False, manifest=manifest,
                               log_dir=tmp_path / "logs", ray=ray_cluster)
        assert second.skipped == []
        assert second.files_unchanged == first.files_stored
        assert second.files_stored == len(first.skipped)
        assert store.count() == 12
        assert len(manifest.files("faiss", "ray_killed")) == 12


def test_cli_ingest_on_ray(ray_cluster, tmp_path):
    root = tmp_path / "photos"
    expected = build_folder(root)
    run = subprocess.run(CLI + ["ingest", str(root), "--backend", "faiss", "--collection", "cli_ray",
                                "--embedder", "face-dlib", "--faiss-path", str(tmp_path / "faiss"),
                                "--data-dir", str(tmp_path / "home"), "--ray", ray_cluster, "--json"],
                         capture_output=True, text=True, timeout=180)
    assert run.returncode == 3, run.stderr[-2000:]  # finished, some files skipped
    report = json.loads(run.stdout)
    assert report["files_stored"] == len(expected["good"])
    assert {s["path"] for s in report["skipped"]} == set(expected["skipped"])
    assert _wait_no_ingest_workers(15), "the driver's actors outlived it"


def _portraits(root: Path, n: int) -> None:
    root.mkdir()
    face = astronaut(320)
    for i in range(n):  # n different files, one face each
        (root / f"astro_{i:02d}.jpg").write_bytes(encode(face.resize((300 + 4 * i, 300 + 4 * i)), "JPEG", quality=85))


def _wait_no_ingest_workers(seconds: float) -> bool:
    gone = time.monotonic() + seconds
    while ingest_worker_pids() and time.monotonic() < gone:
        time.sleep(0.5)
    return not ingest_worker_pids()


def test_ray_driver_killed_midway_then_rerun_exact_counts(ray_cluster, tmp_path):
    """SIGKILL of the ingest process (the Ray driver): its actors end with it; a re-run finishes."""
    root = tmp_path / "photos"
    _portraits(root, 24)
    home = tmp_path / "home"
    cmd = CLI + ["ingest", str(root), "--backend", "faiss", "--collection", "ray_driver", "--embedder",
                 "face-dlib", "--faiss-path", str(tmp_path / "faiss"), "--data-dir", str(home),
                 "--batch-size", "1", "--ray", ray_cluster, "--json"]
    proc = subprocess.Popen(cmd + ["--no-progress"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 150
    try:
        while _files_done(home / "ingest.sqlite", "faiss", "ray_driver") < 3:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "the ingest made no progress"
            time.sleep(0.05)
        proc.kill()
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    assert _wait_no_ingest_workers(30), "Ray ingest actors outlived their driver"
    done_before = _files_done(home / "ingest.sqlite", "faiss", "ray_driver")
    assert 3 <= done_before < 24
    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    report = json.loads(rerun.stdout)
    assert report["files_unchanged"] == done_before
    assert report["files_stored"] == 24 - done_before
    assert report["skipped"] == []
    with Manifest(home / "ingest.sqlite") as manifest:
        files = manifest.files("faiss", "ray_driver")
    assert len(files) == 24
    with vecface.open_store("faiss", "ray_driver", create=False, path=str(tmp_path / "faiss")) as store:
        assert store.count() == 24
        ids = [i for f in files.values() for i in f.ids]
        assert {r.id for r in store.get(ids)} == set(ids)
