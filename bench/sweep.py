"""The search phases on one built index: the sweep of its query-time knob (serial latency, recall,
throughput by client count) and the filtered searches at the sweep's operating point, once per
filter strategy the backend offers, each timed beside the same queries unfiltered."""

from __future__ import annotations

from typing import Any

from vecface.store import VectorStore
from vecface.types import Exact, IVFFlat

from . import metrics
from .config import KNOB
from .datasets import FILTER_CASES
from .measure import searcher, serial_pass, throughput


def knob_values(spec, rows: int, cfg) -> list[int]:
    """The values of ``spec``'s query-time knob to sweep (``cfg.sweep`` overrides the defaults)."""
    if cfg.sweep and spec.kind in cfg.sweep:
        return list(cfg.sweep[spec.kind])
    lists = min(spec.resolve_lists(rows), rows) if isinstance(spec, IVFFlat) else None
    return metrics.sweep_values(spec.kind, lists, cfg.quick)


def sweep_phase(run: dict[str, Any], store, handles: list, spec, queries, gt, cfg, set_knob, cores: int,
                progress) -> None:
    """Fill ``run["sweep"]``: per knob value a serial pass on ``store`` (latency, recall), then QPS with
    C = ``cfg.concurrency`` clients on ``handles``."""
    label = f"{run['backend']}/{spec.kind}"
    param = KNOB.get(spec.kind)
    values = knob_values(spec, run["rows"], cfg)
    qs = queries if not isinstance(spec, Exact) else queries[: cfg.exact_queries]
    run["queries"] = len(qs)
    truth_ids, truth_d = gt.ids[: len(qs)], gt.dist[: len(qs)]
    with progress.task(f"{label}: sweep {param or 'exact'} {values} (serial + {len(cfg.concurrency)} "
                       f"concurrency levels x {cfg.duration:g}s)", len(values) * len(qs)) as tick:
        for v in values:
            set_knob([store], spec.kind, v)
            lat, ids, dists = serial_pass(store, qs, cfg.k, warmup=min(cfg.warmup, len(qs)), tick=tick,
                                          budget_s=cfg.point_budget_s, min_queries=cfg.min_queries)
            nq = len(ids)
            point = {"param": param, "value": v if param else None,
                     "recall": metrics.recall_by_id(ids, truth_ids[:nq], cfg.k),
                     "recall_tolerant": metrics.recall_tolerant(dists, truth_d[:nq], cfg.k),
                     "queries": nq, "latency_ms": metrics.percentiles_ms(lat),
                     "serial_qps": len(qs) / sum(lat) if sum(lat) > 0 else None,
                     "throughput": []}
            if cfg.keep_answers:
                point["answers"] = {"ids": ids, "distances": dists}
            for c in cfg.concurrency:
                clients = handles[:c]
                set_knob(clients, spec.kind, v)
                tp = throughput([searcher(h, cfg.k) for h in clients], qs, cfg.duration)
                tp["client_bound"] = None if store.in_process else bool(tp["client_cpu_cores"] >= 0.8 * cores)
                point["throughput"].append(tp)
            point["best_qps"] = max((t["qps"] for t in point["throughput"]), default=point["serial_qps"])
            run["sweep"].append(point)
            if param == "probes" and point["recall"] >= cfg.stop_recall and v != values[-1]:
                run["notes"].append(f"The probes sweep stopped at {v}: recall@k reached {point['recall']:.3f} "
                                    f"(>= {cfg.stop_recall}); more probes only cost time.")
                tick(len(qs) * (len(values) - values.index(v) - 1))
                break
    if any(t.get("client_bound") for s in run["sweep"] for t in s["throughput"]):
        run["notes"].append(f"The benchmark client used >= 80% of the {cores} cores at some concurrency "
                            "levels: there the client, not the backend, limits throughput (and client and "
                            "server share this machine's cores).")


