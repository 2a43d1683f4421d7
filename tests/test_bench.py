"""The benchmark harness: datasets, ground truth, metrics, and small end-to-end runs on every backend.

Nothing here asserts a timing: benchmarks measure, tests check behaviour.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from vecface.bench import datasets as D
from vecface.bench import groundtruth as G
from vecface.bench import metrics as M
from vecface.bench.config import BenchConfig
from vecface.bench.measure import interleaved_serial, interleaved_throughput
from vecface.bench.report import load_results, render
from vecface.bench.runner import run_benchmark
from vecface.registry import backend_class
from vecface.store import VectorStore

from .conftest import BACKENDS

# ---------------------------------------------------------------- datasets


def test_synthetic_is_seeded_streamed_and_normalised():
    ds = D.Synthetic(n=25_001, dim=48, n_queries=40, seed=3)
    a = np.concatenate([x for _, x, _ in ds.chunks(7_000)])
    b = np.concatenate([x for _, x, _ in D.Synthetic(n=25_001, dim=48, n_queries=40, seed=3).chunks(25_001)])
    assert a.shape == (25_001, 48) and np.array_equal(a, b)
    assert np.allclose(np.linalg.norm(a, axis=1), 1, atol=1e-5)
    starts = [s for s, _, _ in ds.chunks(7_000)]
    assert starts == [0, 7_000, 14_000, 21_000]
    # with the same identities, a prefix of a bigger dataset is the smaller dataset
    big = np.concatenate([x for _, x, _ in D.Synthetic(n=25_001, dim=48, seed=3, identities=300).chunks(9_000)])
    small = np.concatenate([x for _, x, _ in D.Synthetic(n=12_000, dim=48, seed=3, identities=300).chunks(5_000)])
    assert np.array_equal(small, big[:12_000])
    tags = np.array([t for _, _, ts in ds.chunks(10_000) for t in ts])
    share = {t: float(np.mean(tags == t)) for t in D.TAGS}
    assert abs(share["t50"] - 0.5) < 0.02 and abs(share["t10"] - 0.1) < 0.01 and abs(share["t01"] - 0.01) < 0.005
    # queries are held out: not rows of the base set
    assert ds.queries.shape == (40, 48)
    assert np.min(1 - ds.queries @ a.T) > 1e-4
    assert D.Synthetic(n=100, dim=8, seed=1).fingerprint() != D.Synthetic(n=100, dim=8, seed=2).fingerprint()


def test_file_datasets(tmp_path):
    rng = np.random.default_rng(0)
    base = rng.normal(size=(300, 16)).astype(np.float32)
    q = rng.normal(size=(12, 16)).astype(np.float32)
    np.save(tmp_path / "vecs.npy", base)
    np.save(tmp_path / "vecs_queries.npy", q)
    ds = D.open_dataset(str(tmp_path / "vecs.npy"), n_queries=10)
    assert (ds.n, ds.dim, len(ds.queries)) == (300, 16, 10)
    assert np.array_equal(np.concatenate([x for _, x, _ in ds.chunks(128)]), base)

    D.write_fvecs(tmp_path / "sift_base.fvecs", base)
    D.write_fvecs(tmp_path / "sift_query.fvecs", q)
    assert np.array_equal(D.read_fvecs(tmp_path / "sift_base.fvecs"), base)
    ds = D.open_dataset(str(tmp_path / "sift_base.fvecs"), n_queries=12, metric="l2")
    assert ds.n == 300 and np.array_equal(ds.queries, q) and ds.metric.label == "l2"

    h5py = pytest.importorskip("h5py")
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    bn = base / np.linalg.norm(base, axis=1, keepdims=True)
    d = 1 - qn @ bn.T
    nb = np.argsort(d, axis=1)[:, :10]
    with h5py.File(tmp_path / "toy-16-angular.hdf5", "w") as f:
        f.attrs["distance"] = "angular"
        f["train"], f["test"] = base, q
        f["neighbors"], f["distances"] = nb, np.take_along_axis(d, nb, 1)
    ds = D.open_dataset(str(tmp_path / "toy-16-angular.hdf5"), n_queries=12)
    assert ds.metric.label == "cosine" and ds.n == 300
    gt = G.load_or_compute(ds, ds.queries, 10, tmp_path / "cache")
    assert gt.source == "shipped with the dataset" and np.array_equal(gt.ids, nb)
    # recomputed exactly, the same answer
    assert np.array_equal(G.compute(ds, ds.queries, 10).ids, nb)


class _MeanColour:
    """Any object with dim and embed_images is an embedder for the image dataset."""

    dim = 3
    calls = 0

    def embed_images(self, paths):
        from PIL import Image

        type(self).calls += 1
        out = np.array([np.asarray(Image.open(p).convert("RGB"), dtype=np.float32).mean(axis=(0, 1)) + 1 for p in paths])
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def test_image_folder_dataset_is_embedded_once_and_cached(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(1)
    for i in range(12):
        Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(tmp_path / f"im{i}.png")
    cache = tmp_path / "cache"
    ds = D.open_dataset(f"images:{tmp_path}", n_queries=2, cache_dir=cache, embedder=_MeanColour())
    assert (ds.n, ds.dim, len(ds.queries)) == (11, 3, 1)  # a tenth at most is held out as queries
    calls = _MeanColour.calls
    ds2 = D.open_dataset(f"images:{tmp_path}", n_queries=2, cache_dir=cache, embedder=_MeanColour())
    assert _MeanColour.calls == calls  # served from the cache
    assert np.array_equal(np.concatenate([x for _, x, _ in ds2.chunks(4)]),
                          np.concatenate([x for _, x, _ in ds.chunks(4)]))


# ---------------------------------------------------------------- ground truth and metrics


def test_ground_truth_is_exact_filtered_and_cached(tmp_path):
    ds = D.Synthetic(n=3_000, dim=24, n_queries=15, seed=5)
    x = np.concatenate([c for _, c, _ in ds.chunks(1_000)])
    tags = np.array([t for _, _, ts in ds.chunks(1_000) for t in ts])
    gt = G.load_or_compute(ds, ds.queries, 5, tmp_path)
    d = 1 - ds.queries @ x.T
    assert np.array_equal(gt.ids, np.argsort(d, axis=1, kind="stable")[:, :5])
    assert np.allclose(gt.dist, np.sort(d, axis=1)[:, :5], atol=1e-5)
    for case, (tag, _) in D.FILTER_CASES.items():
        masked = np.where(tags == tag, d, np.inf)
        want = np.argsort(masked, axis=1, kind="stable")[:, :5]
        assert np.array_equal(gt.filtered[case][0], np.where(np.isfinite(np.take_along_axis(masked, want, 1)), want, -1))
    cached = G.load_or_compute(ds, ds.queries, 5, tmp_path)
    assert cached.source.startswith("cache") and np.array_equal(cached.ids, gt.ids)
    assert set(cached.filtered) == set(gt.filtered)


def test_recall_metrics():
    true_ids = np.array([[1, 2, 3, 4], [5, 6, -1, -1]])
    assert M.recall_by_id([[1, 2, 9, 8], [6, 5, 7, 0]], true_ids, 4) == pytest.approx((0.5 + 1.0) / 2)
    true_d = np.array([[0.1, 0.2, 0.3, 0.4], [0.1, 0.2, np.inf, np.inf]])
    # a tie with the 4th distance counts, a farther one does not
    assert M.recall_tolerant([[0.1, 0.2, 0.4, 0.5]], true_d[:1], 4) == pytest.approx(0.75)
    assert M.recall_tolerant([[0.1, 0.2]], true_d[1:], 4) == pytest.approx(1.0)
    p = M.percentiles_ms([0.001] * 98 + [0.01, 0.1])
    assert p["p50"] <= p["p95"] <= p["p99"] <= p["max"]
    assert M.pareto_front([(0.5, 100), (0.9, 50), (0.8, 40), (1.0, 10)]) == [0, 1, 3]
    assert M.sweep_values("ivfflat", 20) == [1, 2, 4, 8, 16, 20]


# ---------------------------------------------------------------- end to end on every backend


def _brute(x: np.ndarray, q: np.ndarray, k: int, mask: np.ndarray | None = None):
    d = 1 - q @ x.T
    if mask is not None:
        d = np.where(mask[None, :], d, np.inf)
    ids = np.argsort(d, axis=1, kind="stable")[:, :k]
    return ids, np.take_along_axis(d, ids, 1)


def _own_recall(answers, truth_ids, truth_d, k):
    """Recall recomputed here, with numpy only."""
    by_id, tol = [], []
    for got, want, wd, gd in zip(answers["ids"], truth_ids, truth_d, answers["distances"]):
        valid = np.isfinite(wd)
        want = want[valid]
        if len(want) == 0:
            continue
        by_id.append(len(np.intersect1d(np.array(got[:k], dtype=np.int64), want)) / len(want))
        kth = wd[valid][-1]
        tol.append(min(len(want), int(np.sum(np.array(gd[:k]) <= kth * (1 + 1e-3) + 1e-6))) / len(want))
    return float(np.mean(by_id)), float(np.mean(tol))


@pytest.mark.slow
@pytest.mark.parametrize("bench_backend", BACKENDS)
def test_end_to_end(bench_backend, request, tmp_path, vecface_home):
    options = request.getfixturevalue(f"{bench_backend}_options")
    k = 5
    cfg = BenchConfig(backends=[bench_backend], n=1_500, dim=32, queries=25, exact_queries=25, k=k,
                      concurrency=[1, 2], duration=0.2, warmup=3, filter_queries=25, batch_size=400,
                      baseline_rows=40, out=str(tmp_path / "out"), cache_dir=str(tmp_path / "cache"),
                      collection=f"tb{bench_backend[:3]}", backend_options={bench_backend: options},
                      sweep={"hnsw": [10, 40], "ivfflat": [1, 3]}, keep_answers=True, overhead_concurrency=[1, 2],
                      overhead_duration=0.2, overhead_slice_s=0.05)
    res = run_benchmark(cfg)
    from vecface.bench.report import write_report

    files = write_report(res, tmp_path / "out")
    data = json.loads(files["results"].read_text())

    # every field
    for key in ("schema", "created", "params", "dataset", "provenance", "loads", "runs", "baselines", "skipped", "wall_s"):
        assert key in data, key
    prov = data["provenance"]
    for key in ("vecface", "numpy", "python", "faiss"):
        assert prov["versions"][key]
    assert prov["machine"]["cores"] >= 1 and prov["machine"]["cpu"]
    cls = backend_class(bench_backend)
    if not cls.in_process:  # a server says which versions it runs
        assert prov["servers"] and all(prov["servers"].values()), prov["servers"]
    assert data["dataset"]["fingerprint"] and data["dataset"]["n"] == 1_500
    assert data["params"]["k"] == k and data["params"]["concurrency"] == [1, 2]
    (load,) = data["loads"]
    assert load["rows"] == 1_500 and load["vectors_per_s"] > 0
    raw = load["raw"]  # the engine's own bulk load of the same data, beside vecface's
    if cls.raw_loader is not VectorStore.raw_loader:
        assert raw["rows"] == 1_500 and raw["vectors_per_s"] > 0 and raw["method"], raw
        assert raw["bulk_vs_raw"] == pytest.approx(load["vectors_per_s"] / raw["vectors_per_s"])
        before, after = raw["runs_vectors_per_s"]  # timed right before and right after vecface's load
        assert raw["vectors_per_s"] == pytest.approx(2 / (1 / before + 1 / after))
    else:
        assert raw["skipped"] and "vectors_per_s" not in raw

    kinds = [i for i in ("exact", "ivfflat", "hnsw") if i in backend_class(bench_backend).supported_indexes]
    assert [r["index"] for r in data["runs"]] == kinds
    if "ivfflat" not in kinds:
        assert any(s["index"] == "ivfflat" for s in data["skipped"])

    ds = D.Synthetic(n=1_500, dim=32, n_queries=25)
    x = np.concatenate([c for _, c, _ in ds.chunks(1_500)])
    tags = np.array([t for _, _, ts in ds.chunks(1_500) for t in ts])
    q = ds.queries
    truth = _brute(x, q, k)
    for run in data["runs"]:
        for key in ("build_s", "time_to_first_query_s", "cold_open_first_query_s", "index_size_bytes", "sweep", "filtered"):
            assert key in run, key
        assert run["sweep"], run["index"]
        for point in run["sweep"]:
            assert 0 <= point["recall"] <= 1 and 0 <= point["recall_tolerant"] <= 1
            n_q = len(point["answers"]["ids"])
            own = _own_recall(point["answers"], truth[0][:n_q], truth[1][:n_q], k)
            assert point["recall"] == pytest.approx(own[0], abs=1e-9)
            assert point["recall_tolerant"] == pytest.approx(own[1], abs=1e-9)
            lat = point["latency_ms"]
            assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"]
            assert [t["clients"] for t in point["throughput"]] == [1, 2]
            assert all(t["qps"] > 0 and t["queries"] > 0 for t in point["throughput"])
        if run["index"] == "exact":
            assert run["sweep"][0]["recall_tolerant"] == pytest.approx(1.0)
        # every filter case, once per filter strategy of the backend, and once more through a filter
        # index per value where the backend has them (pgvector's partial indexes)
        strategies = list(cls.filter_strategies) or [None]
        if cls.build_filter_index is not VectorStore.build_filter_index and run["index"] != "exact":
            strategies.append(f"{strategies[0]} + filter index")
        assert sorted((f["case"], str(f["strategy"])) for f in run["filtered"]) == sorted(
            (c, str(s)) for c in D.FILTER_CASES for s in strategies)
        for f in run["filtered"]:
            mask = tags == f["filter"]["tag"]
            n_q = len(f["answers"]["ids"])
            fi, fd = _brute(x, q[:n_q], k, mask)
            fi = np.where(np.isfinite(fd), fi, -1)
            own = _own_recall(f["answers"], fi, fd, k)
            assert f["recall"] == pytest.approx(own[0], abs=1e-9)
            assert 0 <= f["recall"] <= 1
            for hits in f["answers"]["ids"]:  # a filter is never ignored
                assert all(mask[h] for h in hits)
    (base,) = data["baselines"]
    if cls.insert_one_by_one is not VectorStore.insert_one_by_one and not cls.in_process:
        assert base.get("vectors_per_s", 0) > 0 and base["bulk_speedup"] > 0, base
        assert base["method"] and base["rows"] == 40
    else:
        assert base["skipped"] and "vectors_per_s" not in base
    # the price of the abstraction: one comparison, on the HNSW index, at ef_search 40
    (over,) = data["overhead"]
    assert (over["backend"], over["index"], over["param"], over["value"]) == (bench_backend, "hnsw", "ef_search", 40)
    has_raw = cls.raw_searcher is not VectorStore.raw_searcher
    if has_raw:
        _check_overhead(over, data["params"]["overhead_concurrency"])
    else:
        assert "raw search" in over["skipped"]
    # the report and its plots
    for name in ("results.json", "report.md", "report.html"):
        assert (tmp_path / "out" / name).stat().st_size > 0
    pngs = sorted((tmp_path / "out" / "plots").glob("*.png"))
    assert len(pngs) == 5 + has_raw and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    page = (tmp_path / "out" / "report.html").read_text()
    assert "data:image/png;base64," in page and "How to read it" in page and "src='plots/" not in page
    md = (tmp_path / "out" / "report.md").read_text()
    assert f"{bench_backend}/hnsw" in md and "How it was measured" in md
    assert ("vecface overhead vs raw client" in md) == has_raw


def _check_overhead(over: dict, concurrency: list[int]) -> None:
    """An overhead entry holds both paths' figures, and its ratios are vecface / raw of those figures."""
    assert over["queries"] > 0 and not over.get("skipped")
    for path in ("vecface", "raw"):
        lat = over["serial"][path]
        assert 0 < lat["p50"] <= lat["p90"] <= lat["max"]
    assert over["ratios"]["p50"] == pytest.approx(over["serial"]["vecface"]["p50"] / over["serial"]["raw"]["p50"])
    assert over["ratios"]["p90"] == pytest.approx(over["serial"]["vecface"]["p90"] / over["serial"]["raw"]["p90"])
    assert [t["clients"] for t in over["throughput"]] == concurrency
    assert [r["clients"] for r in over["ratios"]["qps"]] == concurrency
    for t, r in zip(over["throughput"], over["ratios"]["qps"]):
        assert t["vecface"]["queries"] > 0 and t["raw"]["queries"] > 0
        assert r["summed"] == pytest.approx(t["vecface"]["qps"] / t["raw"]["qps"])
        ours, raw = t["vecface"]["slice_qps"], t["raw"]["slice_qps"]
        assert len(ours) == len(raw) >= 2  # slices side by side, A B B A ...
        pairs = sorted(a / b for a, b in zip(ours, raw))
        assert r["ratio"] == pytest.approx(float(np.median(pairs)))
        assert pairs[0] <= r["spread"][0] <= r["ratio"] <= r["spread"][1] <= pairs[-1]


