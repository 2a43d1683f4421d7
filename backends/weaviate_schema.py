"""How a vecface collection looks in Weaviate: object UUIDs, properties, filters, index configs.

Properties: ``vid`` (the vecface id), the filterable columns of :func:`vecface.filters.filter_columns`
-- ``tag``, ``path``, ``person``, ``camera`` as text with ``field`` tokenization (a filter matches the
whole value), ``taken`` as a date, ``lat`` and ``lon`` as numbers, each with a range index -- and
``meta`` (the record's metadata as JSON, not indexed). A missing column is left out of the object
(null), and Weaviate's filters never match a null, which is vecface's rule for a record lacking the
field. Collections made before a column existed get it added when opened (:func:`add_missing`);
their older objects have it null until they are upserted again.
"""

from __future__ import annotations

import datetime as _dt
import json
import uuid
from typing import Any, Iterable, Iterator, Mapping

from weaviate.classes.config import Configure, DataType, Property, Tokenization, VectorDistances
from weaviate.classes.query import Filter, MetadataQuery

from vecface.types import HNSW, Exact, IndexSpec, Metric
from vecface.filters import FILTER_FIELDS, RANGE_FIELDS, Range, filter_columns

VECFACE_NAMESPACE = uuid.UUID("6f1d7a52-3c4b-5e0f-9a8d-7b2c1e4f5a60")
VECTOR = "default"
CLASS_PREFIX = "Vecface_"
RETURN_PROPS = ["vid", "meta"]  # what a search or get reads back
DISTANCE = MetadataQuery(distance=True)  # what a search asks of each hit; made once (the client validates it with pydantic)
DATE_FIELDS = ("taken",)
#: every property of a vecface collection, in the order created
PROPERTY_NAMES = ("vid",) + FILTER_FIELDS + RANGE_FIELDS + ("meta",)


def object_uuid(id_: str) -> str:
    """The stable Weaviate UUID of a vecface id."""
    return str(uuid.uuid5(VECFACE_NAMESPACE, id_))


def properties() -> list[Property]:
    text = dict(data_type=DataType.TEXT, tokenization=Tokenization.FIELD, index_searchable=False,
                index_filterable=True)
    props = [Property(name=name, **text) for name in ("vid",) + FILTER_FIELDS]
    for name in RANGE_FIELDS:
        props.append(Property(name=name, data_type=DataType.DATE if name in DATE_FIELDS else DataType.NUMBER,
                              index_filterable=True, index_range_filters=True))
    props.append(Property(name="meta", data_type=DataType.TEXT, index_filterable=False, index_searchable=False))
    return props


def add_missing(coll: Any, existing: set[str]) -> list[str]:
    """Add the properties a collection made by an older vecface lacks; return their names."""
    added = []
    for prop in properties():
        if prop.name not in existing:
            coll.config.add_property(prop)
            added.append(prop.name)
    return added


def _date(seconds: float) -> _dt.datetime:
    return _dt.datetime.fromtimestamp(seconds, tz=_dt.timezone.utc)


def object_properties(id_: str, meta: Mapping[str, Any]) -> dict[str, Any]:
    """The Weaviate properties of one record."""
    props: dict[str, Any] = {"vid": id_, "meta": json.dumps(meta, separators=(",", ":"))}
    for key, value in filter_columns(meta).items():
        if value is not None:
            props[key] = _date(value) if key in DATE_FIELDS else value
    return props


def objects(ids: Iterable[str], vectors: Iterable[Any], metadata: Iterable[Mapping[str, Any]]
            ) -> Iterator[tuple[str, dict[str, Any], Any]]:
    """(uuid, properties, vector) of each record: what one import sends."""
    return ((object_uuid(i), object_properties(i, m), v) for i, v, m in zip(ids, vectors, metadata))


def data_objects(objects: Iterable[tuple[str, dict[str, Any], Any]]) -> list[Any]:
    """The client's ``DataObject`` of each (uuid, properties, vector): one ``insert_many`` request."""
    from weaviate.classes.data import DataObject

    return [DataObject(properties=p, uuid=u, vector={VECTOR: v}) for u, p, v in objects]