def filtered_phase(run: dict[str, Any], store, spec, queries, gt, cfg, set_knob, progress) -> None:
    """Fill ``run["filtered"]``: each filter case at the sweep's operating point (or the knob's default
    when there was no sweep), once per filter strategy of the backend, against the filtered ground
    truth; then, where the backend has per-value filter indexes (pgvector's partial indexes), once
    more with one built for each case's value (strategy "<default> + filter index"), dropped after."""
    if not gt.filtered:
        return
    label = f"{run['backend']}/{spec.kind}"
    op = metrics.summary_point(run["sweep"])
    param = KNOB.get(spec.kind)
    value = op["value"] if op else None
    qs = queries[: min(cfg.filter_queries, cfg.exact_queries if isinstance(spec, Exact) else len(queries))]
    strategies = list(store.filter_strategies) or [None]
    cases = [(case, tag) for case, (tag, _) in FILTER_CASES.items() if case in gt.filtered]
    indexed = not isinstance(spec, Exact) and type(store).build_filter_index is not VectorStore.build_filter_index
    passes = len(strategies) + indexed

    def case_entry(case: str, tag: str, strategy: str | None, tick) -> dict[str, Any]:
        fi, fd = gt.filtered[case]
        flt = {"tag": tag}
        lat, ids, dists, plain = beside_unfiltered(store, qs, cfg.k, flt, tick, cfg.point_budget_s / 2,
                                                   min(20, len(qs)))
        nq = len(ids)
        entry = {"case": case, "filter": flt, "share": gt.filter_share.get(case), "param": param,
                 "value": value, "strategy": strategy, "queries": nq,
                 "recall": metrics.recall_by_id(ids, fi[:nq], cfg.k),
                 "recall_tolerant": metrics.recall_tolerant(dists, fd[:nq], cfg.k),
                 "latency_ms": metrics.percentiles_ms(lat),
                 "unfiltered_latency_ms": metrics.percentiles_ms(plain)}
        entry["vs_unfiltered_p50"] = entry["latency_ms"]["p50"] / entry["unfiltered_latency_ms"]["p50"]
        if cfg.keep_answers:
            entry["answers"] = {"ids": ids, "distances": dists}
        return entry

    with progress.task(f"{label}: filtered search (50%/10%/1% of rows, {param or 'exact'}={value}"
                       f"{', strategies ' + '/'.join(strategies) if strategies != [None] else ''}"
                       f"{', then with a filter index per value' if indexed else ''})",
                       len(qs) * len(cases) * passes) as tick:
        for strategy in strategies:
            set_knob([store], spec.kind, value, strategy)
            for case, tag in cases:
                run["filtered"].append(case_entry(case, tag, strategy, tick))
        if indexed:
            set_knob([store], spec.kind, value)
            for case, tag in cases:
                store.build_filter_index("tag", tag)
                try:
                    run["filtered"].append(case_entry(case, tag, f"{strategies[0] or 'default'} + filter index",
                                                      tick))
                finally:
                    store.drop_filter_index("tag", tag)
    set_knob([store], spec.kind, value)


#: queries per block of :func:`beside_unfiltered`
BESIDE_BLOCK = 25


def beside_unfiltered(store, qs, k: int, flt, tick, budget_s: float, min_queries: int):
    """The filtered serial pass in blocks of BESIDE_BLOCK queries, each block next to the same
    queries unfiltered at the same setting (which of the two goes first alternates), so the
    "filtered vs unfiltered" ratio is not skewed by the machine's load changing between the sweep
    and this phase. Stops after ``budget_s`` seconds of filtered queries (once ``min_queries`` ran).
    Returns (filtered latencies, ids, distances, unfiltered latencies)."""
    serial_pass(store, qs[:3], k, flt)
    serial_pass(store, qs[:3], k)
    lat, ids, dists, plain = [], [], [], []
    for b, start in enumerate(range(0, len(qs), BESIDE_BLOCK)):
        if sum(lat) > budget_s and len(lat) >= min_queries:
            tick(len(qs) - start)
            break
        block = qs[start:start + BESIDE_BLOCK]
        for filtered in ((True, False) if b % 2 == 0 else (False, True)):
            if filtered:
                got = serial_pass(store, block, k, flt, tick=tick)
                lat += got[0]
                ids += got[1]
                dists += got[2]
            else:
                plain += serial_pass(store, block, k)[0]
    return lat, ids, dists, plain
