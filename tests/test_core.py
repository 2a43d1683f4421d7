"""Unit tests of the core types, the registry, the CLI skeleton and secret handling."""

from __future__ import annotations

import dataclasses
import socket

import numpy as np
import pytest
from typer.testing import CliRunner

import vecface
from vecface import HNSW, Exact, IVFFlat, Metric, parse_index
from vecface.config import redact
from vecface.errors import (
    BackendUnavailable,
    DimensionMismatch,
    InvalidArgument,
    InvalidFilter,
    MissingDependency,
    UnknownBackend,
    VecfaceError,
)
from vecface.types import as_matrix
from vecface.filters import normalise_filter


def test_metric_knows_every_backend_name():
    assert (Metric.COSINE.pg_operator, Metric.COSINE.pg_opclass, Metric.COSINE.weaviate_distance) == (
        "<=>", "vector_cosine_ops", "cosine")
    assert (Metric.L2.pg_operator, Metric.L2.pg_opclass) == ("<->", "vector_l2_ops")
    assert (Metric.IP.pg_operator, Metric.IP.pg_opclass, Metric.IP.weaviate_distance) == ("<#>", "vector_ip_ops", "dot")
    import faiss

    assert Metric.L2.faiss_metric == faiss.METRIC_L2
    assert Metric.COSINE.faiss_metric == Metric.IP.faiss_metric == faiss.METRIC_INNER_PRODUCT
    assert Metric.parse("angular") is Metric.COSINE and Metric.parse("euclidean") is Metric.L2
    with pytest.raises(InvalidArgument):
        Metric.parse("hamming")


def test_parse_index():
    assert parse_index("exact") == Exact()
    assert parse_index("hnsw") == HNSW()
    assert parse_index("hnsw:m=32,ef_construction=200") == HNSW(m=32, ef_construction=200)
    assert parse_index("ivfflat:lists=100") == IVFFlat(lists=100)
    assert IVFFlat().resolve_lists(500) == 1 and IVFFlat().resolve_lists(250_000) == 250
    for bad in ("annoy", "hnsw:m=x", "hnsw:q=3", "hnsw:m=1", "ivfflat:lists=0"):
        with pytest.raises(InvalidArgument):
            parse_index(bad)


def test_index_specs_are_frozen():
    spec = HNSW()
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.m = 3  # type: ignore[misc]


def test_as_matrix_normalises_for_cosine_only():
    v = as_matrix([3.0, 4.0], 2, Metric.COSINE)
    np.testing.assert_allclose(v, [[0.6, 0.8]], rtol=1e-6)
    np.testing.assert_allclose(as_matrix([3.0, 4.0], 2, Metric.L2), [[3.0, 4.0]])
    with pytest.raises(DimensionMismatch):
        as_matrix([1.0, 2.0, 3.0], 2)
    with pytest.raises(InvalidArgument):
        as_matrix([0.0, 0.0], 2, Metric.COSINE)
    with pytest.raises(InvalidArgument):
        as_matrix(["a", "b"], 2)


def test_filters_are_validated():
    assert normalise_filter({"tag": "a"}) == {"tag": ["a"]}
    assert normalise_filter({"tag": ["b", "a", "a"]}) == {"tag": ["a", "b"]}
    assert normalise_filter(None) is None
    for bad in ({"colour": "red"}, {"tag": []}, {"tag": [1]}, "tag=a"):
        with pytest.raises(InvalidFilter):
            normalise_filter(bad)


def test_errors_form_one_hierarchy():
    assert issubclass(MissingDependency, ImportError) and issubclass(MissingDependency, VecfaceError)
    assert issubclass(DimensionMismatch, ValueError)
    e = MissingDependency("faiss-cpu", extra="faiss")
    assert "pip install 'vecface[faiss]'" in str(e)


def test_registry():
    with pytest.raises(UnknownBackend):
        vecface.open_store("milvus", "x", 8)
    with pytest.raises(InvalidArgument, match="takes no option"):
        vecface.open_store("faiss", "x", 8, dsn="postgresql://nowhere")
    names = [s.name for s in vecface.check_backends()]
    assert names == list(vecface.BACKENDS)


@pytest.mark.parametrize("text, hidden", [
    ("postgresql://alice:s3cret@db.example:5432/x", "s3cret"),
    ("host=db user=alice password=s3cret dbname=x", "s3cret"),
    ("host=db password='s3 cret' dbname=x", "s3 cret"),
])
def test_redact_hides_passwords(text, hidden):
    out = redact(text)
    assert hidden not in out and "***" in out
    assert redact("postgresql://alice@db/x") == "postgresql://alice@db/x"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_dsn_password_never_in_errors(monkeypatch):
    dsn = f"postgresql://alice:topsecret42@127.0.0.1:{_closed_port()}/x"
    with pytest.raises(BackendUnavailable) as info:
        vecface.open_store("pgvector", "x", 8, dsn=dsn)
    assert "topsecret42" not in str(info.value)
    assert "127.0.0.1" in str(info.value)
    monkeypatch.setenv("VECFACE_PG_DSN", dsn)
    status = {s.name: s for s in vecface.check_backends()}["pgvector"]
    assert not status.available and "topsecret42" not in status.detail


def test_cli_version_and_backends(vecface_home, pgvector_options):
    from vecface.cli import app

    runner = CliRunner()
    out = runner.invoke(app, ["--version"])
    assert out.exit_code == 0 and vecface.__version__ in out.output
    out = runner.invoke(app, ["backends"], env={"COLUMNS": "200"})
    assert out.exit_code == 0, out.output
    lines = {line.split("│")[1].strip(): line for line in out.output.splitlines() if line.count("│") >= 3}
    assert "yes" in lines["faiss"] and "yes" in lines["pgvector"]
    assert "pgvector 0.8" in lines["pgvector"]
