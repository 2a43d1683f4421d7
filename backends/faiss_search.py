"""How the FAISS collection answers a query: query parameters, filter bitmaps, the choice between
the index with a selector and an exact scan of the subset, and the conversion to vecface's hits.

Filtered search is native: the filter becomes a boolean mask over the slots from the in-memory
columns, packed into a bitmap and given to FAISS as ``IDSelectorBitmap`` inside
``SearchParametersHNSW`` / ``SearchParametersIVF``. Two strategies:

- ``selector``: the index itself, skipping rows outside the bitmap. A graph (HNSW) walk still visits
  the rows the filter drops, so its cost grows about as 1 / (fraction kept), and an inverted-list
  search only sees the kept rows of the lists it probes, so its recall falls with the fraction.
- ``exact``: an exact scan of the kept rows, straight from the flat vector storage (the HNSW
  index's own ``storage``, an ``IndexFlat``; for IVF the memory-mapped vector file), distances
  computed only for rows in the bitmap. It costs a bitmap test per stored row plus one distance per
  kept row, and its recall is 1.

``auto`` (the default) picks by cost. An unfiltered search computes about ``V`` distances (HNSW:
efSearch x 2M, the neighbours of the nodes it expands; IVF: nprobe x rows per list; flat: every
row). With a selector keeping a fraction f = kept / n, a graph walk computes about V / f; the exact
scan computes ``kept``. So the exact scan is cheaper when kept < V / f, that is when
``kept <= sqrt(V x n)``, or when it keeps at most ``EXACT_ROWS`` rows. At 50k rows, HNSW M 16,
efSearch 40: exact up to about 8,000 rows (16%); at 1M rows up to about 36,000 (3.6%).

The exact scan reads a contiguous copy of the kept rows, gathered from the vector file on first use
and kept per filter until the next write (at most ``SUBSET_CACHE_BYTES`` in all); a subset larger
than that is scanned in place with the bitmap (the flat storage of a flat or HNSW index, where
FAISS tests the bitmap per row and computes only the kept rows' distances).
"""

from __future__ import annotations

import json
import math
from typing import Any, ClassVar

import numpy as np

import faiss

from vecface.types import DEFAULT_EF_SEARCH, DEFAULT_PROBES, HNSW, Hit, IVFFlat, Metric

#: a filter keeping at most this many rows is always answered by an exact scan of them
EXACT_ROWS = 2_000
#: 'post' asks an HNSW index for POST_WIDEN x k / (fraction kept) unfiltered results ...
POST_WIDEN = 3.0
#: ... when that is at most POST_MAX_EF x efSearch (so it costs about one unfiltered search)
POST_MAX_EF = 2.0
#: memory for the gathered rows of recent filters (the exact strategy), all filters together
SUBSET_CACHE_BYTES = 256 << 20
#: batches of at most this many queries run on the calling thread alone (OpenMP start-up costs more)
SERIAL_QUERIES = 4

_F32, _I64, _ptr = np.float32, np.int64, faiss.swig_ptr


class Selection:
    """A filter's mask as a FAISS bitmap selector (kept alive together with its bits)."""

    __slots__ = ("mask", "bits", "sel", "count")

    def __init__(self, mask: np.ndarray):
        self.mask = mask
        self.count = int(mask.sum())
        self.bits = np.packbits(mask, bitorder="little")
        self.sel = faiss.IDSelectorBitmap(len(mask), faiss.swig_ptr(self.bits))


def query_params(index: Any, spec: Any, ef_search: int | None, probes: int | None, k: int,
                 sel: Any = None) -> Any:
    """The SearchParameters object for one search (None: the index's defaults, no selector)."""
    if isinstance(spec, HNSW):
        p = faiss.SearchParametersHNSW()
        # HNSW returns at most efSearch results: never fewer than k
        p.efSearch = max(ef_search or DEFAULT_EF_SEARCH, k)
    elif isinstance(spec, IVFFlat):
        p = faiss.SearchParametersIVF()
        p.nprobe = min(probes or DEFAULT_PROBES, index.nlist)
    elif sel is None:
        return None
    else:
        p = faiss.SearchParameters()
    if sel is not None:
        p.sel = sel
    return p


def visits(index: Any, spec: Any, ef_search: int | None, probes: int | None) -> float:
    """About how many distances an unfiltered search computes (see the module's rule)."""
    if isinstance(spec, HNSW):
        return (ef_search or DEFAULT_EF_SEARCH) * 2 * spec.m
    if isinstance(spec, IVFFlat):
        return min(probes or DEFAULT_PROBES, index.nlist) * index.ntotal / max(1, index.nlist)
    return float(index.ntotal)


