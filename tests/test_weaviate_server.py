"""The local Weaviate server vecface builds and runs, and Weaviate-specific failure reporting."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys

import numpy as np
import pytest

import vecface
from vecface import HNSW, Record
from vecface.errors import BackendUnavailable, IngestFailed

from vecface.backends import _server, weaviate_install

from .conftest import clustered

pytestmark = pytest.mark.skipif(bool(os.environ.get("VECFACE_WEAVIATE_URL")),
                                reason="these tests are about the server vecface runs itself")


def test_server_survives_restart_with_its_data(weaviate_options, tmp_path):
    from vecface.backends import weaviate_server

    home = tmp_path / "home"  # a server of its own, apart from the session's
    x = clustered(300, 16, seed=3)
    with vecface.open_store("weaviate", "persist", 16, "cosine", data_dir=home) as s:
        s.build_index(HNSW(m=8, ef_construction=32))
        s.upsert_arrays([f"r{i}" for i in range(300)], x, [{"tag": "even" if i % 2 == 0 else "odd"} for i in range(300)])
        before = [h.id for h in s.search(x[7], k=5)]
        first = weaviate_server.running(home)
        assert first is not None
    # the last handle is gone: the server was stopped cleanly
    assert weaviate_server.running(home) is None
    assert not _server.pid_alive(first.pid)
    assert "shutdown" in (home / "weaviate" / "weaviate.log").read_text().lower()

    with vecface.open_store("weaviate", "persist", data_dir=home) as again:
        second = weaviate_server.running(home)
        assert second.pid != first.pid
        assert again.dim == 16 and again.metric is vecface.Metric.COSINE
        assert again.index == HNSW(m=8, ef_construction=32)
        assert again.count() == 300
        assert [h.id for h in again.search(x[7], k=5)] == before
        assert len(again.search(x[7], k=200, filter={"tag": "odd"})) == 150
        again.drop()


@pytest.mark.parametrize("backend", ["weaviate"])  # Weaviate-specific: the store factory for this backend only
def test_failed_objects_raise_ingest_failed(store_factory):
    s = store_factory(dim=8)
    s.upsert([Record("ok", np.ones(8), {"tag": "a"})])
    good = np.full(8, 0.5, dtype=np.float32)
    short = np.ones(5, dtype=np.float32)  # bypasses the public validation on purpose
    with pytest.raises(IngestFailed) as info:
        s._upsert(["g1", "bad", "g2"], [good, short, good], [{}, {"tag": "x"}, {}])
    err = info.value
    assert "1 of 3 objects" in str(err)
    assert [i for i, _ in err.failures] == ["bad"]
    assert err.failures[0][1]  # Weaviate's own reason is kept
    assert s.get(["bad"]) == []
    assert {r.id for r in s.get(["ok", "g1", "g2"])} == {"ok", "g1", "g2"}


def test_another_process_attaches_to_the_running_server(weaviate_options):
    from vecface.backends import weaviate_server

    mine = weaviate_server.running(weaviate_options["data_dir"])
    code = ("import json,sys; from vecface.backends import weaviate_server as w; "
            "i = w.acquire(sys.argv[1]); print(json.dumps([i.pid, i.http_port])); w.release(sys.argv[1])")
    out = subprocess.run([sys.executable, "-c", code, weaviate_options["data_dir"]],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    assert json.loads(out.strip().splitlines()[-1]) == [mine.pid, mine.http_port]
    assert weaviate_server.is_ready(mine.http_port)  # the other process did not stop it


def test_install_skips_a_cached_binary(tmp_path, monkeypatch):
    monkeypatch.setenv("VECFACE_WEAVIATE_BIN_DIR", str(tmp_path))
    fake = tmp_path / weaviate_install.BINARY_NAME
    fake.write_text("#!/bin/sh\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    res = weaviate_install.install()
    assert res.method == "cached" and res.path == fake


def test_install_without_go_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("VECFACE_WEAVIATE_BIN_DIR", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))  # no go here
    with pytest.raises(BackendUnavailable) as info:
        weaviate_install.install(allow_download=False)
    msg = str(info.value)
    assert "Go" in msg and "docker-compose.yml" in msg and "VECFACE_WEAVIATE_URL" in msg


def test_unreachable_url_is_reported_without_the_api_key():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again below: nothing listens there
    secret = "sekrit-api-key-123"
    with pytest.raises(BackendUnavailable) as info:
        vecface.open_store("weaviate", "x", 8, url=f"http://127.0.0.1:{port}", grpc_port=port + 1, api_key=secret)
    assert secret not in str(info.value)
    status = {b.name: b for b in vecface.registry.check_backends(
        weaviate={"url": f"http://127.0.0.1:{port}", "api_key": secret})}["weaviate"]
    assert not status.available and secret not in status.detail


@pytest.fixture(scope="module")
def weaviate_binary():
    return weaviate_install.install().path


def _wait_for(cond, timeout: float, what: str) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"{what}: not within {timeout:.0f} s"
        time.sleep(0.05)


def test_a_client_killed_while_its_server_starts_leaves_no_orphan(tmp_path, weaviate_binary):
    """A client SIGKILLed between spawning its server and the server's being ready, twice: the
    server is recorded, 'status' says so, the next user adopts it (no 120 s wait, no second
    server), and its last release stops it."""
    import signal

    from vecface.backends import weaviate_server as ws

    home = tmp_path / "home"
    data_path = ws.home_for(home) / "data"
    record = ws.home_for(home) / "server.json"
    code = "import sys, time; from vecface.backends import weaviate_server as w; w.acquire(sys.argv[1]); time.sleep(300)"
    children = []
    try:
        for attempt in range(2):  # each killed attempt used to add one more orphan
            before = json.loads(record.read_text())["pid"] if record.exists() else None
            child = subprocess.Popen([sys.executable, "-c", code, str(home)])
            children.append(child)
            if before is None:  # the first client spawns a server: kill it before the server is ready
                _wait_for(lambda: record.exists(), 60, "the server was not recorded")
                assert json.loads(record.read_text())["ready"] is False
            else:  # the second finds the recorded one and waits for it: kill it then
                import time

                time.sleep(2)
            child.send_signal(signal.SIGKILL)
            child.wait(10)
            assert len(ws.processes_on(data_path)) == 1
        st = ws.status(home)
        assert st.recorded is not None and st.alive and st.unrecorded == []
        assert st.recorded.pid == ws.processes_on(data_path)[0]
        info = ws.acquire(home)  # adopts it (waits for it to be ready) instead of starting another
        try:
            assert info.pid == st.recorded.pid and ws.is_ready(info.http_port)
            assert ws.processes_on(data_path) == [info.pid]
        finally:
            ws.release(home)
        assert ws.processes_on(data_path) == []  # adopted: the last release stopped it
        assert ws.status(home).recorded is None
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
        ws.stop_server(home)


def test_an_unrecorded_server_is_found_by_its_data_dir_and_stopped(tmp_path, weaviate_binary):
    """A weaviate-server on the data dir that no record names (an orphan of an older vecface):
    'status' shows it, and 'stop' stops it."""
    from typer.testing import CliRunner

    from vecface.backends import weaviate_server as ws
    from vecface.cli import app

    home = tmp_path / "home"
    wh = ws.home_for(home)
    wh.mkdir(parents=True)
    ports = ws.node_ports()
    orphan = ws.ServerInfo(pid=0, http_port=ports["http"], grpc_port=ports["grpc"], ports=ports,
                           version=weaviate_install.PINNED_VERSION, data_path=str(wh / "data"),
                           log_path=str(wh / "weaviate.log"))
    proc = ws.spawn(weaviate_binary, orphan, ws.node_env(wh / "data", ports), wh)
    try:
        # the scan knows a process by its executable and environment, which it has once exec'd
        _wait_for(lambda: ws.status(home).unrecorded == [proc.pid], 10, "the orphan found by its data dir")
        st = ws.status(home)
        assert st.recorded is None and st.unrecorded == [proc.pid]
        out = CliRunner().invoke(app, ["weaviate", "status", "--data-dir", str(home)]).output
        assert "unrecorded" in out and str(proc.pid) in out
        out = CliRunner().invoke(app, ["weaviate", "stop", "--data-dir", str(home)]).output
        assert "stopped" in out
        assert proc.wait(30) is not None and ws.processes_on(wh / "data") == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
