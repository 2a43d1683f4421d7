"""The report's charts (PNG, matplotlib's Agg backend) and how to read each one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from . import metrics
from .tables import best_tp, index_lines, num, op_point, overhead_entries

PLOTS = {
    "pareto": "recall_vs_qps.png",
    "latency": "latency_percentiles.png",
    "load": "load_throughput.png",
    "build": "build_time.png",
    "scaling": "qps_vs_clients.png",
    "overhead": "overhead_vs_raw.png",
}

TITLES = {"pareto": "Recall vs throughput", "latency": "Latency percentiles", "load": "Load throughput",
          "build": "Index build time", "scaling": "Throughput vs concurrent clients",
          "overhead": "vecface overhead vs raw client"}

HOW_TO_READ = {
    "pareto": (
        "Recall versus throughput. Each line is one backend with one index kind; each dot on it is one "
        "value of the query-time knob (HNSW ef_search, IVFFlat probes) on the same built index, labelled "
        "with that value. Up is faster (queries per second with the best number of concurrent clients, "
        "log scale), right is more accurate (recall@k: the share of the true k nearest neighbours found). "
        "The best line is the one furthest up and to the right; dots on a line trade speed for accuracy. "
        "Exact search is a single dot at recall 1."),
    "latency": (
        "Serial latency of one query at each index's operating point (the fastest sweep value whose recall "
        "is at least 0.9), one query at a time after a warm-up: p50 is the typical query, p95 and p99 the slow "
        "tail (1 in 20, 1 in 100 queries are slower). Log scale; lower is better."),
    "load": (
        "How fast each backend ingests vectors through vecface's bulk path (upsert_arrays in batches, "
        "before any vector index exists), next to the engine's raw bulk load of the same data in the same run "
        "(pgvector: one connection, binary COPY and commit per batch; FAISS: IndexFlat.add in memory; "
        "Weaviate: weaviate-client insert_many, two requests at once; dotted) and the one-row-at-a-time baseline "
        "(pgvector: one INSERT per row; Weaviate: one insert call per object; hatched). Higher is better."),
    "build": (
        "Time to build each index over the loaded rows (exact has no index to build). For Weaviate the build "
        "copies every object into a new collection whose HNSW graph is built as it imports."),
    "scaling": (
        "Throughput as concurrent clients are added, at each index's operating point. A line that stops "
        "rising has hit a limit: the cores of this machine (client and server share them), a lock, or the "
        "client itself (see the client-bound notes)."),
    "overhead": (
        "What vecface's own layer costs, per backend: the same queries on the same built index through "
        "vecface's search and through the engine's own client call (FAISS index.search, a prepared SQL query over "
        "psycopg, weaviate-client near_vector), interleaved. Left: vecface's serial latency divided by the raw "
        "call's (p50 and p90); 1.10 means vecface takes 10% longer per query. Right: vecface's QPS divided by the "
        "raw call's with C concurrent clients; 0.90 means 10% fewer queries per second. 1.0 is no overhead; the "
        "dotted lines mark the 10% goal."),
}



def _bars(ax, names: list[str], vals: list[float], cols: list[str], labels: list[str],
          ylabel: str, title: str) -> list:
    """A labelled bar chart on ``ax``; returns the bars (empty when there is nothing to draw)."""
    bars = []
    if names:
        bars = ax.bar(range(len(names)), vals, color=cols)
        ax.set_xticks(range(len(names)), names, fontsize=7)
        ax.bar_label(bars, labels=labels, fontsize=7)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, axis="y", alpha=0.3)
    return bars


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def make_plots(results: list[dict[str, Any]], out: Path) -> dict[str, Path]:
    """Draw the charts the results have data for; returns chart key -> PNG path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    lines = index_lines(results)
    colors = plt.get_cmap("tab10")
    backend_color: dict[str, Any] = {}
    markers = {"hnsw": "o", "ivfflat": "s", "exact": "*"}

    def color(backend: str):
        if backend not in backend_color:
            backend_color[backend] = colors(len(backend_color) % 10)
        return backend_color[backend]

    files: dict[str, Path] = {}
    swept = any(run.get("sweep") for _, run, _ in lines)
    if swept:
        files["pareto"] = _pareto(plt, lines, color, markers, out / PLOTS["pareto"])
        files["latency"] = _latency(plt, lines, out / PLOTS["latency"])
    files["load"] = _load(plt, results, color, out / PLOTS["load"])
    files["build"] = _build(plt, lines, color, out / PLOTS["build"])
    if swept:
        files["scaling"] = _scaling(plt, lines, color, markers, out / PLOTS["scaling"])
    overhead = [(label, o) for label, o in overhead_entries(results) if not o.get("skipped")]
    if overhead:
        files["overhead"] = _overhead_chart(plt, overhead, color, out / PLOTS["overhead"])
    return files