def choose(strategy: str | None, kept: int, total: int, cost: float, k: int, spec: Any,
           ef_search: int | None) -> str:
    """'exact', 'post' or 'selector' for a filter that keeps ``kept`` of ``total`` slots, where an
    unfiltered search computes about ``cost`` distances (the module's rule)."""
    if strategy in ("selector", "exact", "post"):
        return strategy
    if kept <= max(EXACT_ROWS, math.sqrt(cost * total)):
        return "exact"
    if isinstance(spec, HNSW) and post_k(k, kept / max(1, total)) <= POST_MAX_EF * (ef_search or DEFAULT_EF_SEARCH):
        return "post"
    return "selector"


def post_k(k: int, fraction: float) -> int:
    """How many unfiltered results the 'post' strategy asks for, so that k of them pass the filter
    (a margin of POST_WIDEN: with half the rows kept, 60 for k=10; fewer than 10 of 60 pass with
    probability below 1e-6 when the filter is independent of the vectors, and the wider search
    also gives the graph walk the ef that keeps recall)."""
    return int(math.ceil(POST_WIDEN * k / max(fraction, 1e-9)))


def post_filter(dist: np.ndarray, labels: np.ndarray, mask: np.ndarray, k: int
                ) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """The first k results of each row that pass ``mask`` (order kept), and the rows with fewer."""
    ok = (labels >= 0) & mask[np.maximum(labels, 0)]
    out_d = np.zeros((len(labels), k), dtype=dist.dtype)
    out_l = np.full((len(labels), k), -1, dtype=labels.dtype)
    short = []
    for r in range(len(labels)):
        idx = np.flatnonzero(ok[r])[:k]
        if len(idx) < k:
            short.append(r)
        out_d[r, : len(idx)] = dist[r, idx]
        out_l[r, : len(idx)] = labels[r, idx]
    return out_d, out_l, short


class Subset:
    """The kept rows of one filter gathered into a flat index of their own, and their slots."""

    __slots__ = ("slots", "index", "nbytes")

    def __init__(self, selection: Selection, rows: np.ndarray, metric: Metric):
        self.slots = np.flatnonzero(selection.mask)
        self.index = faiss.IndexFlat(rows.shape[1], metric.faiss_metric)
        self.index.add(np.ascontiguousarray(rows[self.slots]))
        self.nbytes = self.slots.nbytes + len(self.slots) * rows.shape[1] * 4

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        dist, pos = self.index.search(queries, k)
        return dist, np.where(pos >= 0, self.slots[np.maximum(pos, 0)], -1)


def filtered_ef(ef_search: int | None, fraction: float) -> int:
    """efSearch for a graph walk with a selector: the walk keeps only the kept rows among those it
    visits, so the same ef finds a poorer set; widen it by 1 / sqrt(fraction kept), at most 4x
    (at 50% kept, ef 40 becomes 57: recall@10 0.893 -> about 0.92 on the bench's data)."""
    ef = ef_search or DEFAULT_EF_SEARCH
    return int(min(ef * 4, math.ceil(ef / math.sqrt(max(fraction, 1e-9)))))


def on_this_thread(fn: Any, n_queries: int) -> Any:
    """Run ``fn()`` with OpenMP limited to the calling thread for small batches
    (omp_set_num_threads sets the calling thread's own setting)."""
    if n_queries > SERIAL_QUERIES:
        return fn()
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        return fn()
    finally:
        faiss.omp_set_num_threads(threads)


def alone(spec: Any, n_queries: int) -> bool:
    """Whether FAISS searches ``n_queries`` on the calling thread by itself: one query on an HNSW or
    IVF index (their searches open an OpenMP team only for more than one query; an exact scan splits
    even one query's rows between threads). The thread setting is then left alone: reading and
    restoring it cost more than a tenth of the overhead budget of a 0.17 ms search."""
    return n_queries == 1 and spec.__class__ in _SELF_SERIAL


_SELF_SERIAL = (HNSW, IVFFlat)


def raw_searcher(view: Any, qp: Any, k: int) -> Any:
    """``f(vector) -> labels``: FAISS's own ``index.search`` on the view's index with the same
    efSearch / nprobe, one thread, nothing of vecface around it (the overhead benchmark's baseline)."""
    index = view.index
    kk = max(1, min(int(k), index.ntotal))
    params = query_params(index, view.spec, qp.ef_search, qp.probes, kk)

    if alone(view.spec, 1):  # FAISS's own call, nothing around it
        def search(vector: Any) -> np.ndarray:
            return index.search(np.ascontiguousarray(vector, dtype=np.float32).reshape(1, -1), kk, params=params)[1][0]
    else:
        def search(vector: Any) -> np.ndarray:
            q = np.ascontiguousarray(vector, dtype=np.float32).reshape(1, -1)
            return on_this_thread(lambda: index.search(q, kk, params=params), 1)[1][0]

    return search


