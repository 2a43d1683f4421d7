"""The capacity plan (vecface plan): its arithmetic on a hand-written results dict, the command on a
tiny real benchmark run, and the benchmark's topology targets (one backend measured twice, labelled)."""

from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

from vecface.bench.config import BenchConfig
from vecface.bench.plan import PlanInput, make_plan, table_rows
from vecface.bench.runner import run_benchmark
from vecface.errors import InvalidArgument


def _results() -> dict:
    sweep = [{"param": "ef_search", "value": 40, "recall": 0.99, "best_qps": 2000.0},
             {"param": "ef_search", "value": 10, "recall": 0.90, "best_qps": 4000.0},
             {"param": "ef_search", "value": 20, "recall": 0.96, "best_qps": 3000.0}]
    return {
        "created": "2026-11-22T00:00:00+00:00", "command": "vecface bench",
        "dataset": {"name": "synthetic", "n": 1000, "dim": 64},
        "provenance": {"machine": {"cores": 2}},
        "loads": [{"backend": "faiss", "rows": 1000, "vectors_per_s": 5000.0, "storage_bytes": 400_000},
                  {"backend": "faiss (3 nodes)", "rows": 1000, "vectors_per_s": 100.0, "storage_bytes": 1},
                  {"backend": "weaviate", "rows": 1000, "vectors_per_s": 1000.0, "storage_bytes": 600_000}],
        "runs": [
            {"backend": "faiss", "index": "hnsw", "index_spec": "HNSW()", "rows": 1000, "topology": None,
             "index_size_bytes": 1000 * (4 * 64 + 100), "build_s": 2.0, "sweep": sweep},
            {"backend": "faiss", "index": "ivfflat", "index_spec": "IVFFlat()", "rows": 1000, "topology": None,
             "index_size_bytes": 1000 * 100, "build_s": 1.0,
             "sweep": [{"param": "probes", "value": 1, "recall": 0.5, "best_qps": 9000.0}]},
            {"backend": "weaviate", "index": "hnsw", "index_spec": "HNSW()", "rows": 1000, "topology": None,
             "index_size_bytes": None, "build_s": 1.0, "sweep": sweep},
            {"backend": "faiss (3 nodes)", "index": "hnsw", "index_spec": "HNSW()", "rows": 1000,
             "topology": "3 nodes", "index_size_bytes": 1, "build_s": 1.0, "sweep": sweep},
        ],
    }


def test_plan_arithmetic_follows_its_formulas():
    want = PlanInput(n=1_000_000, dim=128, recall=0.95, qps=500, replication=2, node_memory_gib=0.5, node_cores=4)
    plan = make_plan(_results(), want)
    assert plan["extrapolation"] is True
    rows = {(r["backend"], r["index"]): r["figures"] for r in plan["rows"]}
    assert set(rows) == {("faiss", "hnsw"), ("faiss", "ivfflat"), ("weaviate", "hnsw")}  # no cluster target
    f = {k: v["value"] for k, v in rows["faiss", "hnsw"].items()}
    b = 356 - 4 * 64 + 4 * 128  # bytes/vector with the float32 payload at the new dimension
    assert f["memory"] == pytest.approx(b * 1e6 * 2)
    sb = 400 - 4 * 64 + 4 * 128
    assert f["disk"] == pytest.approx((sb * 1e6 + b * 1e6) * 2)
    assert f["load_time"] == pytest.approx(1e6 / 5000 * 128 / 64)
    assert f["build_time"] == pytest.approx(2.0 / 1000 * 1e6 * 128 / 64)
    # the smallest ef_search reaching 0.95 is 20 (3000 QPS on 2 cores), scaled by ln n and d
    per_core = 3000 / 2 * math.log(1000) / math.log(1e6) * 64 / 128
    assert f["qps_per_core"] == pytest.approx(per_core)
    assert f["cores"] == math.ceil(500 / per_core) == 2
    assert f["nodes"] == max(math.ceil(b * 1e6 * 2 / 2**29), 1, 2) == 3
    assert "ef_search=20" in rows["faiss", "hnsw"]["qps_per_core"]["source"]
    ivf = plan["rows"][1]
    assert ivf["figures"]["cores"]["value"] is None and "no sweep point reached recall 0.95" in ivf["notes"][0]
    assert ivf["figures"]["memory"]["value"] == pytest.approx(100 * 128 / 64 * 1e6 * 2)  # compressed: scaled
    # no index size: the whole stored collection is taken as resident, and it is the disk figure too
    wv = {k: v["value"] for k, v in rows["weaviate", "hnsw"].items()}
    assert wv["memory"] == pytest.approx((600 - 4 * 64 + 4 * 128) * 1e6 * 2) == pytest.approx(wv["disk"])
    assert table_rows(plan)[0][0] == "faiss/hnsw"


