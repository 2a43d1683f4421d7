"""Reports from benchmark results: results.json, report.md, a self-contained report.html, PNG plots.

``write_report(results, out)`` writes everything for one run; ``render([r1, r2, ...], out)``
re-renders (and merges) results files into one comparison: every backend x index line of every
run, labelled with the run it came from when there are several.
"""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path
from typing import Any, Sequence

from . import metrics

PLOTS = {
    "pareto": "recall_vs_qps.png",
    "latency": "latency_percentiles.png",
    "load": "load_throughput.png",
    "build": "build_time.png",
    "scaling": "qps_vs_clients.png",
}

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
        "before any vector index exists), next to the one-row-at-a-time baseline (pgvector: one INSERT per "
        "row; Weaviate: one insert call per object). Higher is better; the ratio is what batching buys."),
    "build": (
        "Time to build each index over the loaded rows (exact has no index to build). For Weaviate the build "
        "copies every object into a new collection whose HNSW graph is built as it imports."),
    "scaling": (
        "Throughput as concurrent clients are added, at each index's operating point. A line that stops "
        "rising has hit a limit: the cores of this machine (client and server share them), a lock, or the "
        "client itself (see the client-bound notes)."),
}


# ---------------------------------------------------------------- loading and merging


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

def load_results(paths: Sequence[str | Path]) -> list[dict[str, Any]]:
    out = []
    for p in paths:
        data = json.loads(Path(p).read_text())
        if data.get("schema", "").startswith("vecface-bench-merged"):
            out.extend(data["sources"])
        else:
            data.setdefault("_source", str(p))
            out.append(data)
    return out


def _run_label(res: dict[str, Any], i: int) -> str:
    ds = res.get("dataset", {})
    return f"run {i + 1}: {ds.get('name', '?')} n={ds.get('n', '?')}, {res.get('created', '?')}"


