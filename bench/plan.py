"""A capacity plan extrapolated from one benchmark run: per backend x index, the memory, disk, load
and build time and the cores and nodes that ``n`` vectors of dimension ``dim`` at a recall target
and a query rate would need.

Every figure is an extrapolation, linear from what the run measured at its own (much smaller) size,
and each carries the formula it came from and the measurements it used, so a reader can redo it:

- bytes per vector in the index = ``index_size_bytes / rows``; at another dimension the float32
  payload is replaced: ``b - 4·d_run + 4·d`` (graph links, ids and headers stay as measured);
- storage bytes per row = the loaded collection's ``storage_bytes / rows``, the same dimension rule;
- build seconds per vector = ``build_s / rows``, times ``d / d_run``;
- QPS per core at the smallest sweep point whose recall@k reaches the target = that point's best
  QPS / the machine's cores (client and server shared them), scaled for the larger collection by
  how each index's work per query grows: HNSW ``log n_run / log n``, IVFFlat with lists ~ sqrt(n)
  ``sqrt(n_run / n)``, exact ``n_run / n``; and by ``d_run / d``.

Only single-node figures are planned from (cluster targets of the same run share one machine);
``replication`` multiplies memory and disk.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vecface.errors import InvalidArgument

from .tables import nbytes, num

GIB = 2**30
SINGLE = (None, "1 node")


@dataclass
class PlanInput:
    n: int
    dim: int
    recall: float = 0.95
    qps: float = 500.0
    replication: int = 1
    node_memory_gib: float = 64.0
    node_cores: int = 16

    def check(self) -> "PlanInput":
        for name in ("n", "dim", "qps", "replication", "node_memory_gib", "node_cores"):
            if not getattr(self, name) or getattr(self, name) <= 0:
                raise InvalidArgument(f"the plan's {name} must be positive, got {getattr(self, name)!r}")
        if not 0 < self.recall <= 1:
            raise InvalidArgument(f"the recall target must be in (0, 1], got {self.recall!r}")
        return self


@dataclass
class Figure:
    value: float | None
    formula: str
    source: str  # the measurement(s) it came from

    def show(self, unit: str) -> str:
        if self.value is None:
            return "–"
        if unit == "bytes":
            return nbytes(self.value)
        if unit == "s":
            return duration(self.value)
        return num(self.value) if unit != "count" else f"{math.ceil(self.value):,}"


@dataclass
class PlanRow:
    backend: str
    index: str
    index_spec: str
    figures: dict[str, Figure] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def duration(s: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if s >= size:
            return f"{s / size:.1f} {unit}"
    return f"{s:.1f} s"


def per_vector_bytes(measured: float, d_run: int, d: int) -> tuple[float, str]:
    """Bytes per vector at dimension ``d`` from ``measured`` at ``d_run`` (float32 payload swapped)."""
    if measured >= 4 * d_run:
        return measured - 4 * d_run + 4 * d, "b − 4·d_run + 4·d"
    return measured * d / d_run, "b · d / d_run"  # smaller than one float32 vector: compressed, scale it


def search_scale(kind: str, n_run: int, n: int) -> tuple[float, str]:
    """How much of the run's per-query work one query at ``n`` rows does (QPS multiplier)."""
    if kind == "hnsw":
        return math.log(max(n_run, 2)) / math.log(max(n, 2)), "ln n_run / ln n"
    if kind == "ivfflat":
        return math.sqrt(n_run / n), "sqrt(n_run / n)"
    return n_run / n, "n_run / n"


def first_point(run: dict[str, Any], recall: float) -> dict[str, Any] | None:
    """The sweep point with the smallest knob value whose recall@k reaches ``recall``."""
    pts = [p for p in run.get("sweep", []) if (p.get("recall") or 0) >= recall and p.get("best_qps")]
    return min(pts, key=lambda p: p.get("value") or 0, default=None)