def test_report_command_rerenders_and_merges(tmp_path, faiss_options):
    import typer

    from vecface.bench.cli import register
    from vecface.bench.report import write_report

    outs = []
    for i, n in enumerate((800, 900)):
        cfg = BenchConfig(backends=["faiss"], indexes=["hnsw"], n=n, dim=16, queries=10, concurrency=[1],
                          duration=0.1, warmup=2, filter_queries=10, baseline_rows=10, cache_dir=str(tmp_path / "c"),
                          collection=f"rr{i}", backend_options={"faiss": faiss_options}, sweep={"hnsw": [10, 20]})
        outs.append(write_report(run_benchmark(cfg), tmp_path / f"run{i}")["results"])
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """vecface"""

    register(app)
    runner = CliRunner()
    r = runner.invoke(app, ["report", str(outs[0]), "--out", str(tmp_path / "one")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "one" / "report.html").exists() and (tmp_path / "one" / "plots" / "recall_vs_qps.png").exists()
    r = runner.invoke(app, ["report", str(outs[0]), str(outs[1]), "--out", str(tmp_path / "both")])
    assert r.exit_code == 0, r.output
    md = (tmp_path / "both" / "report.md").read_text()
    assert "faiss/hnsw [run 1]" in md and "faiss/hnsw [run 2]" in md
    merged = tmp_path / "both" / "merged-results.json"
    assert len(load_results([merged])) == 2
    render(load_results([merged]), tmp_path / "again")
    assert (tmp_path / "again" / "report.html").exists()
    r = runner.invoke(app, ["bench", "--help"])
    assert r.exit_code == 0 and "--concurrency" in r.output


def test_bench_command_quick(tmp_path, faiss_options, vecface_home):
    import typer

    from vecface.bench.cli import register

    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """vecface"""

    register(app)
    r = CliRunner().invoke(app, ["bench", "--backends", "faiss,nosuch", "--index", "hnsw:m=8,ef_construction=32,exact",
                                 "--n", "1000", "--dim", "16", "--queries", "10", "--concurrency", "1",
                                 "--duration", "0.1", "--quick", "--out", str(tmp_path / "rep"),
                                 "--data-dir", str(vecface_home)])
    assert r.exit_code == 0, r.output
    data = json.loads((tmp_path / "rep" / "results.json").read_text())
    assert [x["index_spec"] for x in data["runs"]] == ["Exact()", "HNSW(m=8, ef_construction=32)"]
    assert any(s["backend"] == "nosuch" for s in data["skipped"])
    assert "faiss/hnsw" in r.output


# ---------------------------------------------------------------- the overhead comparison


def test_interleaved_measurements_alternate_and_count_every_call():
    calls: list[tuple[str, float]] = []
    paths = {"a": lambda q: calls.append(("a", float(q[0]))), "b": lambda q: calls.append(("b", float(q[0])))}
    qs = np.arange(6, dtype=np.float32)[:, None]
    lat = interleaved_serial(paths, qs, warmup=2)
    assert len(lat["a"]) == len(lat["b"]) == 6
    timed = calls[4:]  # after 2 warm-up queries through both paths
    assert [name for name, _ in timed] == ["a", "b", "b", "a"] * 3  # the order flips every step
    # each query once through each path, never right after the other path ran it (b is 3 behind)
    assert [q for _, q in timed] == [0, 3, 4, 1, 2, 5, 0, 3, 4, 1, 2, 5]

    seen = {"a": 0, "b": 0}

    def counter(name):
        def f(q):
            seen[name] += 1
        return f

    tp = interleaved_throughput({"a": [counter("a")] * 2, "b": [counter("b")] * 2}, qs, duration=0.1)
    assert tp["a"]["clients"] == tp["b"]["clients"] == 2
    assert tp["a"]["queries"] == seen["a"] > 0 and tp["b"]["queries"] == seen["b"] > 0
    assert tp["a"]["qps"] == pytest.approx(tp["a"]["queries"] / tp["a"]["seconds"])
    assert len(tp["a"]["slice_qps"]) == len(tp["b"]["slice_qps"]) == 4  # A B B A A B B A


def test_interleaved_throughput_keeps_its_clients_and_does_not_count_the_warm_up():
    """Each path's C client threads are started once and serve every slice of it (the warm-up slice
    included); the warm-up's calls are not counted; the threads are gone afterwards."""
    import threading

    threads: dict[str, set[int]] = {"a": set(), "b": set()}
    calls = {"a": 0, "b": 0}
    lock = threading.Lock()

    def client(name):
        def f(q):
            with lock:
                threads[name].add(threading.get_ident())
                calls[name] += 1
        return f

    before = threading.active_count()
    qs = np.arange(4, dtype=np.float32)[:, None]
    tp = interleaved_throughput({name: [client(name) for _ in range(3)] for name in "ab"}, qs, duration=0.12,
                                slice_s=0.02, warmup_s=0.03, calls_per_slice=1)
    assert len(threads["a"]) == len(threads["b"]) == 3 and not threads["a"] & threads["b"]
    for name in "ab":
        assert len(tp[name]["slice_qps"]) == 6 and tp[name]["clients"] == 3
        assert 0 < tp[name]["queries"] < calls[name]  # the warm-up slice ran and was not counted
    assert threading.active_count() == before


def test_slices_are_long_enough_for_the_slower_path():
    """Where the warm-up shows a client of the slower path would make fewer than ``calls_per_slice``
    calls in a slice, both paths' slices are lengthened alike (and there are fewer of them)."""
    import time

    qs = np.zeros((3, 2), dtype=np.float32)
    tp = interleaved_throughput({"fast": [lambda q: None] * 2, "slow": [lambda q: time.sleep(0.005)] * 2}, qs,
                                duration=0.2, slice_s=0.005, warmup_s=0.03, calls_per_slice=4)
    piece = tp["fast"]["slice_s"]
    assert piece == tp["slow"]["slice_s"] >= 4 * 0.005  # a slow client's call takes at least 5 ms
    assert len(tp["fast"]["slice_qps"]) == len(tp["slow"]["slice_qps"]) == 2 * max(1, round(0.2 / (2 * piece)))


def test_a_failing_client_is_reported_and_every_thread_stops():
    import threading

    def broken(q):
        raise ValueError("search broke")

    before = threading.active_count()
    qs = np.zeros((3, 2), dtype=np.float32)
    with pytest.raises(ValueError, match="search broke"):
        interleaved_throughput({"a": [lambda q: None] * 2, "b": [broken, lambda q: None]}, qs, duration=0.05)
    assert threading.active_count() == before


def test_overhead_ratios_come_from_the_recorded_figures():
    entry = {"serial": {"vecface": {"p50": 1.2, "p90": 2.0}, "raw": {"p50": 1.0, "p90": 1.6}},
             "throughput": [{"clients": 1, "vecface": {"qps": 900.0}, "raw": {"qps": 1000.0}},
                            {"clients": 2, "vecface": {"qps": 1500.0}, "raw": {"qps": 0.0}}]}
    r = M.overhead_ratios(entry)
    assert r["p50"] == pytest.approx(1.2) and r["p90"] == pytest.approx(1.25)
    # recorded without slices (older results): the ratio of the summed QPS
    assert r["qps"] == [{"clients": 1, "ratio": pytest.approx(0.9), "summed": pytest.approx(0.9)},
                        {"clients": 2, "ratio": None, "summed": None}]
    # with slices: the median of the side-by-side pairs' ratios, so one slice hit by a burst of
    # load from elsewhere moves one pair and not the result
    entry["throughput"] = [{"clients": 4, "vecface": {"qps": 700.0, "slice_qps": [90.0, 95.0, 20.0, 88.0, 96.0]},
                            "raw": {"qps": 800.0, "slice_qps": [100.0, 100.0, 100.0, 100.0, 100.0]}}]
    (q,) = M.overhead_ratios(entry)["qps"]
    assert q["ratio"] == pytest.approx(0.90) and q["summed"] == pytest.approx(0.875)
    assert q["spread"] == [pytest.approx(0.88), pytest.approx(0.95)]


def test_bench_overhead_command(tmp_path, faiss_options, vecface_home):
    """``vecface bench overhead`` runs only the comparison: no sweep, no filtered search, no baselines."""
    import typer

    from vecface.bench.cli import register

    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """vecface"""

    register(app)
    r = CliRunner().invoke(app, ["bench", "overhead", "--backends", "faiss", "--n", "1200", "--dim", "16",
                                 "--queries", "30", "--concurrency", "1,2", "--duration", "0.1",
                                 "--out", str(tmp_path / "rep"), "--data-dir", str(vecface_home)])
    assert r.exit_code == 0, r.output
    data = json.loads((tmp_path / "rep" / "results.json").read_text())
    assert data["params"]["phases"] == ["overhead"]
    (run,) = data["runs"]
    assert run["index_spec"] == "HNSW(m=16, ef_construction=64)"
    assert run["sweep"] == [] and run["filtered"] == [] and data["baselines"] == []
    (over,) = data["overhead"]
    assert (over["backend"], over["param"], over["value"]) == ("faiss", "ef_search", 40)
    if backend_class("faiss").raw_searcher is not VectorStore.raw_searcher:
        assert over["queries"] == 30
        _check_overhead(over, [1, 2])
        assert "vecface overhead vs raw client" in r.output
        assert (tmp_path / "rep" / "plots" / "overhead_vs_raw.png").exists()
    else:
        assert over["skipped"]
