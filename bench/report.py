"""Reports from benchmark results: results.json, report.md, a self-contained report.html, PNG plots.

``write_report(results, out)`` writes everything for one run; ``render([r1, r2, ...], out)``
re-renders (and merges) results files into one comparison: every backend x index line of every
run, labelled with the run it came from when there are several. The tables come from
:mod:`vecface.bench.tables`, the charts from :mod:`vecface.bench.plots`.
"""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path
from typing import Any, Sequence

from .config import PHASES
from .plots import HOW_TO_READ, TITLES, make_plots
from .tables import (BASELINE_HEAD, FILTERED_HEAD, OVERHEAD_HEAD, OVERHEAD_QPS_HEAD, SUMMARY_HEAD, SWEEP_HEAD,
                     TOPOLOGY_HEAD, baseline_rows, filtered_rows, index_lines, nbytes, num, overhead_qps_rows,
                     overhead_rows, run_label, summary_rows, sweep_rows, topology_rows)
from .topology import SAME_MACHINE_NOTE


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


def _params(p: dict[str, Any]) -> str:
    """The run's parameters in words, for the phases it ran."""
    phases = p.get("phases", PHASES)
    parts = [f"k = {p.get('k')}"]
    if "sweep" in phases or "filtered" in phases:
        parts.append(
            f"up to {p.get('queries')} queries per sweep point for ANN indexes and {p.get('exact_queries')} for exact "
            f"search (a serial pass stops after {p.get('point_budget_s')} s once {p.get('min_queries')} queries have "
            f"run; the sweep tables give the count); {p.get('warmup')} warm-up queries before each timed pass; "
            f"throughput measured for {p.get('duration')} s at each of {p.get('concurrency')} concurrent clients "
            "(threads, each with its own store handle / connection)")
    if "overhead" in phases:
        parts.append(
            f"overhead at {p.get('overhead_at')} (index kind: its query knob), up to {p.get('overhead_queries')} "
            f"queries through both paths, then {p.get('overhead_duration', p.get('duration'))} s per path at each of "
            f"{p.get('overhead_concurrency')} concurrent clients")
    parts.append(f"bulk load in batches of {p.get('batch_size')}")
    if "baselines" in phases:
        parts.append(f"{p.get('baseline_rows')} rows for the one-at-a-time baselines")
    parts.append(f"seed {p.get('seed')}{' (quick mode)' if p.get('quick') else ''}")
    return "Parameters: " + "; ".join(parts) + "."


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
        _params(p),
        f"Machine: {m.get('cpu')}, {m.get('cores')} cores, {nbytes(mem)} memory, {m.get('os')}. "
        f"Client and servers run on this same machine and share its cores.",
        "Versions: " + ", ".join(f"{k} {val}" for k, val in {**v, **srv}.items() if val) + ".",
    ]
    if res.get("command"):
        paras.append(f"Command: `{res['command']}`; wall time {num(res.get('wall_s'))} s.")
    return paras


OVERHEAD_TEXT = (
    "What vecface's own layer costs: the same queries on the same built index through vecface's `search` and "
    "through the engine's own client call, interleaved. Latency ratio = vecface p50 (p90) / raw p50 (p90): "
    "1.10 means vecface takes 10% longer per query. QPS ratio = vecface QPS / raw QPS with C concurrent "
    "clients: 0.90 means 10% fewer queries per second. The goal is within 10% (p50 ratio <= 1.10, QPS ratio "
    ">= 0.91).")

FILTERED_TEXT = ("Where a backend has several ways of running a filtered search (filter strategy), each is "
                 "measured on the same queries. Each case runs in blocks of 25 queries, each block beside the "
                 "same queries unfiltered at the same setting, so the ratio to the unfiltered p50 is not "
                 "skewed by the machine's load changing between phases.")


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
    "Overhead: on the same built index, with the same queries and query parameters, each query is run through "
    "vecface's `search` and through the backend's raw client call (`raw_searcher`: FAISS `index.search`, a "
    "prepared binary SQL query over psycopg, weaviate-client `near_vector`, returning ids only), the paths "
    "alternating call by call, each on a different query from the one the other path has just run (back to "
    "back, the second call on a query would find it in the CPU's caches); then C clients (each with its own handle, started once and warmed up by an uncounted slice) "
    "run each path for the overhead duration, in short slices taken in the order A B B A A B B A ..., so a "
    "change in the machine's load weighs on both paths alike. Ratios are vecface / raw; the QPS ratio is the "
    "median of the ratios of slices taken side by side (a burst of load from elsewhere moves one pair, not "
    "the result), and the per-client-count table gives the middle half of those pairs' ratios.",
    "Client-bound: for server backends, when the benchmark process itself used at least 80% of the machine's "
    "cores during a throughput measurement, the client (Python, result decoding) limited that figure (marked *). "
    "FAISS runs inside the client process, so its CPU use is the search itself.",
]


INTRO = ("Vector stores compared on the same data, through the same vecface interface: bulk load speed, "
         "index build time, recall against exact ground truth, latency and measured throughput.")


def _phases(results: list[dict[str, Any]]) -> set[str]:
    """The phases any of the runs measured (results from before phases existed measured them all)."""
    return {ph for r in results for ph in r.get("params", {}).get("phases", PHASES)}