def plan_run(run: dict[str, Any], load: dict[str, Any], res: dict[str, Any], want: PlanInput) -> PlanRow:
    """The plan of one backend x index from its run, its collection's load and the run's machine."""
    d_run, rows = int(res["dataset"]["dim"]), int(run["rows"])
    cores_run = int(res.get("provenance", {}).get("machine", {}).get("cores") or 1)
    n, d, r = want.n, want.dim, want.replication
    row = PlanRow(run["backend"], run["index"], run.get("index_spec", run["index"]))
    f = row.figures
    at = f"n_run={rows:,}, d_run={d_run}"

    idx_b = run.get("index_size_bytes")
    mem = index_n = None
    if idx_b:
        b, rule = per_vector_bytes(idx_b / rows, d_run, d)
        index_n = b * n
        mem = index_n * r
        f["memory"] = Figure(mem, f"(index bytes/vector: {rule}) · n · replication = {b:,.0f} B · {n:,} · {r}",
                             f"index_size_bytes {idx_b:,} / rows {rows:,} ({at})")
    st = load.get("storage_bytes")
    if not idx_b and st:  # no index size (Weaviate): its vectors and graph live in its storage, held in memory
        b, rule = per_vector_bytes(st / load["rows"], d_run, d)
        mem = b * n * r
        f["memory"] = Figure(mem, f"(storage bytes/row: {rule}) · n · replication = {b:,.0f} B · {n:,} · {r}",
                             f"storage_bytes {st:,} / rows {load['rows']:,} after the load (no index size "
                             f"reported; the whole collection taken as resident), {at}")
    elif not idx_b:
        f["memory"] = Figure(None, "–", "the backend reported neither its index size nor its storage")
    if st:
        sb, rule = per_vector_bytes(st / load["rows"], d_run, d)
        disk = (sb * n + (index_n or 0)) * r
        f["disk"] = Figure(disk, f"((storage bytes/row: {rule}) · n + index) · replication = "
                                 f"({sb:,.0f} B · {n:,} + index) · {r}",
                           f"storage_bytes {st:,} / rows {load['rows']:,} after the load; index as in memory")
    else:
        f["disk"] = Figure(mem, "index bytes only (no storage figure)" if mem else "–",
                           "the backend did not report its storage size")
    rate = load.get("vectors_per_s")
    f["load_time"] = Figure(n / rate * d / d_run if rate else None, f"n / load rate · d / d_run = {n:,} / {num(rate)} vec/s"
                            f" · {d}/{d_run}", f"bulk load of {load.get('rows', 0):,} rows at {num(rate)} vec/s")
    bs = run.get("build_s")
    per = bs / rows if bs is not None else None
    f["build_time"] = Figure(per * n * d / d_run if per is not None else None,
                             f"build s/vector · n · d / d_run = {per:.3g} s · {n:,} · {d}/{d_run}" if per is not None else "–",
                             f"build_s {num(bs)} over {rows:,} rows")
    if run["index"] == "hnsw":
        row.notes.append("HNSW build grows like n·log n: the linear build time is a lower bound.")
    pt = first_point(run, want.recall)
    if pt is None:
        best = max((p.get("recall") or 0 for p in run.get("sweep", [])), default=None)
        row.notes.append(f"no sweep point reached recall {want.recall} (best {best}): no core count")
        f["cores"] = Figure(None, "–", "no sweep point reached the recall target")
        f["nodes"] = Figure(max(1, math.ceil(mem / (want.node_memory_gib * GIB))) if mem else None,
                            f"ceil(memory / {want.node_memory_gib:g} GiB)", "memory only")
        return row
    s, srule = search_scale(run["index"], rows, n)
    per_core = pt["best_qps"] / cores_run * s * d_run / d
    cores = math.ceil(want.qps / per_core)
    f["qps_per_core"] = Figure(per_core, f"best QPS / cores_run · {srule} · d_run / d = {num(pt['best_qps'])} / "
                                         f"{cores_run} · {s:.3g} · {d_run}/{d}",
                               f"{pt.get('param')}={pt.get('value')} (recall {pt['recall']:.3f}), {at}")
    f["cores"] = Figure(cores, f"ceil(qps / QPS per core) = ceil({want.qps:g} / {num(per_core)})", "QPS per core")
    by_mem = math.ceil(mem / (want.node_memory_gib * GIB)) if mem else 1
    by_cpu = math.ceil(cores / want.node_cores)
    f["nodes"] = Figure(max(by_mem, by_cpu, r),
                        f"max(ceil(memory / {want.node_memory_gib:g} GiB), ceil(cores / {want.node_cores}), "
                        f"replication) = max({by_mem}, {by_cpu}, {r})", "memory and cores above")
    return row


