"""A collection's description kept in the store itself (:attr:`VectorStore.info`): the embedder spec
it was built with (kind, model, detector options), its dimension, and when and by which vecface
version it was created. Ingest writes it the first time it uses a collection; search and serve read
it when the local ingest manifest does not know the collection (another machine, another data
directory pointed at the same server), and refuse a manifest and a store that disagree. The
collection's people (:mod:`vecface.people`) are kept here too, under ``"people"``.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from .embedders import EmbedderSpec
from .errors import InvalidArgument, UnsupportedOperation
from .store import VectorStore


def _spec_text(spec: EmbedderSpec) -> str:
    return f"--embedder {spec.kind}" + (f" --model {spec.model}" if spec.model else "")


def describe(spec: EmbedderSpec, dim: int) -> dict[str, Any]:
    """The info ingest stores for a collection it creates."""
    from . import __version__

    return {"embedder": json.loads(spec.to_json()), "dim": int(dim),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "vecface_version": __version__}


def spec_of(info: dict[str, Any]) -> EmbedderSpec | None:
    """The embedder spec a collection's info holds, or None."""
    emb = info.get("embedder")
    return EmbedderSpec.from_json(json.dumps(emb)) if isinstance(emb, dict) and emb.get("kind") else None


def stored_spec(store: VectorStore) -> EmbedderSpec | None:
    """The embedder spec the store's own description holds, or None (none recorded, or a backend
    that keeps no description)."""
    try:
        return spec_of(store.info)
    except UnsupportedOperation:
        return None


def check_same(store: VectorStore, recorded: EmbedderSpec, other: EmbedderSpec, other_is: str) -> None:
    """Refuse two embedders (kind or model) for one collection."""
    if recorded.identity() != other.identity():
        raise InvalidArgument(
            f"collection {store.name!r} in {store.backend} was built with {_spec_text(recorded)} (its own "
            f"description in the store), but {other_is} says {_spec_text(other)}: use another --collection "
            f"for another embedder, or another data directory")


def record(store: VectorStore, spec: EmbedderSpec, dim: int) -> None:
    """Write ``spec`` into the store's description if it has none; refuse a different one."""
    try:
        info = store.info  # read once: a round trip on a server backend
        known = spec_of(info)
        if known is not None:
            check_same(store, known, spec, "this run")
            return
        store.set_info({**info, **describe(spec, dim)})
    except UnsupportedOperation:
        return  # a backend without descriptions: the local manifest alone remembers the embedder