def _lines(results: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(label, run, results) for every backend x index of every results file."""
    many = len(results) > 1
    out = []
    for i, res in enumerate(results):
        for run in res.get("runs", []):
            label = f"{run['backend']}/{run['index']}"
            if many:
                label += f" [run {i + 1}]"
            out.append((label, run, res))
    return out


# ---------------------------------------------------------------- formatting

def _f(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def _num(x: Any) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    x = float(x)
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def _bytes(b: Any) -> str:
    if b is None:
        return "–"
    b = float(b)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if b < 1024 or unit == "GiB":
            return f"{b:.0f} {unit}" if unit == "B" else f"{b:.1f} {unit}"
        b /= 1024
    return str(b)


def _op(run: dict[str, Any]) -> dict[str, Any] | None:
    return metrics.summary_point(run.get("sweep", []))


def _best_tp(point: dict[str, Any]) -> dict[str, Any] | None:
    return max(point.get("throughput") or [], key=lambda t: t["qps"], default=None)


def summary_rows(results: list[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for label, run, res in _lines(results):
        load = next((l for l in res.get("loads", []) if l["backend"] == run["backend"]), {})
        op = _op(run) or {}
        tp = _best_tp(op) if op else None
        knob = f"{op['param']}={op['value']}" if op.get("param") else "–"
        rows.append([label, _num(load.get("vectors_per_s")), _num(run.get("build_s")), _bytes(run.get("index_size_bytes")),
                     knob, _f(op.get("recall")), _f(op.get("recall_tolerant")),
                     _num(op.get("latency_ms", {}).get("p50")), _num(op.get("latency_ms", {}).get("p99")),
                     f"{_num(tp['qps'])} (C={tp['clients']})" if tp else "–"])
    return rows


SUMMARY_HEAD = ["backend/index", "load vec/s", "build s", "index size", "operating point", "recall@k",
                "tolerant recall", "p50 ms", "p99 ms", "best QPS"]


def sweep_rows(run: dict[str, Any]) -> list[list[str]]:
    rows = []
    for s in run.get("sweep", []):
        tps = ", ".join(f"C{t['clients']}: {_num(t['qps'])}{'*' if t.get('client_bound') else ''}"
                        for t in s.get("throughput", []))
        lat = s.get("latency_ms", {})
        rows.append([f"{s['param']}={s['value']}" if s.get("param") else "exact", str(s.get("queries", "–")),
                     _f(s.get("recall")),
                     _f(s.get("recall_tolerant")), _num(lat.get("p50")), _num(lat.get("p95")), _num(lat.get("p99")),
                     tps or "–"])
    return rows


SWEEP_HEAD = ["query parameter", "queries", "recall@k", "tolerant recall", "p50 ms", "p95 ms", "p99 ms",
              "QPS by clients (* = client-bound)"]


def filtered_rows(results) -> list[list[str]]:
    rows = []
    for label, run, _ in _lines(results):
        for f in run.get("filtered", []):
            rows.append([label, f["case"], _f(f.get("share")), f"{f['param']}={f['value']}" if f.get("param") else "exact",
                         _f(f.get("recall")), _f(f.get("recall_tolerant")), _num(f.get("latency_ms", {}).get("p50")),
                         _num(f.get("latency_ms", {}).get("p99"))])
    return rows


FILTERED_HEAD = ["backend/index", "filter keeps", "measured share", "query parameter", "recall@k",
                 "tolerant recall", "p50 ms", "p99 ms"]


def baseline_rows(results) -> list[list[str]]:
    rows = []
    many = len(results) > 1
    for i, res in enumerate(results):
        for b in res.get("baselines", []):
            name = b["backend"] + (f" [run {i + 1}]" if many else "")
            if b.get("skipped"):
                rows.append([name, "–", "–", _num(b.get("bulk_vectors_per_s")), "–", b["skipped"]])
            else:
                rows.append([name, b.get("method") or "–", _num(b.get("vectors_per_s")),
                             _num(b.get("bulk_vectors_per_s")), f"{_num(b.get('bulk_speedup'))}x",
                             f"{b['rows']} rows"])
    return rows


BASELINE_HEAD = ["backend", "one-at-a-time method", "one-at-a-time vec/s", "bulk vec/s", "bulk speed-up", "note"]


# ---------------------------------------------------------------- plots

def make_plots(results: list[dict[str, Any]], out: Path) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    lines = _lines(results)
    files: dict[str, Path] = {}
    colors = plt.get_cmap("tab10")
    backend_color: dict[str, Any] = {}
    markers = {"hnsw": "o", "ivfflat": "s", "exact": "*"}

    def color(backend: str):
        if backend not in backend_color:
            backend_color[backend] = colors(len(backend_color) % 10)
        return backend_color[backend]

    # recall vs QPS
    fig, ax = plt.subplots(figsize=(9, 5.5))
    for label, run, _ in lines:
        pts = [(s.get("recall") or 0.0, (_best_tp(s) or {}).get("qps") or s.get("serial_qps") or 0.0, s)
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
    ax.legend(fontsize=8, loc="best")
    files["pareto"] = _save(fig, out / PLOTS["pareto"])

    # latency percentiles at the operating point
    fig, ax = plt.subplots(figsize=(9, 4.5))
    labels, p50, p95, p99 = [], [], [], []
    for label, run, _ in lines:
        op = _op(run)
        if not op:
            continue
        lat = op["latency_ms"]
        labels.append(label + (f"\n{op['param']}={op['value']}" if op.get("param") else "\nexact"))
        p50.append(lat["p50"])
        p95.append(lat["p95"])
        p99.append(lat["p99"])
    if labels:
        import numpy as np

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
    files["latency"] = _save(fig, out / PLOTS["latency"])

    # load throughput (bulk and one-at-a-time)
    fig, ax = plt.subplots(figsize=(8, 4))
    names, vals, cols = [], [], []
    many = len(results) > 1
    for i, res in enumerate(results):
        suffix = f" [run {i + 1}]" if many else ""
        for l in res.get("loads", []):
            names.append(f"{l['backend']}{suffix}\nbulk upsert_arrays")
            vals.append(l.get("vectors_per_s") or 0)
            cols.append(color(l["backend"]))
        for b in res.get("baselines", []):
            if not b.get("skipped") and b.get("vectors_per_s"):
                names.append(f"{b['backend']}{suffix}\none at a time")
                vals.append(b["vectors_per_s"])
                cols.append(color(b["backend"]))
    bars = _bars(ax, names, vals, cols, [_num(v) for v in vals],
                 "vectors per second (higher is better)", "Load throughput")
    for bar, hatch_name in zip(bars, names):
        if "one at a time" in hatch_name:
            bar.set_hatch("//")
            bar.set_alpha(0.6)
    files["load"] = _save(fig, out / PLOTS["load"])

    # build time
    fig, ax = plt.subplots(figsize=(8, 4))
    built = [(label, run) for label, run, _ in lines if run["index"] != "exact"]
    vals = [run.get("build_s") or 0 for _, run in built]
    _bars(ax, [label for label, _ in built], vals, [color(run["backend"]) for _, run in built],
          [_num(v) + " s" for v in vals], "seconds (lower is better)", "Index build time")
    files["build"] = _save(fig, out / PLOTS["build"])

    # QPS vs clients
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for label, run, _ in lines:
        op = _op(run)
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
    if lines:
        ax.legend(fontsize=8)
    files["scaling"] = _save(fig, out / PLOTS["scaling"])
    return files


# ---------------------------------------------------------------- text

def _md_table(head: list[str], rows: list[list[str]]) -> str:
    if not rows:
        return "_(none)_\n"
    esc = lambda s: str(s).replace("|", "\\|").replace("\n", " ")
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return "\n".join(out) + "\n"


def _html_table(head: list[str], rows: list[list[str]]) -> str:
    if not rows:
        return "<p><em>(none)</em></p>"
    h = "".join(f"<th>{html.escape(c)}</th>" for c in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{h}</tr></thead><tbody>{body}</tbody></table>"


def _what(res: dict[str, Any]) -> list[str]:
    """Plain-words description of one run (paragraphs)."""
    ds = res.get("dataset", {})
    p = res.get("params", {})
    prov = res.get("provenance", {})
    m = prov.get("machine", {})
    v = prov.get("versions", {})
    srv = prov.get("servers", {})
    mem = m.get("memory_bytes")
    paras = [
        f"Dataset: {ds.get('name', '?')} ({ds.get('kind', '?')}), {ds.get('n', 0):,} vectors of dimension "
        f"{ds.get('dim')}, metric {ds.get('metric')}, {ds.get('queries')} queries held out from the base "
        f"set. {ds.get('about', '')} Dataset hash {ds.get('fingerprint')}; ground truth: {ds.get('ground_truth')}.",
        f"Parameters: k = {p.get('k')}; up to {p.get('queries')} queries per sweep point for ANN indexes and "
        f"{p.get('exact_queries')} for exact search (a serial pass stops after {p.get('point_budget_s')} s once "
        f"{p.get('min_queries')} queries have run; the sweep tables give the count); {p.get('warmup')} warm-up "
        f"queries before each timed pass; "
        f"throughput measured for {p.get('duration')} s at each of {p.get('concurrency')} concurrent clients "
        f"(threads, each with its own store handle / connection); bulk load in batches of {p.get('batch_size')}; "
        f"{p.get('baseline_rows')} rows for the one-at-a-time baselines; seed {p.get('seed')}"
        f"{' (quick mode)' if p.get('quick') else ''}.",
        f"Machine: {m.get('cpu')}, {m.get('cores')} cores, {_bytes(mem)} memory, {m.get('os')}. "
        f"Client and servers run on this same machine and share its cores.",
        "Versions: " + ", ".join(f"{k} {val}" for k, val in {**v, **srv}.items() if val) + ".",
    ]
    if res.get("command"):
        paras.append(f"Command: `{res['command']}`; wall time {_num(res.get('wall_s'))} s.")
    return paras


METHOD = [
    "Each backend gets one collection, loaded once through vecface's bulk path (`upsert_arrays`, streamed in "
    "batches; the load is timed on its own, before any vector index exists). Then each index kind is built over "
    "those rows in turn (exact = no index, IVFFlat, HNSW), and its query-time knob is swept on that one built "
    "index, never rebuilding: HNSW `ef_search`, IVFFlat `probes`.",
    "For each knob value: a warm-up, then every query once, one at a time, timing each call (latency "
    "percentiles p50/p95/p99) and scoring the answers (recall); then throughput: C client threads, each with "
    "its own store handle, query as fast as they can for a fixed time, and QPS = answered queries / elapsed "
    "seconds. That is measured throughput, not 1/latency.",
    "Recall@k is the share of the true k nearest neighbours (exact FAISS flat search over the same vectors) "
    "that the backend returned. Tolerant recall (as in ann-benchmarks) also counts a returned neighbour whose "
    "distance is within 0.1% of the k-th true distance, so ties do not count as misses.",
    "The operating point of an index is its fastest knob value with recall@k >= 0.9 (or its most accurate one "
    "if none reaches 0.9); the summary table, the latency chart and the filtered-search case use it.",
    "Filtered search: a metadata filter on `tag` keeping about 50%, 10% and 1% of the rows, scored against the "
    "exact nearest neighbours among the rows that pass the filter.",
    "Time to first query = build time + the first query's latency. Cold open = opening a new handle on the "
    "collection and answering one query (FAISS reads its index file; servers open a connection).",
    "Client-bound: for server backends, when the benchmark process itself used at least 80% of the machine's "
    "cores during a throughput measurement, the client (Python, result decoding) limited that figure (marked *). "
    "FAISS runs inside the client process, so its CPU use is the search itself.",
]


def render_markdown(results: list[dict[str, Any]], plots: dict[str, Path], out: Path) -> str:
    parts = ["# vecface benchmark report\n"]
    parts.append("Vector stores compared on the same data, through the same vecface interface: bulk load speed, "
                 "index build time, recall against exact ground truth, latency and measured throughput.\n")
    parts.append("## Summary\n")
    parts.append(_md_table(SUMMARY_HEAD, summary_rows(results)))
    skipped = [(i, s) for i, r in enumerate(results) for s in r.get("skipped", [])]
    if skipped:
        parts.append("\nNot measured:\n")
        for i, s in skipped:
            parts.append(f"- {s['backend']}{'/' + s['index'] if s.get('index') else ''}: {s['reason']}")
        parts.append("")
    parts.append("\n## What was measured, on what\n")
    for i, res in enumerate(results):
        if len(results) > 1:
            parts.append(f"### {_run_label(res, i)}\n")
        parts.extend(p + "\n" for p in _what(res))
    parts.append("## How it was measured\n")
    parts.extend(p + "\n" for p in METHOD)
    parts.append("## Charts\n")
    titles = {"pareto": "Recall vs throughput", "latency": "Latency percentiles", "load": "Load throughput",
              "build": "Index build time", "scaling": "Throughput vs concurrent clients"}
    for key, path in plots.items():
        rel = path.relative_to(out) if path.is_relative_to(out) else path
        parts.append(f"### {titles[key]}\n\n![{titles[key]}]({rel})\n\n{HOW_TO_READ[key]}\n")
    parts.append("## Sweeps\n")
    for label, run, _ in _lines(results):
        parts.append(f"### {label} — {run.get('index_spec')}\n")
        parts.append(f"Rows {run.get('rows'):,}; build {_num(run.get('build_s'))} s; time to first query "
                     f"{_num(run.get('time_to_first_query_s'))} s; cold open to first answer "
                     f"{_num(run.get('cold_open_first_query_s'))} s; index size {_bytes(run.get('index_size_bytes'))}; "
                     f"{run.get('queries')} queries.\n")
        parts.append(_md_table(SWEEP_HEAD, sweep_rows(run)))
        for note in run.get("notes", []):
            parts.append(f"- {note}")
        parts.append("")
    parts.append("## Filtered search\n")
    parts.append(_md_table(FILTERED_HEAD, filtered_rows(results)))
    parts.append("\n## Load: bulk path vs one row at a time\n")
    parts.append(_md_table(BASELINE_HEAD, baseline_rows(results)))
    return "\n".join(parts) + "\n"


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
h1{border-bottom:2px solid #444}h2{margin-top:2em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:1em 0;font-size:0.85em}th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f0f0f0}td:first-child,th:first-child{text-align:left}
img{max-width:100%;border:1px solid #ddd}.how{background:#f7f7fb;border-left:4px solid #88a;padding:0.5em 1em}
.note{color:#555;font-size:0.9em}code{background:#f3f3f3;padding:0 3px}
"""


def render_html(results: list[dict[str, Any]], plots: dict[str, Path]) -> str:
    e = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>vecface benchmark report</title>"
             f"<style>{_CSS}</style></head><body>", "<h1>vecface benchmark report</h1>",
             "<p>Vector stores compared on the same data, through the same vecface interface: bulk load speed, "
             "index build time, recall against exact ground truth, latency and measured throughput.</p>",
             "<h2>Summary</h2>", _html_table(SUMMARY_HEAD, summary_rows(results))]
    skipped = [s for r in results for s in r.get("skipped", [])]
    if skipped:
        parts.append("<p>Not measured:</p><ul>" + "".join(
            f"<li>{e(s['backend'])}{'/' + e(s['index']) if s.get('index') else ''}: {e(s['reason'])}</li>"
            for s in skipped) + "</ul>")
    parts.append("<h2>What was measured, on what</h2>")
    for i, res in enumerate(results):
        if len(results) > 1:
            parts.append(f"<h3>{e(_run_label(res, i))}</h3>")
        parts.extend(f"<p>{e(p)}</p>" for p in _what(res))
    parts.append("<h2>How it was measured</h2>")
    parts.extend(f"<p>{e(p)}</p>" for p in METHOD)
    parts.append("<h2>Charts</h2>")
    for key, path in plots.items():
        data = base64.b64encode(Path(path).read_bytes()).decode()
        parts.append(f"<figure><img alt='{e(key)}' src='data:image/png;base64,{data}'>"
                     f"<figcaption class='how'><b>How to read it.</b> {e(HOW_TO_READ[key])}</figcaption></figure>")
    parts.append("<h2>Sweeps</h2>")
    for label, run, _ in _lines(results):
        parts.append(f"<h3>{e(label)} — {e(str(run.get('index_spec')))}</h3>")
        parts.append(f"<p>Rows {run.get('rows'):,}; build {_num(run.get('build_s'))} s; time to first query "
                     f"{_num(run.get('time_to_first_query_s'))} s; cold open to first answer "
                     f"{_num(run.get('cold_open_first_query_s'))} s; index size {e(_bytes(run.get('index_size_bytes')))}; "
                     f"{run.get('queries')} queries.</p>")
        parts.append(_html_table(SWEEP_HEAD, sweep_rows(run)))
        parts.extend(f"<p class='note'>{e(n)}</p>" for n in run.get("notes", []))
    parts.append("<h2>Filtered search</h2>")
    parts.append(_html_table(FILTERED_HEAD, filtered_rows(results)))
    parts.append("<h2>Load: bulk path vs one row at a time</h2>")
    parts.append(_html_table(BASELINE_HEAD, baseline_rows(results)))
    parts.append("</body></html>")
    return "\n".join(parts)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        return _jsonable(obj.item())
    if isinstance(obj, Path):
        return str(obj)
    return obj


def render(results: list[dict[str, Any]], out: str | Path) -> dict[str, Path]:
    """Write report.md, report.html and plots/ for one or several results."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plots = make_plots(results, out / "plots")
    md = out / "report.md"
    md.write_text(render_markdown(results, plots, out))
    page = out / "report.html"
    page.write_text(render_html(results, plots))
    if len(results) > 1:
        merged = out / "merged-results.json"
        merged.write_text(json.dumps(_jsonable({"schema": "vecface-bench-merged/1", "sources": results}), indent=1))
    return {"markdown": md, "html": page, **{f"plot_{k}": v for k, v in plots.items()}}


def write_report(results: dict[str, Any], out: str | Path) -> dict[str, Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "results.json"
    results = _jsonable(results)
    path.write_text(json.dumps(results, indent=1, allow_nan=False))
    files = render([results], out)
    return {"results": path, **files}
