"""Several node URLs: when the node the store talks to goes away, the next call moves to a live one.

The "first node" is a loopback TCP relay in front of the real local server (its HTTP and gRPC
ports); closing the relay is, for the client, that node dying. The second URL is the server itself.
"""

from __future__ import annotations

import socket
import threading

import pytest

import vecface

from .conftest import clustered

pytest.importorskip("weaviate")


class Relay:
    """Forward every connection on a new 127.0.0.1 port to ``target``; :meth:`kill` drops them all."""

    def __init__(self, target: int):
        self.target = target
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            with self.lock:
                self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def kill(self) -> None:
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() (a close alone does not)
        except OSError:
            pass
        self.listener.close()
        with self.lock:
            for s in self.conns:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                    s.close()
                except OSError:
                    pass


def _relayed_and_direct(weaviate_options):
    """Relays in front of the local server's HTTP and gRPC ports, and two node URLs: first through
    the relays (a node that can be killed), then direct (the live node)."""
    from vecface.backends import weaviate_server

    info = weaviate_server.running(weaviate_options.get("data_dir"))
    if info is None:
        pytest.skip("needs the local server")
    http, grpc = Relay(info.http_port), Relay(info.grpc_port)
    return http, grpc, [f"http://127.0.0.1:{http.port}?grpc={grpc.port}",
                        f"http://127.0.0.1:{info.http_port}?grpc={info.grpc_port}"]


def test_a_dead_node_mid_session_moves_the_store_to_a_live_one(weaviate_options):
    http, grpc, urls = _relayed_and_direct(weaviate_options)
    x = clustered(30, 8)
    store = vecface.open_store("weaviate", "failover", 8, "cosine", url=urls)
    try:
        assert store._node == 0
        store.upsert_arrays([f"a{i}" for i in range(15)], x[:15])
        http.kill()
        grpc.kill()
        store.upsert_arrays([f"a{i}" for i in range(15, 30)], x[15:])  # moves to the second URL
        assert store._node == 1
        assert store.count() == 30
        assert store.search(x[20], k=1)[0].id == "a20"
    finally:
        http.kill()
        grpc.kill()
        store.drop()


def test_a_search_on_a_node_that_dies_moves_within_seconds(weaviate_options):
    """The client retries a search on a dead node for a minute; the store's watch of the node
    closes that client after two failed liveness probes, and the search moves to the live node."""
    http, grpc, urls = _relayed_and_direct(weaviate_options)
    x = clustered(20, 8)
    store = vecface.open_store("weaviate", "failover_search", 8, "cosine", url=urls)
    try:
        store.upsert_arrays([f"a{i}" for i in range(20)], x)
        assert store.search(x[3], k=1)[0].id == "a3" and store._node == 0
        http.kill()
        grpc.kill()
        assert store.search(x[5], k=1)[0].id == "a5"
        assert store._node == 1
        assert store._dead is not None  # the watch ended the client's retries on the dead node
    finally:
        http.kill()
        grpc.kill()
        store.drop()


def test_no_live_node_at_open_is_backend_unavailable(weaviate_options):
    from vecface.backends import weaviate_server

    info = weaviate_server.running(weaviate_options.get("data_dir"))
    if info is None:
        pytest.skip("needs the local server")
    relays = [Relay(info.http_port) for _ in range(2)]
    for r in relays:
        r.kill()
    with pytest.raises(vecface.BackendUnavailable, match="cannot reach Weaviate"):
        vecface.open_store("weaviate", "nowhere", 8, url=[f"http://127.0.0.1:{r.port}" for r in relays])