def where(flt: Mapping[str, list[str] | Range] | None):
    """A normalised vecface filter as a Weaviate filter (AND of its fields), or None."""
    if not flt:
        return None
    parts = []
    for field, cond in flt.items():
        prop = Filter.by_property(field)
        if isinstance(cond, Range):
            conv = _date if field in DATE_FIELDS else float
            if cond.gte is not None:
                parts.append(prop.greater_or_equal(conv(cond.gte)))
            if cond.lte is not None:
                parts.append(prop.less_or_equal(conv(cond.lte)))
        else:
            parts.append(prop.equal(cond[0]) if len(cond) == 1 else prop.contains_any(cond))
    return parts[0] if len(parts) == 1 else Filter.all_of(parts)


#: a filtered HNSW search whose filter keeps fewer objects than the collection's flatSearchCutoff is
#: an exact scan of those objects instead (Weaviate's default cutoff: 40,000). Measured on 50,000
#: objects, HNSW m16/efc64, ef 40 (README, Weaviate "Filtered search"): the scan costs about 0.4 us
#: per object at 128-d and 0.55-0.85 us at 512-d -- mostly per-object work, not the floats -- next to
#: an unfiltered search of 1.5-2 ms, so 5,000 objects scanned take 2-2.8x the unfiltered time at
#: either dimension and 25,000 take 6-8x. The graph does no better with a filter keeping 10% (ACORN
#: recall 0.77-0.80 at 2x, sweeping 0.95 at 4x), but is within 1.7x at recall >= 0.91 (sweeping)
#: once it keeps 39%. So vecface scans at most MAX_FLAT_SCAN objects, and at most FLAT_SCAN_FLOATS
#: floats where vectors are long: 10,000 objects up to 500-d, 9,765 at 512-d, 2,441 at 2048-d.
MAX_FLAT_SCAN = 10_000
FLAT_SCAN_FLOATS = 5_000_000


def flat_search_cutoff(dim: int) -> int:
    """The flatSearchCutoff vecface gives an HNSW collection of dimension ``dim``."""
    return max(1000, min(MAX_FLAT_SCAN, FLAT_SCAN_FLOATS // max(1, dim)))


def index_config(metric: Metric, spec: IndexSpec, ef: int, filter_strategy: str | None, dim: int):
    """The vector index of a new collection of dimension ``dim`` (HNSW: ``ef``, the filter strategy and
    the dimension's :func:`flat_search_cutoff`)."""
    distance = VectorDistances(metric.weaviate_distance)
    if isinstance(spec, HNSW):
        from weaviate.classes.config import VectorFilterStrategy

        extra = {"filter_strategy": VectorFilterStrategy(filter_strategy)} if filter_strategy else {}
        return Configure.VectorIndex.hnsw(distance_metric=distance, max_connections=spec.m,
                                          ef_construction=spec.ef_construction, ef=ef,
                                          flat_search_cutoff=flat_search_cutoff(dim), **extra)
    assert isinstance(spec, Exact), spec
    return Configure.VectorIndex.flat(distance_metric=distance)


def vector_config(metric: Metric, spec: IndexSpec, ef: int, filter_strategy: str | None, dim: int):
    return Configure.Vectors.self_provided(name=VECTOR,
                                           vector_index_config=index_config(metric, spec, ef, filter_strategy, dim))


def catalog_entry(description: str | None) -> dict[str, Any] | None:
    """The vecface catalog entry a class's description holds (name, dim, metric, index, state and
    the collection's info), or None for a class that is not vecface's."""
    try:
        entry = json.loads(description or "")
    except ValueError:
        return None
    return entry if isinstance(entry, dict) and isinstance(entry.get("vecface"), str) else None


def collection_names(client: Any) -> list[str]:
    """The vecface collections a server holds: those with a ready class."""
    names = set()
    for cls, cfg in client.collections.list_all(simple=True).items():
        entry = catalog_entry(cfg.description)
        if cls.startswith(CLASS_PREFIX) and entry and entry.get("state") == "ready":
            names.add(entry["vecface"])
    return sorted(names)
