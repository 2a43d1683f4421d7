"""``vecface bench`` and ``vecface report``: register(app) adds them to the main command line.

``bench_app`` is a sub-app whose callback runs the benchmark when no subcommand is given, so other
modules can add subcommands to it (``bench_app.command("embed")(fn)``).
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

console = Console(width=None if Console().is_terminal else 150)

bench_app = typer.Typer(
    invoke_without_command=True,
    no_args_is_help=False,
    add_completion=False,
    help="Benchmark the vector stores on one dataset and write a report (run with no subcommand).",
)

_KINDS = r"(?:exact|flat|hnsw|ivfflat|ivf)\b"


def split_indexes(text: str) -> list[str]:
    """'hnsw,ivfflat:lists=100,exact' -> ['hnsw', 'ivfflat:lists=100', 'exact'] (commas inside one
    spec's parameters, as in 'hnsw:m=32,ef_construction=128', stay with it)."""
    return [p.strip() for p in re.split(r",(?=\s*" + _KINDS + ")", text) if p.strip()]


def _ints(text: str, what: str) -> list[int]:
    try:
        vals = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise typer.BadParameter(f"{what} is a comma-separated list of integers, got {text!r}") from None
    if not vals or any(v < 1 for v in vals):
        raise typer.BadParameter(f"{what} needs positive integers")
    return vals


def summary_table(results: dict) -> Table:
    from .tables import SUMMARY_HEAD, summary_rows

    ds = results.get("dataset", {})
    t = Table(title=f"vecface bench: {ds.get('name')} {ds.get('n', 0):,} x {ds.get('dim')}, "
                    f"k={results.get('params', {}).get('k')}")
    for h in SUMMARY_HEAD:
        t.add_column(h, justify="left" if h == "backend/index" else "right")
    for row in summary_rows([results]):
        t.add_row(*(escape(c) for c in row))
    return t


@bench_app.callback(invoke_without_command=True)
def bench(
    ctx: typer.Context,
    backends: Optional[str] = typer.Option(None, "--backends", help="Comma-separated backends (default: every available one)."),
    index: str = typer.Option("hnsw,ivfflat,exact", "--index", help="Index kinds, e.g. 'hnsw,ivfflat,exact' or 'hnsw:m=32,ef_construction=128'."),
    dataset: str = typer.Option("synthetic", "--dataset", help="synthetic[:rank=..,spread=..], a .npy/.fvecs/.hdf5 file, or images:DIR."),
    n: Optional[int] = typer.Option(None, "--n", help="Base vectors (synthetic default 50,000; 10,000 with --quick; files: all)."),
    dim: Optional[int] = typer.Option(None, "--dim", help="Dimension of synthetic data (default 512)."),
    queries: Optional[int] = typer.Option(None, "--queries", help="Queries per sweep point (default 500; exact search uses at most --exact-queries)."),
    exact_queries: int = typer.Option(100, "--exact-queries", help="Queries for exact (brute-force) search, which is slow."),
    k: int = typer.Option(10, "--k", help="Neighbours per query (recall@k)."),
    concurrency: str = typer.Option("1,2,4,8", "--concurrency", help="Concurrent clients for the throughput runs."),
    duration: Optional[float] = typer.Option(None, "--duration", help="Seconds per throughput measurement (default 1)."),
    out: Path = typer.Option(Path("vecface-report"), "--out", help="Report directory."),
    quick: bool = typer.Option(False, "--quick", help="A small, fast run (10k vectors, fewer sweep points)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the synthetic data."),
    batch_size: int = typer.Option(5000, "--batch-size", help="Rows per bulk upsert batch."),
    data_dir: Optional[str] = typer.Option(None, "--data-dir", help="vecface data directory (default: $VECFACE_HOME)."),
    weaviate_nodes: Optional[int] = typer.Option(None, "--weaviate-nodes", min=1, help="Also measure a local Weaviate cluster of N nodes on 127.0.0.1 (started, then stopped if it was not running)."),
    replication: Optional[int] = typer.Option(None, "--replication", min=1, help="Weaviate cluster replication factor (default: --weaviate-nodes)."),
    consistency: str = typer.Option("quorum", "--consistency", help="Weaviate cluster consistency level: one, quorum or all."),
    pg_replicas: Optional[int] = typer.Option(None, "--pg-replicas", min=1, help="Also measure the embedded PostgreSQL with N streaming read replicas (searches on the replicas)."),
    weaviate_urls: Optional[str] = typer.Option(None, "--weaviate-urls", help="Also measure a Weaviate cluster you run: comma-separated node URLs."),
    weaviate_grpc_ports: Optional[str] = typer.Option(None, "--weaviate-grpc-ports", help="gRPC port of each --weaviate-urls node (comma-separated)."),
    pg_dsn: Optional[str] = typer.Option(None, "--pg-dsn", help="Also measure a PostgreSQL you run: the primary's DSN (with --pg-read-dsns)."),
    pg_read_dsns: Optional[str] = typer.Option(None, "--pg-read-dsns", help="Comma-separated DSNs of the primary's hot standbys (searches go there)."),
) -> None:
    """Run the benchmark: every available backend x HNSW, IVFFlat and exact on the synthetic dataset by default.
    With cluster options, a backend is measured on one node and on the cluster in the same run."""
    if ctx.invoked_subcommand is not None:
        return
    from vecface.errors import VecfaceError

    from .config import BenchConfig, data_dir_options
    from .topology import clusters

    cfg = BenchConfig(
        backends=_names(backends), indexes=split_indexes(index), dataset=dataset, n=n, dim=dim,
        queries=queries or 500, exact_queries=exact_queries, k=k,
        concurrency=_ints(concurrency, "--concurrency"), duration=duration if duration is not None else 1.0,
        out=str(out), quick=quick, seed=seed, batch_size=batch_size, backend_options=data_dir_options(data_dir),
    )
    try:
        with clusters(data_dir, weaviate_nodes=weaviate_nodes, replication=replication, consistency=consistency,
                      pg_replicas=pg_replicas, weaviate_urls=_names(weaviate_urls),
                      weaviate_grpc_ports=_ints(weaviate_grpc_ports, "--weaviate-grpc-ports") if weaviate_grpc_ports else None,
                      pg_dsn=pg_dsn, pg_read_dsns=_names(pg_read_dsns),
                      log=lambda m: console.print(escape(m), style="dim")) as targets:
            cfg.topologies = targets
            _run_and_report(cfg, out)
    except VecfaceError as e:
        console.print(f"[red]error:[/] {escape(str(e))}")
        raise typer.Exit(2) from None


def _names(text: Optional[str]) -> Optional[list[str]]:
    return [b.strip() for b in text.split(",") if b.strip()] if text else None


def _run_and_report(cfg, out: Path) -> dict:
    """Run ``cfg`` with progress bars, checkpointing results.partial.json after every backend x index,
    write the report and print its tables."""
    from .progress import Progress
    from .report import jsonable, write_report
    from .runner import run_benchmark

    t = time.perf_counter()
    partial = Path(out) / "results.partial.json"

    def checkpoint(res: dict) -> None:  # what a long run has measured so far, if it is interrupted
        partial.parent.mkdir(parents=True, exist_ok=True)
        partial.write_text(json.dumps(jsonable({**res, "partial": True}), indent=1))

    with Progress(console=Console(stderr=True)) as p:
        results = run_benchmark(cfg, p, checkpoint)
    files = write_report(results, out)
    partial.unlink(missing_ok=True)
    if "sweep" in cfg.phases:
        console.print(summary_table(results))
    if results.get("overhead"):
        console.print(overhead_table(results))
    for s in results.get("skipped", []):
        console.print(f"[yellow]not measured[/] {escape(s['backend'])}"
                      f"{'/' + escape(s['index']) if s.get('index') else ''}: {escape(s['reason'])}")
    console.print(f"wall time {time.perf_counter() - t:.0f} s. Report: {files['html']} (also {files['markdown'].name}, "
                  f"{files['results'].name}, plots/ in {out})")
    return results


def overhead_table(results: dict) -> Table:
    from .tables import OVERHEAD_HEAD, overhead_rows

    t = Table(title="vecface overhead vs raw client (ratios vecface/raw: latency > 1 and QPS < 1 cost)")
    for h in OVERHEAD_HEAD:
        t.add_column(h, justify="left" if h in ("backend/index", "note") else "right")
    for row in overhead_rows([results]):
        t.add_row(*(escape(c) for c in row))
    return t


@bench_app.command("overhead")
def overhead(
    backends: Optional[str] = typer.Option(None, "--backends", help="Comma-separated backends (default: every available one)."),
    index: str = typer.Option("hnsw:m=16,ef_construction=64", "--index", help="The index the comparison runs on."),
    ef_search: int = typer.Option(40, "--ef-search", help="The index's query knob for both paths: HNSW ef_search (IVFFlat: probes)."),
    dataset: str = typer.Option("synthetic", "--dataset", help="synthetic[:rank=..,spread=..], a .npy/.fvecs/.hdf5 file, or images:DIR."),
    n: Optional[int] = typer.Option(None, "--n", help="Base vectors (synthetic default 50,000)."),
    dim: Optional[int] = typer.Option(None, "--dim", help="Dimension of synthetic data (default 512)."),
    queries: int = typer.Option(1000, "--queries", help="Queries, each run through both paths."),
    k: int = typer.Option(10, "--k", help="Neighbours per query."),
    concurrency: str = typer.Option("1,2,3,4,5,6,7,8", "--concurrency", help="Concurrent clients for the QPS comparison."),
    duration: float = typer.Option(2.0, "--duration", help="Seconds of throughput per path and client count (in slices of 0.05 s or more, A B B A ..., after a warm-up slice)."),
    out: Path = typer.Option(Path("vecface-report/overhead"), "--out", help="Report directory."),
    seed: int = typer.Option(0, "--seed", help="Seed of the synthetic data."),
    batch_size: int = typer.Option(5000, "--batch-size", help="Rows per bulk upsert batch."),
    data_dir: Optional[str] = typer.Option(None, "--data-dir", help="vecface data directory (default: $VECFACE_HOME)."),
) -> None:
    """Only the price of the abstraction: vecface's search vs the raw client call on the same index and queries."""
    from .config import BenchConfig, data_dir_options

    specs = split_indexes(index)
    kinds = {s.split(":", 1)[0].strip() for s in specs}
    cfg = BenchConfig(
        backends=_names(backends), indexes=specs, dataset=dataset, n=n, dim=dim, queries=queries, k=k,
        overhead_duration=duration, out=str(out), seed=seed, batch_size=batch_size, backend_options=data_dir_options(data_dir),
        phases=["overhead"], overhead_at={kind: ef_search for kind in kinds},
        overhead_concurrency=_ints(concurrency, "--concurrency"), overhead_queries=queries,
    )
    _run_and_report(cfg, out)


def report_cmd(
    results: List[Path] = typer.Argument(..., help="results.json files (several are merged into one comparison)."),
    out: Path = typer.Option(Path("vecface-report"), "--out", help="Report directory."),
) -> None:
    """Re-render a report from results.json (merging several runs into one comparison)."""
    from .report import load_results, render

    for r in results:
        if not r.exists():
            raise typer.BadParameter(f"{r} does not exist")
    loaded = load_results(results)
    files = render(loaded, out)
    console.print(f"Report: {files['html']} (and {files['markdown'].name}, plots/) from {len(loaded)} run(s).")


def plan_cmd(
    n: int = typer.Option(..., "--n", min=1, help="Vectors to plan for, e.g. 100000000."),
    dim: int = typer.Option(..., "--dim", min=1, help="Their dimension, e.g. 512 (CLIP) or 128 (dlib faces)."),
    recall: float = typer.Option(0.95, "--recall", min=0.0, max=1.0, help="recall@k target."),
    qps: float = typer.Option(500.0, "--qps", min=0.0, help="Queries per second to serve."),
    replication: int = typer.Option(1, "--replication", min=1, help="Copies of every vector (multiplies memory and disk)."),
    node_memory: float = typer.Option(64.0, "--node-memory", help="GiB of memory per node."),
    node_cores: int = typer.Option(16, "--node-cores", min=1, help="Cores per node."),
    results: Path = typer.Option(Path("vecface-report/results.json"), "--results", help="results.json of a vecface bench run."),
    out: Optional[Path] = typer.Option(None, "--out", help="Where plan.json and plan.md go (default: plan/ beside --results)."),
) -> None:
    """A capacity plan extrapolated from a benchmark run: memory, disk, load and build time, cores and nodes."""
    from vecface.errors import VecfaceError

    from .plan import HEAD, NODES_NOTE, PlanInput, make_plan, table_rows, title, write

    if not results.exists():
        raise typer.BadParameter(f"{results} does not exist: run 'vecface bench' first (or give --results)")
    try:
        plan = make_plan(json.loads(results.read_text()),
                         PlanInput(n, dim, recall, qps, replication, node_memory, node_cores))
    except (VecfaceError, KeyError, ValueError) as e:
        console.print(f"[red]error:[/] cannot plan from {escape(str(results))}: {escape(str(e))}")
        raise typer.Exit(2) from None
    t = Table(title=title(plan))
    for h in HEAD:
        t.add_column(h, justify="left" if h == "backend/index" else "right")
    for row in table_rows(plan):
        t.add_row(*(escape(c) for c in row))
    console.print(t)
    for r in plan["rows"]:
        for note in r["notes"]:
            console.print(f"[dim]{escape(r['backend'])}/{r['index']}: {escape(note)}[/]")
    console.print(f"[dim]{escape(NODES_NOTE)}[/]")
    files = write(plan, out or results.parent / "plan")
    console.print(f"An extrapolation from {plan['measured']['n']:,} measured vectors; formulas and sources in "
                  f"{files['markdown']} (and {files['json'].name}).")


def register(app: typer.Typer) -> None:
    """Add ``bench`` (with its subcommands), ``report`` and ``plan`` to the main ``vecface`` app."""
    app.add_typer(bench_app, name="bench")
    app.command("report")(report_cmd)
    app.command("plan")(plan_cmd)