def _pareto(plt, lines, color, markers, path: Path) -> Path:
    """Recall vs QPS: one line per backend x index, one dot per knob value."""
    fig, ax = plt.subplots(figsize=(9, 5.5))
    for label, run, _ in lines:
        pts = [(s.get("recall") or 0.0, (best_tp(s) or {}).get("qps") or s.get("serial_qps") or 0.0, s)
               for s in run.get("sweep", [])]
        pts.sort(key=lambda p: p[0])
        if not pts:
            continue
        front = set(metrics.pareto_front([(r, q) for r, q, _ in pts]))
        ls = "--" if run["index"] == "ivfflat" else "-"
        ax.plot([p[0] for p in pts], [p[1] for p in pts], ls, marker=markers.get(run["index"], "o"),
                color=color(run["backend"]), label=label, ms=8 if run["index"] == "exact" else 5)
        for j, (r, q, s) in enumerate(pts):
            if s.get("value") is not None:
                ax.annotate(str(s["value"]), (r, q), textcoords="offset points", xytext=(3, 4), fontsize=7,
                            color=color(run["backend"]), alpha=0.9 if j in front else 0.5)
    ax.set_yscale("log")
    ax.set_xlabel("recall@k (higher is better)")
    ax.set_ylabel("queries per second, best concurrency (log)")
    ax.set_title("Recall vs throughput: each dot one ef_search / probes value on one built index")
    ax.grid(True, which="both", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="best")
    return _save(fig, path)


def _latency(plt, lines, path: Path) -> Path:
    """Serial latency percentiles at each index's operating point."""
    fig, ax = plt.subplots(figsize=(9, 4.5))
    labels, p50, p95, p99 = [], [], [], []
    for label, run, _ in lines:
        op = op_point(run)
        if not op:
            continue
        lat = op["latency_ms"]
        labels.append(label + (f"\n{op['param']}={op['value']}" if op.get("param") else "\nexact"))
        p50.append(lat["p50"])
        p95.append(lat["p95"])
        p99.append(lat["p99"])
    if labels:
        x = np.arange(len(labels))
        w = 0.27
        ax.bar(x - w, p50, w, label="p50")
        ax.bar(x, p95, w, label="p95")
        ax.bar(x + w, p99, w, label="p99")
        ax.set_xticks(x, labels, fontsize=7)
        ax.set_yscale("log")
        ax.set_ylabel("ms per query (log, lower is better)")
        ax.legend()
    ax.set_title("Serial latency percentiles at each index's operating point")
    ax.grid(True, axis="y", which="both", alpha=0.3)
    return _save(fig, path)


def _load(plt, results, color, path: Path) -> Path:
    """Load throughput: the bulk path and the one-at-a-time baselines."""
    fig, ax = plt.subplots(figsize=(8, 4))
    names, vals, cols = [], [], []
    many = len(results) > 1
    for i, res in enumerate(results):
        suffix = f" [run {i + 1}]" if many else ""
        for l in res.get("loads", []):
            names.append(f"{l['backend']}{suffix}\nbulk upsert_arrays")
            vals.append(l.get("vectors_per_s") or 0)
            cols.append(color(l["backend"]))
            if (l.get("raw") or {}).get("vectors_per_s"):
                names.append(f"{l['backend']}{suffix}\nraw bulk load")
                vals.append(l["raw"]["vectors_per_s"])
                cols.append(color(l["backend"]))
        for b in res.get("baselines", []):
            if not b.get("skipped") and b.get("vectors_per_s"):
                names.append(f"{b['backend']}{suffix}\none at a time")
                vals.append(b["vectors_per_s"])
                cols.append(color(b["backend"]))
    bars = _bars(ax, names, vals, cols, [num(v) for v in vals],
                 "vectors per second (higher is better)", "Load throughput")
    for bar, hatch_name in zip(bars, names):
        if "one at a time" in hatch_name:
            bar.set_hatch("//")
            bar.set_alpha(0.6)
        elif "raw bulk" in hatch_name:
            bar.set_hatch("..")
    return _save(fig, path)