def document(results: list[dict[str, Any]], plots: dict[str, Path]) -> list[tuple]:
    """The report as blocks, rendered to markdown or HTML: ("h2"/"h3", text), ("p", text),
    ("table", head, rows), ("list", items), ("notes", items), ("figure", key, path)."""
    phases = _phases(results)
    doc: list[tuple] = [("p", INTRO), ("h2", "Summary"), ("table", SUMMARY_HEAD, summary_rows(results))]
    if topology_rows(results):
        doc += [("h2", "Topologies: one node and clusters"),
                ("p", "The same data, indexes and queries on each topology; a cluster target's load goes "
                      "through its primary / every replica, its searches to its read nodes. " + SAME_MACHINE_NOTE),
                ("table", TOPOLOGY_HEAD, topology_rows(results))]
    if overhead_rows(results):
        doc += [("h2", "vecface overhead vs raw client"), ("p", OVERHEAD_TEXT),
                ("table", OVERHEAD_HEAD, overhead_rows(results)),
                ("p", "Throughput by concurrent clients (both paths on the same client handles, in slices A B B A A B B A):"),
                ("table", OVERHEAD_QPS_HEAD, overhead_qps_rows(results))]
    skipped = [s for r in results for s in r.get("skipped", [])]
    if skipped:
        doc += [("p", "Not measured:"), ("list", [f"{s['backend']}{'/' + s['index'] if s.get('index') else ''}: "
                                                  f"{s['reason']}" for s in skipped])]
    doc.append(("h2", "What was measured, on what"))
    for i, res in enumerate(results):
        if len(results) > 1:
            doc.append(("h3", run_label(res, i)))
        doc += [("p", para) for para in _what(res)]
    doc += [("h2", "How it was measured"), *[("p", para) for para in METHOD], ("h2", "Charts")]
    doc += [("figure", key, path) for key, path in plots.items()]
    if "sweep" in phases:
        doc.append(("h2", "Sweeps"))
        for label, run, _ in index_lines(results):
            doc += [("h3", f"{label} — {run.get('index_spec')}"),
                    ("p", f"Rows {run.get('rows'):,}; build {num(run.get('build_s'))} s; time to first query "
                          f"{num(run.get('time_to_first_query_s'))} s; cold open to first answer "
                          f"{num(run.get('cold_open_first_query_s'))} s; index size "
                          f"{nbytes(run.get('index_size_bytes'))}; {run.get('queries')} queries."),
                    ("table", SWEEP_HEAD, sweep_rows(run)), ("notes", run.get("notes", []))]
    if "filtered" in phases:
        doc += [("h2", "Filtered search"), ("p", FILTERED_TEXT), ("table", FILTERED_HEAD, filtered_rows(results))]
    if "baselines" in phases:
        doc += [("h2", "Load: bulk path vs the engine's raw bulk load and one row at a time"),
                ("table", BASELINE_HEAD, baseline_rows(results))]
    return doc


def render_markdown(results: list[dict[str, Any]], plots: dict[str, Path], out: Path) -> str:
    parts = ["# vecface benchmark report\n"]
    for block in document(results, plots):
        kind = block[0]
        if kind in ("h2", "h3"):
            parts.append(f"{'#' * int(kind[1])} {block[1]}\n")
        elif kind == "p":
            parts.append(block[1] + "\n")
        elif kind == "table":
            parts.append(_md_table(block[1], block[2]))
        elif kind in ("list", "notes"):
            parts.append("".join(f"- {item}\n" for item in block[1]))
        elif kind == "figure":
            key, path = block[1], block[2]
            rel = path.relative_to(out) if path.is_relative_to(out) else path
            parts.append(f"### {TITLES[key]}\n\n![{TITLES[key]}]({rel})\n\n{HOW_TO_READ[key]}\n")
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
             f"<style>{_CSS}</style></head><body>", "<h1>vecface benchmark report</h1>"]
    for block in document(results, plots):
        kind = block[0]
        if kind in ("h2", "h3"):
            parts.append(f"<{kind}>{e(block[1])}</{kind}>")
        elif kind == "p":
            parts.append(f"<p>{e(block[1])}</p>")
        elif kind == "table":
            parts.append(_html_table(block[1], block[2]))
        elif kind == "list":
            parts.append("<ul>" + "".join(f"<li>{e(item)}</li>" for item in block[1]) + "</ul>")
        elif kind == "notes":
            parts.extend(f"<p class='note'>{e(item)}</p>" for item in block[1])
        elif kind == "figure":
            key, data = block[1], base64.b64encode(Path(block[2]).read_bytes()).decode()
            parts.append(f"<figure><img alt='{e(key)}' src='data:image/png;base64,{data}'>"
                         f"<figcaption class='how'><b>How to read it.</b> {e(HOW_TO_READ[key])}</figcaption></figure>")
    parts.append("</body></html>")
    return "\n".join(parts)


def jsonable(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        return jsonable(obj.item())
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
        merged.write_text(json.dumps(jsonable({"schema": "vecface-bench-merged/1", "sources": results}), indent=1))
    return {"markdown": md, "html": page, **{f"plot_{k}": v for k, v in plots.items()}}


def write_report(results: dict[str, Any], out: str | Path) -> dict[str, Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "results.json"
    results = jsonable(results)
    path.write_text(json.dumps(results, indent=1, allow_nan=False))
    files = render([results], out)
    return {"results": path, **files}
