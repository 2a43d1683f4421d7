"""``vecface index``: build a collection's vector index from the command line, show it, and make or
drop pgvector's filter indexes; on the real backends."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

import vecface
from vecface.cli import app
from vecface.types import HNSW, Exact, IVFFlat


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def _filled(backend: str, options: dict, name: str, n: int = 300, dim: int = 16):
    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(n, dim)).astype(np.float32)
    store = vecface.open_store(backend, name, dim, "cosine", **options)
    store.upsert_arrays([str(i) for i in range(n)], vectors, [{"tag": "a" if i % 10 else "b"} for i in range(n)])
    return store, vectors


@pytest.mark.parametrize("backend", ["faiss", "pgvector"])
def test_index_builds_shows_and_replaces(backend, request, vecface_home):
    options = request.getfixturevalue(f"{backend}_options")
    name = f"cliidx_{backend[:2]}_{np.random.default_rng().integers(1 << 30)}"
    store, vectors = _filled(backend, options, name)
    store.close()
    where = ["--backend", backend, "--data-dir", vecface_home]
    try:
        res = run("index", name, *where)
        assert res.exit_code == 0, res.output
        assert "300 records" in res.output and "Exact" in res.output  # ingest leaves exact search

        res = run("index", name, "hnsw:m=8,ef_construction=32", *where)
        assert res.exit_code == 0, res.output
        assert "built HNSW(m=8, ef_construction=32) over 300 records" in res.output
        with vecface.open_store(backend, name, create=False, **options) as again:
            assert again.index == HNSW(m=8, ef_construction=32)
            assert again.search(vectors[5], k=1)[0].id == "5"

        res = run("index", name, "ivfflat:lists=4", *where)
        assert res.exit_code == 0, res.output
        with vecface.open_store(backend, name, create=False, **options) as again:
            assert again.index == IVFFlat(lists=4)

        res = run("index", name, "exact", *where)
        assert res.exit_code == 0, res.output
        with vecface.open_store(backend, name, create=False, **options) as again:
            assert again.index == Exact()

        res = run("index", name, "btree", *where)
        assert res.exit_code == 1 and "unknown index kind 'btree'" in res.output
        res = run("index", "no_such_collection", "hnsw", *where)
        assert res.exit_code == 1 and "no_such_collection" in res.output
    finally:
        with vecface.open_store(backend, name, create=False, **options) as again:
            again.drop()


def test_filter_index_from_the_cli(pgvector_options, faiss_options, vecface_home):
    name = f"cliflt_{np.random.default_rng().integers(1 << 30)}"
    store, vectors = _filled("pgvector", pgvector_options, name)
    store.close()
    where = ["--backend", "pgvector", "--data-dir", vecface_home]
    try:
        res = run("index", name, "hnsw", *where, "--filter-index", "tag=b")
        assert res.exit_code == 0, res.output
        assert "built the filter index tag=b" in res.output
        res = run("index", name, *where)
        assert "filter index tag=b" in res.output
        with vecface.open_store("pgvector", name, create=False, **pgvector_options) as again:
            assert again.filter_indexes == [("tag", "b")]
            hits = again.search(vectors[10], k=5, filter={"tag": "b"})
            assert hits[0].id == "10" and all(int(h.id) % 10 == 0 for h in hits)

        res = run("index", name, *where, "--filter-index", "tag")
        assert res.exit_code == 1 and "COLUMN=VALUE" in res.output
        res = run("index", name, *where, "--drop-filter-index", "tag=b")
        assert res.exit_code == 0 and "dropped the filter index tag=b" in res.output
        res = run("index", name, *where, "--drop-filter-index", "tag=b")
        assert res.exit_code == 0 and "no filter index tag=b" in res.output
        with vecface.open_store("pgvector", name, create=False, **pgvector_options) as again:
            assert again.filter_indexes == []
    finally:
        with vecface.open_store("pgvector", name, create=False, **pgvector_options) as again:
            again.drop()

    # a backend without filter indexes says so
    fname = f"cliflt_f_{np.random.default_rng().integers(1 << 30)}"
    store, _ = _filled("faiss", faiss_options, fname)
    store.close()
    try:
        res = run("index", fname, "--backend", "faiss", "--data-dir", vecface_home, "--filter-index", "tag=b")
        assert res.exit_code == 1 and "no per-value filter indexes" in res.output
    finally:
        with vecface.open_store("faiss", fname, create=False, **faiss_options) as again:
            again.drop()