def make_plan(results: dict[str, Any], want: PlanInput) -> dict[str, Any]:
    """The plan for ``want`` from one results.json (its single-node targets)."""
    want.check()
    rows = []
    for run in results.get("runs", []):
        if run.get("topology") not in SINGLE:
            continue
        load = next((l for l in results.get("loads", []) if l["backend"] == run["backend"]), {})
        rows.append(plan_run(run, load, results, want))
    if not rows:
        raise InvalidArgument("the results hold no single-node index runs to plan from")
    ds = results.get("dataset", {})
    return {"schema": "vecface-plan/1", "extrapolation": True, "input": asdict(want),
            "measured": {"dataset": ds.get("name"), "n": ds.get("n"), "dim": ds.get("dim"),
                         "machine": results.get("provenance", {}).get("machine", {}),
                         "created": results.get("created"), "command": results.get("command")},
            "rows": [asdict(r) for r in rows]}


NODES_NOTE = ("Nodes = what the memory and the cores need (and at least the replication factor). Weaviate "
              "spreads one collection over its nodes itself (shards=); for pgvector and FAISS more than one "
              "node means splitting the collection across servers, which vecface does not do for them (read "
              "replicas add QPS, each holding everything).")

COLUMNS = [("memory", "bytes"), ("disk", "bytes"), ("load_time", "s"), ("build_time", "s"),
           ("qps_per_core", "num"), ("cores", "count"), ("nodes", "count")]
HEAD = ["backend/index", "memory", "disk", "load", "build", "QPS/core", "cores", "nodes"]


def table_rows(plan: dict[str, Any]) -> list[list[str]]:
    out = []
    for r in plan["rows"]:
        figs = {k: Figure(**v) for k, v in r["figures"].items()}
        out.append([f"{r['backend']}/{r['index']}"] +
                   [figs[k].show(unit) if k in figs else "–" for k, unit in COLUMNS])
    return out


def title(plan: dict[str, Any]) -> str:
    i, m = plan["input"], plan["measured"]
    return (f"Capacity plan (an extrapolation): {i['n']:,} vectors x {i['dim']}, recall@k >= {i['recall']}, "
            f"{i['qps']:g} QPS, replication {i['replication']}, nodes of {i['node_memory_gib']:g} GiB / "
            f"{i['node_cores']} cores; from a run of {m['n']:,} x {m['dim']} on {m['machine'].get('cores')} cores")


def markdown(plan: dict[str, Any]) -> str:
    lines = [f"# {title(plan)}", "", "Every figure below is extrapolated linearly from a much smaller benchmark run "
             "(see vecface/bench/plan.py); treat it as a first estimate to check with a run at scale.", "",
             NODES_NOTE, "",
             "| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD)]
    lines += ["| " + " | ".join(r) + " |" for r in table_rows(plan)]
    lines += ["", "## How each figure was computed", ""]
    for r in plan["rows"]:
        lines.append(f"### {r['backend']}/{r['index']} ({r['index_spec']})")
        for k, v in r["figures"].items():
            lines.append(f"- **{k}**: {v['formula']} — from {v['source']}")
        lines += [f"- note: {n}" for n in r["notes"]] + [""]
    return "\n".join(lines)


def write(plan: dict[str, Any], out: str | Path) -> dict[str, Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = {"json": out / "plan.json", "markdown": out / "plan.md"}
    files["json"].write_text(json.dumps(plan, indent=1))
    files["markdown"].write_text(markdown(plan))
    return files
