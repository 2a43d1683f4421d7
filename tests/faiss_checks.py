"""A check shared by the FAISS storage and multi-process tests: every stored record is searchable."""

from __future__ import annotations

from pathlib import Path

import vecface


def searchable(root: Path, name: str = "c") -> tuple[int, int]:
    """(count, how many stored records a search with their own vector returns among its first 3).

    The stored ids come from the store's own listing (``ids()``), not from a search for k = count:
    k is capped at MAX_K, and a collection written for a few seconds by a fast machine holds more."""
    with vecface.open_store("faiss", name, path=root) as s:
        s.set_query_params(ef_search=128, probes=64)
        recs = s.get(s.ids())
        found = sum(r.id in {h.id for h in s.search(r.vector, k=3)} for r in recs)
        return s.count(), found