def exact_scan(index: Any, spec: Any, subset: Subset | None, flat_rows: Any, queries: np.ndarray, k: int,
               selection: Selection, metric: Metric) -> tuple[np.ndarray, np.ndarray]:
    """Exact search over the slots in ``selection``, in FAISS's raw score convention: over the
    gathered ``subset`` when there is one, else in place."""
    if subset is not None:
        return subset.search(queries, k)
    if isinstance(spec, IVFFlat):  # no flat storage inside an IVF index: gather (uncached)
        return Subset(selection, flat_rows(len(selection.mask)), metric).search(queries, k)
    flat = faiss.downcast_index(index.storage) if isinstance(spec, HNSW) else index
    p = faiss.SearchParameters()
    p.sel = selection.sel
    return flat.search(queries, k, params=p)


class Searcher:
    """One store's way to answer queries over its current view (columns, vector file, index), with
    the filter selections, gathered subsets and search parameters it reuses until the next change."""

    def __init__(self) -> None:
        self.cache: dict[Any, Any] = {}
        self._hit: type = _Hit

    def clear(self) -> None:
        self.cache.clear()

    def search(self, view: Any, qp: Any, metric: Metric, queries: np.ndarray, k: int,
               flt: dict[str, Any] | None) -> list[list[Hit]]:
        cols = view.cols
        if not flt and cols.alive_count == cols.n:  # the common case, first and shortest
            kk = min(k, cols.n)
            if kk == 0:
                return [[] for _ in range(len(queries))]
            params, one_alone = self.cache.get(kk) or self._params(view, qp, kk)
            if one_alone and len(queries) == 1:
                # FAISS's search_c, which index.search calls after its Python-level checks and output
                # allocation: the query is already a C-contiguous (1, d) float32 array (as_query,
                # as_matrix), so those checks only repeated (1 us in a warm loop, about 3 after a walk)
                dist, labels = np.empty((1, kk), _F32), np.empty((1, kk), _I64)
                view.index.search_c(1, _ptr(queries), kk, _ptr(dist), _ptr(labels), params)
                slots = labels.tolist()[0]
                make = self._hit
                if slots[-1] >= 0 and metric is Metric.COSINE and make._texts is cols.meta:
                    # one query's k cosine hits, _hits' own first case written out here: after the
                    # graph walk has evicted the caches each Python call costs 1-2 us, a tenth of
                    # the whole budget of vecface's own time per search; map calls the hit class
                    # from C, without a comprehension's frame (about 0.8 us less)
                    sims = dist.tolist()[0]
                    return [list(map(make, cols.ids[labels].tolist()[0], [1.0 - x for x in sims], sims, slots))]
            else:
                dist, labels = on_this_thread(lambda: view.index.search(queries, kk, params=params), len(queries))
            return self._hits(cols, dist, labels, metric)
        # a filter, or dead slots: a bitmap of the slots that may be returned
        key = json.dumps(flt, sort_keys=True, default=lambda r: [r.gte, r.lte]) if flt else None
        sel = self._selection(cols, key, flt)
        kk = min(k, sel.count)  # never allocate for more
        if kk == 0:
            return [[] for _ in range(len(queries))]
        cost = visits(view.index, view.spec, qp.ef_search, qp.probes)
        how = choose(qp.filter_strategy, sel.count, cols.n, cost, kk, view.spec, qp.ef_search)
        if how == "exact":
            sub = self._subset(view, key, sel, metric)
            dist, labels = on_this_thread(lambda: exact_scan(
                view.index, view.spec, sub, view.vectors.rows, queries, kk, sel, metric), len(queries))
        else:
            dist, labels = self._index_search(view, qp, queries, kk, sel, how)
        return self._hits(cols, dist, labels, metric)

    def _params(self, view: Any, qp: Any, k: int) -> tuple[Any, bool]:
        """The unfiltered search's parameters for ``k``, and whether one query runs :func:`alone`
        (made once per change; the hot path reads ``cache[k]`` itself first)."""
        got = self.cache.get(k)
        if got is None:
            got = self.cache[k] = (query_params(view.index, view.spec, qp.ef_search, qp.probes, k), alone(view.spec, 1))
        return got

    def _index_search(self, view: Any, qp: Any, queries: np.ndarray, k: int, sel: Selection, how: str
                      ) -> tuple[np.ndarray, np.ndarray]:
        """The index with the filter: 'post' (unfiltered, widened, then the bitmap; rows that find
        fewer than k go on to) 'selector' (the bitmap inside the walk, ef widened)."""
        rows = np.arange(len(queries))
        fraction = sel.count / max(1, view.cols.n)
        if how == "post":
            wide = min(post_k(k, fraction), view.index.ntotal)
            params = query_params(view.index, view.spec, qp.ef_search, qp.probes, wide)
            d, lab = on_this_thread(lambda: view.index.search(queries, wide, params=params), len(queries))
            dist, labels, short = post_filter(d, lab, sel.mask, k)
            if not short:
                return dist, labels
            rows = np.asarray(short)
        else:
            dist = np.zeros((len(queries), k), dtype=np.float32)
            labels = np.full((len(queries), k), -1, dtype=np.int64)
        params = query_params(view.index, view.spec, filtered_ef(qp.ef_search, fraction), qp.probes, k, sel.sel)
        sub = np.ascontiguousarray(queries[rows])
        dist[rows], labels[rows] = on_this_thread(lambda: view.index.search(sub, k, params=params), len(sub))
        return dist, labels

    def _selection(self, cols: Any, key: str | None, flt: dict[str, Any] | None) -> Selection:
        sel = self.cache.get(("sel", key))
        if sel is None:
            sel = self.cache[("sel", key)] = Selection(cols.mask(flt))
        return sel

    def _subset(self, view: Any, key: str | None, sel: Selection, metric: Metric) -> Subset | None:
        """The filter's kept rows gathered for the exact scan (None: too large to keep)."""
        sub = self.cache.get(("sub", key))
        if sub is None:
            need = sel.count * (view.vectors.dim * 4 + 8)
            if need > SUBSET_CACHE_BYTES:
                return None
            held = [(k, v) for k, v in list(self.cache.items()) if isinstance(v, Subset)]
            if sum(v.nbytes for _, v in held) + need > SUBSET_CACHE_BYTES:
                for k, _ in held:
                    self.cache.pop(k, None)
            sub = self.cache[("sub", key)] = Subset(sel, view.vectors.rows(len(sel.mask)), metric)
        return sub

    def _hits(self, cols: Any, raw: np.ndarray, labels: np.ndarray, metric: Metric) -> list[list[Hit]]:
        """FAISS's scores and slots as Hits: ids by one fancy index; the metadata is left in the
        columns' JSON texts until a hit's ``metadata`` is read (nothing parsed, copied or even touched
        for a caller that only wants ids and distances). Rows are read as Python lists (one
        conversion per array, no numpy scalar per hit)."""
        make = self._hit  # the hit class reading this columns' texts, made again when they change
        if make._texts is not cols.meta:
            make = self._hit = type("_Hit", (_Hit,), {"__slots__": (), "_texts": cols.meta})
        out = []
        # every query's ids by one fancy index (a missing result's -1 reads the last id: cut below)
        for srow, slots, ids in zip(raw.tolist(), labels.tolist(), cols.ids[labels].tolist()):
            if slots[-1] < 0:  # FAISS puts the missing results last
                n = slots.index(-1)
                slots, srow, ids = slots[:n], srow[:n], ids[:n]
            if metric is Metric.COSINE:   # the score is the cosine similarity
                out.append([make(i, 1.0 - x, x, s) for i, x, s in zip(ids, srow, slots)])
            elif metric is Metric.IP:     # the score is the inner product
                out.append([make(i, -x, x, s) for i, x, s in zip(ids, srow, slots)])
            else:                         # the score is the squared distance
                out.append([make(i, math.sqrt(max(x, 0.0)), None, s) for i, x, s in zip(ids, srow, slots)])
        return out


class _Hit(Hit):
    """A FAISS hit: its record's metadata is ``_texts[slot]``, decoded the first time it is read.
    ``_texts`` (the columns' JSON texts, which keep a slot's text until the epoch ends) is held by a
    subclass made per columns (in :meth:`Searcher._hits`), so a hit stores only its slot."""

    __slots__ = ("_slot",)
    _texts: ClassVar[list] = []

    def __init__(self, id: str, distance: float, similarity: float | None, slot: int):
        # _meta stays unset until the metadata is first read (one store less per hit)
        self.id = id
        self.distance = distance
        self.similarity = similarity
        self._slot = slot

    @Hit.metadata.getter  # Hit's own setter kept
    def metadata(self) -> dict[str, Any]:
        try:
            return self._meta
        except AttributeError:
            meta = self._meta = json.loads(self._texts[self._slot])
            return meta

    def __reduce__(self) -> tuple:
        # pickled or copied as a plain Hit with its own metadata, never with every record's text
        return Hit, (self.id, self.distance, self.similarity, self.metadata)
