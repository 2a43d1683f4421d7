"""What one benchmark run does: :class:`BenchConfig` (phases, sizes, knobs) and the store options
the command line gives every backend.

Nothing here names a backend: options come from each backend class's own signature.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vecface.errors import VecfaceError
from vecface.registry import BACKENDS, backend_class

SCHEMA = "vecface-bench/1"
DEFAULT_N = 50_000
QUICK_N = 10_000
#: every phase, in the order it runs per backend; ``vecface bench overhead`` runs only "overhead"
PHASES = ("sweep", "filtered", "overhead", "baselines")
#: the query-time knob of each index kind (exact has none)
KNOB = {"hnsw": "ef_search", "ivfflat": "probes"}


@dataclass
class BenchConfig:
    backends: list[str] | None = None  # None: every registered backend that is available
    indexes: list[str] = field(default_factory=lambda: ["hnsw", "ivfflat", "exact"])
    dataset: str = "synthetic"
    n: int | None = None
    dim: int | None = None
    queries: int = 500
    exact_queries: int = 100
    k: int = 10
    concurrency: list[int] = field(default_factory=lambda: [1, 2, 4, 8])
    duration: float = 1.0
    warmup: int = 50
    filter_queries: int = 200
    batch_size: int = 5000
    baseline_rows: int = 2000
    seed: int = 0
    quick: bool = False
    out: str = "vecface-report"
    metric: str | None = None
    cache_dir: str | None = None
    collection: str = "vfbench"
    backend_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    sweep: dict[str, list[int]] | None = None  # kind -> values, overriding the defaults
    point_budget_s: float = 10.0  # a serial pass stops after this long (once min_queries are done)
    min_queries: int = 20
    stop_recall: float = 0.995  # an IVFFlat probes sweep stops once recall@k reaches this
    keep_answers: bool = False  # store every returned id/distance in the results (for tests)
    phases: list[str] = field(default_factory=lambda: list(PHASES))
    #: the price of the abstraction: index kind -> its knob's value for the vecface-vs-raw comparison
    overhead_at: dict[str, int] = field(default_factory=lambda: {"hnsw": 40})
    overhead_concurrency: list[int] = field(default_factory=lambda: list(range(1, 9)))
    overhead_queries: int = 1000
    #: seconds of throughput per path at each client count in the overhead comparison (its own knob:
    #: a ratio of two paths needs more time than one path's QPS), cut into slices of
    #: ``overhead_slice_s`` (longer where a client makes fewer than 10 calls in that time) taken
    #: A B B A ..., after one uncounted ``overhead_warmup_s`` slice per path
    overhead_duration: float = 2.0
    overhead_slice_s: float = 0.05
    overhead_warmup_s: float = 0.1
    #: extra targets on other topologies (clusters): {"backend", "label", "options"} each; the
    #: backend then also runs as before, labelled "1 node", so one run compares them
    topologies: list[dict[str, Any]] = field(default_factory=list)

    def resolved(self) -> "BenchConfig":
        unknown = [p for p in self.phases if p not in PHASES]
        if unknown:
            raise ValueError(f"unknown benchmark phase(s) {', '.join(unknown)}; phases: {', '.join(PHASES)}")
        if self.quick:
            self.queries = min(self.queries, 200)
            self.exact_queries = min(self.exact_queries, 50)
            self.duration = min(self.duration, 0.5)
            self.concurrency = [c for c in self.concurrency if c <= 2] or [1]
            self.overhead_concurrency = [c for c in self.overhead_concurrency if c <= 2] or [1]
            self.overhead_queries = min(self.overhead_queries, 200)
            self.overhead_duration = min(self.overhead_duration, 0.5)
            self.filter_queries = min(self.filter_queries, 100)
            self.baseline_rows = min(self.baseline_rows, 300)
            self.warmup = min(self.warmup, 20)
            self.point_budget_s = min(self.point_budget_s, 3.0)
            self.min_queries = min(self.min_queries, 20)
        return self

    def default_n(self) -> int | None:
        """Rows of a synthetic dataset when ``n`` is not given (files: all their rows)."""
        if self.n is None and self.dataset.startswith("synthetic"):
            return QUICK_N if self.quick else DEFAULT_N
        return self.n

    def options(self, backend: str) -> dict[str, Any]:
        """The store options for ``backend`` (those left as None dropped)."""
        return {k: v for k, v in self.backend_options.get(backend, {}).items() if v is not None}

    def targets(self, backends: list[str]) -> list[Target]:
        """What the run measures: each of ``backends`` on its own options, then each topology of a
        backend in ``backends``. A target's ``name`` is the backend, or ``backend (label)``."""
        clustered = {t["backend"] for t in self.topologies}
        out = [Target(b, "1 node" if b in clustered else None, self.options(b)) for b in backends]
        out += [Target(t["backend"], t["label"], dict(t["options"])) for t in self.topologies
                if t["backend"] in backends]
        return out


@dataclass
class Target:
    """One thing the benchmark measures: a backend on one topology (label None: as configured)."""

    backend: str
    label: str | None
    options: dict[str, Any]

    @property
    def name(self) -> str:
        return f"{self.backend} ({self.label})" if self.label else self.backend


def data_dir_options(data_dir: str | Path | None) -> dict[str, dict[str, Any]]:
    """Store options that put every registered backend's data under ``data_dir``: a backend whose
    class takes ``data_dir`` gets it; one that takes a ``path`` for its files gets
    ``<data_dir>/<backend>`` (its own default layout under vecface's data directory). Connection
    settings (DSN, URL) are read by the backends themselves from their environment variables."""
    if not data_dir:
        return {}
    out: dict[str, dict[str, Any]] = {}
    for name in BACKENDS:
        try:
            params = inspect.signature(backend_class(name).__init__).parameters
        except VecfaceError:  # not installed here: the run reports it as unavailable
            continue
        if "data_dir" in params:
            out[name] = {"data_dir": str(data_dir)}
        elif "path" in params:
            out[name] = {"path": str(Path(data_dir) / name)}
    return out