def _build(plt, lines, color, path: Path) -> Path:
    """Index build time per backend x index (exact has none)."""
    fig, ax = plt.subplots(figsize=(8, 4))
    built = [(label, run) for label, run, _ in lines if run["index"] != "exact"]
    vals = [run.get("build_s") or 0 for _, run in built]
    _bars(ax, [label for label, _ in built], vals, [color(run["backend"]) for _, run in built],
          [num(v) + " s" for v in vals], "seconds (lower is better)", "Index build time")
    return _save(fig, path)


def _scaling(plt, lines, color, markers, path: Path) -> Path:
    """QPS vs concurrent clients at each index's operating point."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for label, run, _ in lines:
        op = op_point(run)
        if not op or not op.get("throughput"):
            continue
        tps = sorted(op["throughput"], key=lambda t: t["clients"])
        ax.plot([t["clients"] for t in tps], [t["qps"] for t in tps], "-" if run["index"] != "ivfflat" else "--",
                marker=markers.get(run["index"], "o"), color=color(run["backend"]), label=label)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("concurrent clients")
    ax.set_ylabel("queries per second (log)")
    ax.set_title("Throughput vs concurrent clients at the operating point")
    ax.grid(True, which="both", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    return _save(fig, path)


def _overhead_chart(plt, entries: list[tuple[str, dict[str, Any]]], color, path: Path) -> Path:
    """Ratios vecface/raw: serial latency (p50, p90) per backend, QPS by client count."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    ratios = [(label, o, o.get("ratios") or metrics.overhead_ratios(o)) for label, o in entries]
    x = np.arange(len(ratios))
    w = 0.38
    for shift, key in ((-w / 2, "p50"), (w / 2, "p90")):
        vals = [r[key] or 0.0 for _, _, r in ratios]
        bars = left.bar(x + shift, vals, w, color=[color(o["backend"]) for _, o, _ in ratios],
                        alpha=1.0 if key == "p50" else 0.55, label=key)
        left.bar_label(bars, labels=[f"{v:.2f}x" for v in vals], fontsize=7)
    top = max([r[key] or 0.0 for _, _, r in ratios for key in ("p50", "p90")] + [1.1])
    left.set_ylim(0, top * 1.15)
    left.set_xticks(x, [label for label, _, _ in ratios], fontsize=7)
    left.set_ylabel("latency vecface / raw (lower is better)")
    left.set_title("Serial latency ratio (p50 solid, p90 light)")
    for ax in (left, right):
        ax.axhline(1.0, color="black", lw=0.8)
    left.axhline(1.1, color="grey", lw=0.8, ls=":")
    for label, o, r in ratios:
        pts = [(q["clients"], q["ratio"]) for q in r["qps"] if q["ratio"] is not None]
        if pts:
            right.plot([c for c, _ in pts], [v for _, v in pts], "-o", color=color(o["backend"]), label=label)
    right.axhline(1 / 1.1, color="grey", lw=0.8, ls=":")
    right.set_xlabel("concurrent clients")
    right.set_ylabel("QPS vecface / raw (higher is better)")
    right.set_title("Throughput ratio by clients")
    right.legend(fontsize=8)
    for ax in (left, right):
        ax.grid(True, axis="y", alpha=0.3)
    fig.suptitle("vecface overhead vs raw client (same index, same queries, interleaved)")
    return _save(fig, path)
