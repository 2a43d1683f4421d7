"""Find stored objects that Weaviate's vector index does not return, and re-index them.

Why this is needed (issue 14, item 3): after weaviate-server 1.38 is killed (SIGKILL) during a
batch import, the objects of the last batches acknowledged before the kill are in its object store
(``count()`` and ``get()`` see them) but not in the HNSW graph it restores from its commit log on
restart (tests/test_weaviate_crash.py: 90-100 of 3,000 objects, always the batch acknowledged just
before the kill). Re-sending the same objects does not repair that: since Weaviate 1.24 an update
whose vector is unchanged keeps its doc id and skips the vector index (weaviate/weaviate PR #3963),
so the object stays out of the graph for good and a search never returns it.

Detect: every object is searched with its own vector (unfiltered ``near_vector``, ``k`` results):
an indexed object comes back (at distance 0) unless more than ``k`` objects share its vector. A
filtered search cannot tell, as Weaviate answers a small filter by a flat scan of the stored vectors.

Repair: each missing object is written twice, first with its vector moved by one float step in
one component and then with its own vector again: both writes change the vector, so Weaviate
gives the object a new doc id and indexes it each time, and the object is never absent (a delete
and re-insert would leave a window in which a crash loses it).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import numpy as np

from vecface.store import CheckReport

from . import weaviate_schema as schema
from .weaviate_schema import VECTOR

PAGE = 1000  # objects read per cursor page
PROBE_K = 10  # results per self-search
# an object a self-search misses is searched again this wide (HNSW's ef is at least the limit) before
# it counts as missing: a graph search is approximate, and a narrow one can pass by an indexed object
RECHECK_K = 200
THREADS = 4  # concurrent self-searches
SAME = 1e-6  # distances below this are "the same vector"


def _page(store: Any, after: Any) -> list[Any]:
    res = store._coll().query.fetch_objects(limit=PAGE, after=after, include_vector=True,
                                            return_properties=list(schema.PROPERTY_NAMES))
    return list(res.objects)


def _missing(coll: Any, objects: list[Any], k: int) -> list[Any]:
    """The objects of one page that a search with their own vector does not return."""

    def found_within(o: Any, limit: int) -> bool:
        res = coll.query.near_vector(near_vector=o.vector[VECTOR], limit=limit, target_vector=VECTOR,
                                     return_metadata=schema.DISTANCE, return_properties=[])
        if any(h.uuid == o.uuid for h in res.objects):
            return True
        # limit other objects with this very vector: it cannot be told apart, count it as found
        return len(res.objects) >= limit and all(abs(h.metadata.distance or 0.0) < SAME for h in res.objects)

    def found(o: Any) -> bool:
        return found_within(o, k) or found_within(o, max(k, RECHECK_K))

    with ThreadPoolExecutor(THREADS) as pool:
        return [o for o, ok in zip(objects, pool.map(found, objects)) if not ok]


def _rewrite(store: Any, objects: list[Any]) -> None:
    """Write each object with a vector one float step away, then with its own vector again."""
    for nudge in (True, False):
        batch = []
        for o in objects:
            vec = np.asarray(o.vector[VECTOR], dtype=np.float32)
            if nudge:
                vec = vec.copy()
                vec[0] = np.nextafter(vec[0], np.float32(np.inf), dtype=np.float32)
            props = {k: v for k, v in o.properties.items() if v is not None}
            batch.append((o.uuid, props, vec))
        store._import(store._cls, batch, len(batch))


def check(store: Any, *, repair: bool = False, progress: Callable[[int], None] | None = None,
          k: int = PROBE_K) -> CheckReport:
    """Compare every stored object with what the vector index returns; optionally re-index the missing."""
    with store._lock:
        store._apply_query_params()
        coll = store._coll()
        stored = 0
        missing: list[Any] = []
        after = None
        while page := _page(store, after):
            after = page[-1].uuid
            stored += len(page)
            missing += _missing(coll, page, k)
            if progress is not None:
                progress(len(page))
        ids = [str(o.properties.get("vid")) for o in missing]
        if not (repair and missing):
            return CheckReport(stored=stored, unsearchable=ids, repaired=[], still_unsearchable=ids)
        for start in range(0, len(missing), PAGE):
            _rewrite(store, missing[start:start + PAGE])
        # the repaired objects, read back and searched again
        again = [o for start in range(0, len(missing), PAGE)
                 for o in store._coll().query.fetch_objects(
                     filters=_by_ids([m.uuid for m in missing[start:start + PAGE]]), limit=PAGE,
                     include_vector=True, return_properties=["vid"]).objects]
        still = [str(o.properties.get("vid")) for o in _missing(coll, again, k)]
        return CheckReport(stored=stored, unsearchable=ids, repaired=[i for i in ids if i not in set(still)],
                           still_unsearchable=still)


def _by_ids(uuids: list[Any]):
    from weaviate.classes.query import Filter

    return Filter.by_id().contains_any([str(u) for u in uuids])


def repair_all(url: str, grpc_port: int, api_key: str | None = None) -> dict[str, CheckReport]:
    """Check and repair every vecface collection of one server (after it was restarted from a crash).

    Opens each collection by URL, so it can run while the local supervisor holds its start lock."""
    from vecface.registry import backend_class, open_store

    names = backend_class("weaviate")._collection_names(url=url, grpc_port=grpc_port, api_key=api_key)
    out = {}
    for name in sorted(names):
        with open_store("weaviate", name, url=url, grpc_port=grpc_port, api_key=api_key) as store:
            out[name] = store.check(repair=True)
    return out


def repair_after_crash(info: Any) -> None:
    """The local supervisor's hook (``weaviate_server.after_crash_restart``): repair every collection
    of a server restarted on data whose previous server died; the outcome goes to the server's log."""
    import warnings

    from vecface.errors import VecfaceError

    try:
        reports = repair_all(info.url, info.grpc_port)
        line = "; ".join(f"{name}: {len(r.unsearchable)} of {r.stored} unsearchable, {len(r.repaired)} repaired"
                         for name, r in reports.items()) or "no collections"
    except VecfaceError as e:
        line = f"failed: {e}"
        warnings.warn(f"vecface could not check the Weaviate indexes after a crash ({e}); "
                      "run: vecface check COLLECTION --backend weaviate --repair", stacklevel=2)
    with open(info.log_path, "a") as log:
        log.write(f"\n==== vecface index check after the previous server died: {line}\n")
