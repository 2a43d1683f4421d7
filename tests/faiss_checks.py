"""A check shared by the FAISS storage and multi-process tests: every stored record is searchable."""

from __future__ import annotations

import shutil
from pathlib import Path

import vecface
from vecface import Exact


def searchable(root: Path, name: str = "c") -> tuple[int, int]:
    """(count, how many stored records a search with their own vector returns among its first 3).

    The stored ids are listed exactly by a copy of the collection rebuilt as a flat index (an
    approximate index may not reach every node for k = count)."""
    copy = root / "_listing"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(root / name, copy / name)
    with vecface.open_store("faiss", name, path=copy) as flat:
        flat.build_index(Exact())
        n = flat.count()
        ids = [h.id for h in flat.search([1.0] * flat.dim, k=max(1, n))] if n else []
    try:
        with vecface.open_store("faiss", name, path=root) as s:
            s.set_query_params(ef_search=128, probes=64)
            recs = s.get(ids)
            found = sum(r.id in {h.id for h in s.search(r.vector, k=3)} for r in recs)
            return s.count(), found
    finally:
        shutil.rmtree(copy, ignore_errors=True)
