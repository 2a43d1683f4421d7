"""Metadata filters: the fields every backend can filter on natively, their normal form, and the
reference semantics (:func:`matches_filter`) every backend agrees with."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence, Union

from .errors import InvalidFilter

#: string fields: equality ``{"tag": "party"}`` or membership ``{"tag": ["a", "b"]}``
FILTER_FIELDS = ("tag", "path", "person", "camera")
#: numeric fields: a closed range ``{"lat": {"gte": 38.0, "lte": 42.5}}`` (either bound may be left out);
#: ``taken`` (when the photo was taken) is given as an ISO 8601 date/time or a number of seconds since
#: 1970-01-01 UTC and compared as seconds since the epoch (a date/time with no zone is read as UTC)
RANGE_FIELDS = ("taken", "lat", "lon")
FilterValue = Union[str, Sequence[str], Mapping[str, Any]]


@dataclass(frozen=True)
class Range:
    """A closed numeric range of a filter; None on a side means unbounded."""

    gte: float | None = None
    lte: float | None = None

    def __contains__(self, x: Any) -> bool:
        return (isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
                and (self.gte is None or x >= self.gte) and (self.lte is None or x <= self.lte))


def epoch_seconds(value: Any) -> float:
    """A date/time (ISO 8601 text, ``datetime``, ``date``) or a number as seconds since the epoch (UTC)."""
    import datetime as _dt

    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            value = _dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise InvalidFilter(f"{value!r} is not an ISO 8601 date or date/time") from None
    if isinstance(value, _dt.date) and not isinstance(value, _dt.datetime):
        value = _dt.datetime(value.year, value.month, value.day)
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=_dt.timezone.utc)
        return value.timestamp()
    raise InvalidFilter(f"cannot read {value!r} as a date/time")


Filter = dict  # field -> list[str] (FILTER_FIELDS) or Range (RANGE_FIELDS)


def normalise_filter(flt: Mapping[str, FilterValue] | None) -> dict[str, list[str] | Range] | None:
    """Validate a filter. String fields (FILTER_FIELDS): ``{"tag": "person"}`` (equality) or
    ``{"tag": ["a", "b"]}`` (membership), values as a sorted list. Numeric fields (RANGE_FIELDS):
    ``{"taken": {"gte": "2024-06-01", "lte": "2024-06-30T23:59:59"}}`` as a :class:`Range` of floats.

    Several fields are combined with AND. Only these indexed metadata fields can be filtered on,
    by every backend alike; a record without the field never matches a filter on it.
    """
    if flt is None:
        return None
    if not isinstance(flt, Mapping):
        raise InvalidFilter("a filter is a mapping such as {'tag': 'person'} or {'tag': ['a', 'b']}")
    out: dict[str, list[str] | Range] = {}
    for key, value in flt.items():
        if key in RANGE_FIELDS:
            out[key] = _range(key, value)
            continue
        if key not in FILTER_FIELDS:
            raise InvalidFilter(f"cannot filter on {key!r}; filterable fields are "
                                f"{', '.join(FILTER_FIELDS + RANGE_FIELDS)}")
        values = [value] if isinstance(value, str) else list(value) if isinstance(value, (list, tuple, set, frozenset)) else None
        if values is None or not all(isinstance(v, str) for v in values):
            raise InvalidFilter(f"filter value for {key!r} must be a string or a list of strings")
        if not values:
            raise InvalidFilter(f"filter on {key!r} has an empty list of values")
        out[key] = sorted(set(values))
    return out or None


def _range(key: str, value: Any) -> Range:
    if isinstance(value, Range):
        return value
    if not isinstance(value, Mapping) or not value or set(value) - {"gte", "lte"}:
        raise InvalidFilter(f"filter on {key!r} is a range such as {{'gte': low, 'lte': high}}")
    bounds = {}
    for side, v in value.items():
        if v is None:
            continue
        x = epoch_seconds(v) if key == "taken" else v
        if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
            raise InvalidFilter(f"the {side} bound of {key!r} must be a finite number, got {v!r}")
        bounds[side] = float(x)
    r = Range(**bounds)
    if r.gte is not None and r.lte is not None and r.gte > r.lte:
        raise InvalidFilter(f"filter on {key!r} has gte {value.get('gte')!r} above lte {value.get('lte')!r}")
    return r


def filter_columns(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The filterable columns of one record's metadata, typed as backends store them: strings for
    FILTER_FIELDS, floats for RANGE_FIELDS (``taken`` as epoch seconds); None where absent or unusable."""
    cols: dict[str, Any] = {k: metadata.get(k) if isinstance(metadata.get(k), str) else None for k in FILTER_FIELDS}
    for k in RANGE_FIELDS:
        v = metadata.get(k)
        try:
            x = epoch_seconds(v) if (k == "taken" and v is not None) else v
        except InvalidFilter:
            x = None
        cols[k] = float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) else None
    return cols


def matches_filter(metadata: Mapping[str, Any], flt: dict[str, list[str] | Range] | None) -> bool:
    """Whether one record's metadata passes a normalised filter (the reference every backend agrees with)."""
    if not flt:
        return True
    cols = filter_columns(metadata)
    return all(cols.get(k) in cond for k, cond in flt.items())
