"""Shared fixtures: real backends, started once per test session in a temporary data directory.

``store_factory`` is parametrised over every backend in BACKENDS; tests that take it run once per
backend. Each backend has a session fixture ``<name>_options`` giving the keyword options that
``vecface.open_store`` needs to reach the backend started for the tests.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from pathlib import Path

import numpy as np
import pytest

import vecface

# the conformance suite runs against each of these
BACKENDS = list(vecface.BACKENDS)  # every registered backend
#: backend variants on a cluster: test id -> the backend it runs. Only modules marked
#: ``pytest.mark.cluster_variants`` run them (the others' items are deselected); each variant's
#: options come from the fixture ``<id with _>_options``.
CLUSTER_VARIANTS = {"weaviate-cluster": "weaviate"}

_counter = itertools.count()


@pytest.fixture(scope="session")
def vecface_home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("vecface-home")
    old = os.environ.get("VECFACE_HOME")
    os.environ["VECFACE_HOME"] = str(home)
    yield home
    if old is None:
        os.environ.pop("VECFACE_HOME", None)
    else:
        os.environ["VECFACE_HOME"] = old


@pytest.fixture(scope="session")
def faiss_options(vecface_home) -> dict:
    return {"path": str(vecface_home / "faiss")}


@pytest.fixture(scope="session")
def pgvector_options(vecface_home) -> dict:
    """The embedded PostgreSQL, held open for the whole session (unless VECFACE_PG_DSN is set)."""
    from vecface.backends import pg_server

    if os.environ.get("VECFACE_PG_DSN"):
        yield {}
        return
    pg_server.acquire(vecface_home)
    yield {"data_dir": str(vecface_home)}
    pg_server.release(vecface_home)


@pytest.fixture(scope="session")
def weaviate_options(vecface_home) -> dict:
    """The local Weaviate server, built if missing and held open for the whole session
    (unless VECFACE_WEAVIATE_URL points at another server)."""
    from vecface.backends import weaviate_install, weaviate_server

    if os.environ.get("VECFACE_WEAVIATE_URL"):
        yield {}
        return
    weaviate_install.install()  # no-op when the pinned binary is cached; a real build otherwise
    weaviate_server.acquire(vecface_home)
    yield {"data_dir": str(vecface_home)}
    weaviate_server.release(vecface_home)


@contextlib.contextmanager
def local_weaviate_cluster(home: Path, nodes: int = 3):
    """``nodes`` weaviate-server nodes of one cluster on 127.0.0.1 with their data in ``home``,
    stopped at the end whatever happens (skips when VECFACE_WEAVIATE_URL names another server)."""
    from vecface.backends import weaviate_cluster, weaviate_install

    if os.environ.get("VECFACE_WEAVIATE_URL"):
        pytest.skip("the cluster tests run the local weaviate-server binary")
    weaviate_install.install()
    try:
        yield weaviate_cluster.start_cluster(home, nodes, timeout=120)
    finally:
        weaviate_cluster.stop_cluster(home)


@pytest.fixture(scope="module")
def weaviate_cluster_options(tmp_path_factory) -> dict:
    """Three nodes, replication factor 3, read and written at ALL; started for the module that asks
    (the conformance suite) and stopped at its end. ALL, because the suite checks every search right
    after its write: a search reads one replica, which at QUORUM may not have the write yet (measured:
    6 of 36 filtered searches right after a QUORUM write missed records; 0 of 36 at ALL)."""
    with local_weaviate_cluster(tmp_path_factory.mktemp("wv-conformance-cluster")) as cluster:
        yield {**cluster.store_options(), "replication_factor": 3, "consistency": "all"}


@pytest.fixture(params=BACKENDS + list(CLUSTER_VARIANTS))
def backend(request) -> str:
    return CLUSTER_VARIANTS.get(request.param, request.param)


@pytest.fixture
def backend_options(request, backend) -> dict:
    variant = request.node.callspec.params.get("backend", backend)
    return request.getfixturevalue(f"{variant.replace('-', '_')}_options")


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "cluster_variants: also run the store_factory tests on CLUSTER_VARIANTS")


def pytest_collection_modifyitems(config, items) -> None:
    """Cluster variants run only in modules marked ``cluster_variants``."""
    keep, drop = [], []
    for item in items:
        param = getattr(getattr(item, "callspec", None), "params", {}).get("backend")
        cluster = param in CLUSTER_VARIANTS and item.get_closest_marker("cluster_variants") is None
        (drop if cluster else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture
def store_factory(backend, backend_options):
    """``make(dim=8, metric='cosine', name=None)`` -> an open store with a fresh collection;
    every store it made is dropped (or closed) after the test."""
    made = []

    def make(dim: int | None = 8, metric="cosine", name: str | None = None, create: bool = True):
        name = f"t{os.getpid()}_{next(_counter)}" if name is None else name
        store = vecface.open_store(backend, name, dim, metric, create=create, **backend_options)
        made.append(store)
        return store

    make.backend = backend
    make.options = backend_options
    yield make
    for s in made:
        try:
            if not s._closed:
                s.drop()
        except vecface.VecfaceError:
            pass


def clustered(n: int, dim: int, *, clusters: int = 20, spread: float = 0.35, seed: int = 0) -> np.ndarray:
    """Unit vectors scattered around random centres: a small stand-in for embedding data."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim))
    x = centres[rng.integers(0, clusters, n)] + spread * rng.normal(size=(n, dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32)


# ---------------------------------------------------------------- shared image builders and embedders
# (import them with ``from .conftest import astronaut, encode, png_bomb``)

def skimage_photo(name: str) -> np.ndarray:
    """One of scikit-image's sample photos (``astronaut``, ``chelsea``, ...); skips without it."""
    data = pytest.importorskip("skimage.data")
    return getattr(data, name)()


def astronaut(size: int | None = None):
    """skimage's astronaut portrait (one face) as an RGB PIL image, 512 px or resized to ``size``."""
    from PIL import Image

    img = Image.fromarray(skimage_photo("astronaut"))
    return img if size is None else img.resize((size, size), Image.BICUBIC)


def encode(img, fmt: str = "PNG", **kw) -> bytes:
    """``img`` (a PIL image) encoded as ``fmt``, in memory."""
    import io

    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def png_bomb(w: int = 50_000, h: int = 50_000) -> bytes:
    """A valid 1x1 PNG whose header claims w x h pixels (a few dozen bytes)."""
    import struct
    import zlib

    from PIL import Image

    raw = bytearray(encode(Image.new("L", (1, 1)), "PNG"))
    raw[16:24] = struct.pack(">II", w, h)
    raw[29:33] = struct.pack(">I", zlib.crc32(bytes(raw[12:29])) & 0xFFFFFFFF)
    return bytes(raw)


@pytest.fixture(scope="session")
def dlib_embedder():
    """The real dlib face embedder (HOG, 5-point, ResNet), loaded once per test session."""
    from vecface.embedders import make_embedder

    return make_embedder("face-dlib")


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory) -> str:
    """A tiny CLIP with random weights (16-d, 32 px) saved as a sentence-transformers directory."""
    from vecface.bench.random_clip import build_random_clip

    return str(build_random_clip(tmp_path_factory.mktemp("models") / "tiny-clip", "tiny"))