@pytest.mark.parametrize("bad", [{"n": 0}, {"recall": 1.5}, {"qps": -1}, {"replication": 0}])
def test_plan_refuses_bad_input(bad):
    with pytest.raises(InvalidArgument):
        make_plan(_results(), PlanInput(**{"n": 10, "dim": 8, **bad}))


def test_plan_needs_single_node_runs():
    res = _results()
    res["runs"] = [r for r in res["runs"] if r["topology"]]
    with pytest.raises(InvalidArgument, match="no single-node"):
        make_plan(res, PlanInput(n=10, dim=8))


def test_topologies_and_plan_command_on_a_real_run(tmp_path, faiss_options, vecface_home):
    """A real (tiny) run measuring FAISS on two 'topologies' (two directories), then `vecface plan`."""
    from vecface.bench.report import write_report
    from vecface.cli import app

    other = {"path": str(tmp_path / "other")}
    cfg = BenchConfig(backends=["faiss"], indexes=["hnsw"], n=1200, dim=16, queries=20, concurrency=[1],
                      duration=0.1, warmup=2, filter_queries=10, baseline_rows=10, cache_dir=str(tmp_path / "c"),
                      collection="pl", backend_options={"faiss": faiss_options}, sweep={"hnsw": [10, 40]},
                      phases=["sweep"], topologies=[{"backend": "faiss", "label": "second copy", "options": other}])
    res = run_benchmark(cfg)
    assert [(r["backend"], r["engine"], r["topology"]) for r in res["runs"]] == [
        ("faiss (1 node)", "faiss", "1 node"), ("faiss (second copy)", "faiss", "second copy")]
    assert [t["name"] for t in res["topologies"]] == ["faiss (1 node)", "faiss (second copy)"]
    files = write_report(res, tmp_path / "rep")
    md = files["markdown"].read_text()
    assert "Topologies: one node and clusters" in md and "second copy" in md

    r = CliRunner().invoke(app, ["plan", "--n", "100000000", "--dim", "512", "--recall", "0.5", "--qps", "500",
                                 "--results", str(files["results"])])
    assert r.exit_code == 0, r.output
    assert "extrapolation" in r.output
    plan = json.loads((tmp_path / "rep" / "plan" / "plan.json").read_text())
    (row,) = plan["rows"]  # only the single-node target
    assert row["backend"] == "faiss (1 node)" and row["figures"]["memory"]["value"] > 100e6 * 512 * 4
    assert row["figures"]["cores"]["value"] >= 1
    assert "faiss (1 node)/hnsw" in (tmp_path / "rep" / "plan" / "plan.md").read_text()

    r = CliRunner().invoke(app, ["plan", "--n", "10", "--dim", "8", "--results", str(tmp_path / "none.json")])
    assert r.exit_code == 2 and "Error" in r.output  # a usage error naming --results, no traceback


@pytest.mark.parametrize("args, words", [
    (["--pg-read-dsns", "postgresql:///x"], "give --pg-dsn too"),
    (["--weaviate-nodes", "2", "--replication", "3"], "needs at least that many nodes"),
    (["--weaviate-nodes", "3", "--weaviate-urls", "http://127.0.0.1:1"], "not both"),
])
def test_bench_cluster_options_are_checked_before_anything_starts(args, words, tmp_path):
    from vecface.cli import app

    r = CliRunner().invoke(app, ["bench", "--backends", "faiss", "--out", str(tmp_path / "rep"), *args])
    assert r.exit_code == 2, r.output
    assert words in " ".join(r.output.split())
    assert not (tmp_path / "rep").exists()
