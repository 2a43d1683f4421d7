"""The report's tables as rows of strings (one function per table, with its header), and the number
formatting they share; used by the markdown and HTML report and by the command line's summary."""

from __future__ import annotations

import math
from typing import Any

from . import metrics


def run_label(res: dict[str, Any], i: int) -> str:
    ds = res.get("dataset", {})
    return f"run {i + 1}: {ds.get('name', '?')} n={ds.get('n', '?')}, {res.get('created', '?')}"


def index_lines(results: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
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

def fmt(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def num(x: Any) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    x = float(x)
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def nbytes(b: Any) -> str:
    if b is None:
        return "–"
    b = float(b)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if b < 1024 or unit == "GiB":
            return f"{b:.0f} {unit}" if unit == "B" else f"{b:.1f} {unit}"
        b /= 1024
    return str(b)


def op_point(run: dict[str, Any]) -> dict[str, Any] | None:
    return metrics.summary_point(run.get("sweep", []))


def best_tp(point: dict[str, Any]) -> dict[str, Any] | None:
    return max(point.get("throughput") or [], key=lambda t: t["qps"], default=None)


def load_of(res: dict[str, Any], backend: str) -> dict[str, Any]:
    """The bulk load entry of ``backend`` (a target's name) in one results file ({} if none)."""
    return next((l for l in res.get("loads", []) if l["backend"] == backend), {})


def summary_rows(results: list[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for label, run, res in index_lines(results):
        load = load_of(res, run["backend"])
        op = op_point(run) or {}
        tp = best_tp(op) if op else None
        knob = f"{op['param']}={op['value']}" if op.get("param") else "–"
        rows.append([label, num(load.get("vectors_per_s")), num(run.get("build_s")), nbytes(run.get("index_size_bytes")),
                     knob, fmt(op.get("recall")), fmt(op.get("recall_tolerant")),
                     num(op.get("latency_ms", {}).get("p50")), num(op.get("latency_ms", {}).get("p99")),
                     f"{num(tp['qps'])} (C={tp['clients']})" if tp else "–"])
    return rows


SUMMARY_HEAD = ["backend/index", "load vec/s", "build s", "index size", "operating point", "recall@k",
                "tolerant recall", "p50 ms", "p99 ms", "best QPS"]


def sweep_rows(run: dict[str, Any]) -> list[list[str]]:
    rows = []
    for s in run.get("sweep", []):
        tps = ", ".join(f"C{t['clients']}: {num(t['qps'])}{'*' if t.get('client_bound') else ''}"
                        for t in s.get("throughput", []))
        lat = s.get("latency_ms", {})
        rows.append([f"{s['param']}={s['value']}" if s.get("param") else "exact", str(s.get("queries", "–")),
                     fmt(s.get("recall")),
                     fmt(s.get("recall_tolerant")), num(lat.get("p50")), num(lat.get("p95")), num(lat.get("p99")),
                     tps or "–"])
    return rows


SWEEP_HEAD = ["query parameter", "queries", "recall@k", "tolerant recall", "p50 ms", "p95 ms", "p99 ms",
              "QPS by clients (* = client-bound)"]


def filtered_rows(results) -> list[list[str]]:
    rows = []
    for label, run, _ in index_lines(results):
        for f in run.get("filtered", []):
            rows.append([label, f["case"], fmt(f.get("share")), f"{f['param']}={f['value']}" if f.get("param") else "exact",
                         f.get("strategy") or "–", fmt(f.get("recall")), fmt(f.get("recall_tolerant")), num(f.get("latency_ms", {}).get("p50")),
                         num(f.get("latency_ms", {}).get("p99")), num((f.get("unfiltered_latency_ms") or {}).get("p50")),
                         f"{f['vs_unfiltered_p50']:.2f}x" if f.get("vs_unfiltered_p50") else "–"])
    return rows


FILTERED_HEAD = ["backend/index", "filter keeps", "measured share", "query parameter", "filter strategy", "recall@k",
                 "tolerant recall", "p50 ms", "p99 ms", "unfiltered p50 ms (beside)", "p50 / unfiltered"]


def baseline_rows(results) -> list[list[str]]:
    """One row per backend: vecface's bulk load beside the engine's raw bulk load of the same data
    (same run: the mean of the loads before and after vecface's, each in the note) and the
    one-row-at-a-time insert, with vecface's rate as a ratio to each."""
    rows = []
    many = len(results) > 1
    for i, res in enumerate(results):
        for b in res.get("baselines", []):
            name = b["backend"] + (f" [run {i + 1}]" if many else "")
            raw = load_of(res, b["backend"]).get("raw") or {}
            raw_cells = ([raw.get("method") or "–", num(raw.get("vectors_per_s")), _x(raw.get("bulk_vs_raw"))]
                         if not raw.get("skipped") else ["–", "–", "–"])
            if b.get("skipped"):
                one = ["–", "–", "–"]
            else:
                one = [b.get("method") or "–", num(b.get("vectors_per_s")), f"{num(b.get('bulk_speedup'))}x"]
            runs = raw.get("runs_vectors_per_s") or []
            notes = [n for n in (raw.get("skipped") and f"raw bulk: {raw['skipped']}",
                                 len(runs) > 1 and "raw before / after: " + " / ".join(num(v) for v in runs),
                                 b.get("skipped") or f"one at a time: {b['rows']} rows") if n]
            rows.append([name, num(b.get("bulk_vectors_per_s")), *raw_cells, *one, "; ".join(notes)])
    return rows


BASELINE_HEAD = ["backend", "bulk vec/s", "raw bulk load (same data, same run)", "raw vec/s", "bulk / raw",
                 "one-at-a-time method", "one-at-a-time vec/s", "bulk / one-at-a-time", "note"]


def overhead_entries(results) -> list[tuple[str, dict[str, Any]]]:
    """(label, entry) for every overhead comparison of every results file."""
    many = len(results) > 1
    return [(f"{o['backend']}/{o['index']}" + (f" [run {i + 1}]" if many else ""), o)
            for i, res in enumerate(results) for o in res.get("overhead", [])]


def _x(r: Any) -> str:
    return f"{r:.2f}x" if isinstance(r, (int, float)) and math.isfinite(r) else "–"


def _x_span(ratios: Any) -> str:
    """The lowest and highest of some ratios as "a – b" ("–" for none)."""
    return f"{_x(min(ratios))} – {_x(max(ratios))}" if ratios else "–"


def _ratios(o: dict[str, Any]) -> dict[str, Any]:
    return o.get("ratios") or metrics.overhead_ratios(o)


def overhead_rows(results) -> list[list[str]]:
    """One row per backend x index: serial latency and the QPS ratio range over client counts."""
    rows = []
    for label, o in overhead_entries(results):
        knob = f"{o['param']}={o['value']}" if o.get("param") else "exact"
        if o.get("skipped"):
            rows.append([label, knob, "–", "–", "–", "–", "–", "–", f"not measured: {o['skipped']}"])
            continue
        ours, raw, ratios = o["serial"]["vecface"], o["serial"]["raw"], _ratios(o)
        tps = o.get("throughput") or []
        first = tps[0] if tps else None
        qps = [r["ratio"] for r in ratios["qps"] if r["ratio"] is not None]
        rows.append([label, knob, str(o["queries"]), f"{num(ours['p50'])} / {num(raw['p50'])}", _x(ratios["p50"]),
                     _x(ratios["p90"]),
                     f"{num(first['vecface']['qps'])} / {num(first['raw']['qps'])} (C={first['clients']})" if first else "–",
                     _x(ratios["qps"][0]["ratio"]) if first else "–",
                     _x_span(qps)])
    return rows


OVERHEAD_HEAD = ["backend/index", "query parameter", "queries", "p50 ms vecface / raw", "p50 ratio", "p90 ratio",
                 "QPS vecface / raw", "QPS ratio", "QPS ratio over all C (min – max)"]


def overhead_qps_rows(results) -> list[list[str]]:
    """One row per backend x index x client count: both paths' QPS, their ratio (the median of the
    slice pairs' ratios) and the middle half of those pairs' ratios."""
    rows = []
    for label, o in overhead_entries(results):
        if o.get("skipped"):
            continue
        ratio = {r["clients"]: r for r in _ratios(o)["qps"]}
        for t in o.get("throughput") or []:
            r = ratio.get(t["clients"]) or {}
            rows.append([label, str(t["clients"]), num(t["vecface"]["qps"]), num(t["raw"]["qps"]),
                         _x(r.get("ratio")), _x_span(r.get("spread"))])
    return rows


OVERHEAD_QPS_HEAD = ["backend/index", "clients", "vecface QPS", "raw QPS", "QPS ratio",
                     "slice pairs' ratios (middle half)"]


TOPOLOGY_HEAD = ["backend", "topology", "index", "load vec/s", "query setting", "recall@k", "p50 ms", "best QPS"]


def topology_rows(results) -> list[list[str]]:
    """Load, recall and QPS of each backend on each topology (runs that measured clusters only), all
    topologies of one backend x index at the same query setting: the first topology's operating point."""
    rows = []
    ref: dict[tuple, Any] = {}
    for label, run, res in index_lines(results):
        if not res.get("topologies") or not run.get("topology"):  # a backend measured on one topology only
            continue
        load = load_of(res, run["backend"])
        key = (id(res), run.get("engine", run["backend"]), run["index"])
        op = op_point(run) or {}
        ref.setdefault(key, op.get("value"))
        pt = next((p for p in run.get("sweep", []) if p.get("value") == ref[key]), op)
        tp = best_tp(pt) if pt else None
        rows.append([run.get("engine", run["backend"]), run.get("topology") or "–", run["index"],
                     num(load.get("vectors_per_s")), f"{pt['param']}={pt['value']}" if pt.get("param") else "–",
                     fmt(pt.get("recall")), num(pt.get("latency_ms", {}).get("p50")),
                     f"{num(tp['qps'])} (C={tp['clients']})" if tp else "–"])
    return rows
