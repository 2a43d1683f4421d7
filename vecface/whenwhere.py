"""Filters on when and where a photo was taken (the ``taken``, ``lat``, ``lon`` metadata that
:mod:`vecface.exif` reads at ingest).

- :func:`date_range`: ``--since``/``--until`` as a ``taken`` range; a bare date as ``--until``
  means the end of that day, so ``--since 2024-06-01 --until 2024-06-30`` is all of June.
- :class:`Near`: within ``km`` of a place. The backends filter natively on a lat/lon box around
  the circle (:meth:`Near.box`); :func:`search_near` then keeps the hits whose great-circle
  (haversine) distance is within ``km``, asking the store for more until it has ``k`` of them or
  there are no more.
- :func:`bounding_box`: ``--box S,W,N,E`` as lat/lon ranges the backends filter on natively.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Mapping

from .errors import InvalidArgument
from .types import MAX_K, Hit
from .filters import Range, epoch_seconds, normalise_filter

EARTH_RADIUS_KM = 6371.0088  # the mean radius (IUGG)
DEFAULT_KM = 50.0  # the radius of a search near a place when none is given
_BARE_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def date_range(since: str | None = None, until: str | None = None) -> dict[str, Any] | None:
    """``{"taken": {...}}`` for ``since``/``until`` (ISO 8601 dates or date/times, UTC when no zone
    is given), or None when neither is given. A bare date as ``until`` includes that whole day."""
    bounds: dict[str, float] = {}
    if since:
        bounds["gte"] = epoch_seconds(since)
    if until:
        bounds["lte"] = epoch_seconds(until) + (86400 - 1e-3 if _BARE_DATE.match(until.strip()) else 0)
    if not bounds:
        return None
    return {"taken": normalise_filter({"taken": bounds})["taken"]}


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in km between two points given in degrees."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


@dataclass(frozen=True)
class Near:
    """Within ``km`` kilometres of (``lat``, ``lon``)."""

    lat: float
    lon: float
    km: float = DEFAULT_KM

    def __post_init__(self):
        for name, value, limit in (("latitude", self.lat, 90), ("longitude", self.lon, 180)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not -limit <= value <= limit:
                raise InvalidArgument(f"the {name} of --near must be a number between -{limit} and {limit}, got {value!r}")
        if isinstance(self.km, bool) or not isinstance(self.km, (int, float)) or not 0 < self.km <= 20_100:
            raise InvalidArgument(f"--km must be a distance in km above 0 (at most half the Earth's circumference), "
                                  f"got {self.km!r}")

    @classmethod
    def parse(cls, text: str, km: float = DEFAULT_KM) -> "Near":
        """``"38.72,-9.14"`` (latitude, longitude in decimal degrees)."""
        parts = [p.strip() for p in str(text).split(",")]
        try:
            lat, lon = (float(p) for p in parts)
        except ValueError:
            raise InvalidArgument(f"--near takes LAT,LON in decimal degrees (such as 38.72,-9.14), got {text!r}") from None
        return cls(lat, lon, float(km))

    def box(self) -> dict[str, Range]:
        """The lat/lon ranges of a box holding the circle. Near a pole, or where the box would cross
        the 180th meridian, longitude is left open (a range cannot wrap); the haversine check decides."""
        dlat = math.degrees(self.km / EARTH_RADIUS_KM)
        box = {"lat": Range(max(-90.0, self.lat - dlat), min(90.0, self.lat + dlat))}
        if abs(self.lat) + dlat < 90:
            ratio = math.sin(self.km / EARTH_RADIUS_KM) / math.cos(math.radians(self.lat))
            dlon = math.degrees(math.asin(ratio)) if ratio < 1 else 180.0
            if -180 <= self.lon - dlon and self.lon + dlon <= 180:
                box["lon"] = Range(self.lon - dlon, self.lon + dlon)
        return box

    def contains(self, metadata: Mapping[str, Any]) -> bool:
        lat, lon = metadata.get("lat"), metadata.get("lon")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (lat, lon)):
            return False
        return haversine_km(self.lat, self.lon, float(lat), float(lon)) <= self.km


def bounding_box(text: str) -> dict[str, Range]:
    """``"36.9,-9.6,42.2,-6.2"`` (south, west, north, east in decimal degrees) as ``lat``/``lon``
    ranges. A box crossing the 180th meridian (west east of east) is refused: a range cannot wrap."""
    try:
        south, west, north, east = (float(p.strip()) for p in str(text).split(","))
    except ValueError:
        raise InvalidArgument(f"--box takes SOUTH,WEST,NORTH,EAST in decimal degrees "
                              f"(such as 36.9,-9.6,42.2,-6.2), got {text!r}") from None
    for name, value, limit in (("south", south, 90), ("north", north, 90), ("west", west, 180), ("east", east, 180)):
        if not -limit <= value <= limit:
            raise InvalidArgument(f"the {name} edge of --box must be between -{limit} and {limit}, got {value}")
    if south > north:
        raise InvalidArgument(f"the south edge of --box ({south}) is north of its north edge ({north})")
    if west > east:
        raise InvalidArgument(f"the west edge of --box ({west}) is east of its east edge ({east}); a box across the "
                              "180th meridian is two searches, one each side")
    return {"lat": Range(south, north), "lon": Range(west, east)}


def _intersect(a: Range | None, b: Range) -> Range:
    if a is None:
        return b
    lows = [x for x in (a.gte, b.gte) if x is not None]
    highs = [x for x in (a.lte, b.lte) if x is not None]
    return Range(max(lows) if lows else None, min(highs) if highs else None)


def with_box(flt: Mapping[str, Any] | None, near: Near) -> dict[str, Any]:
    """``flt`` (any filter) with the lat/lon ranges narrowed to ``near``'s box."""
    out: dict[str, Any] = dict(normalise_filter(flt) or {})
    for key, rng in near.box().items():
        out[key] = _intersect(out.get(key), rng)
        if out[key].gte is not None and out[key].lte is not None and out[key].gte > out[key].lte:
            out[key] = Range(out[key].gte, out[key].gte - 1.0)  # empty: nothing can match both
    return out


def search_near(store: Any, vector: Any, k: int, flt: Mapping[str, Any] | None, near: Near | None) -> list[Hit]:
    """``store.search(vector, k, flt)``, and where ``near`` is given only hits within ``near.km``:
    the store filters on the box, the haversine check on its hits; more are asked for while fewer
    than ``k`` are inside and the store had more to give."""
    if near is None:
        return store.search(vector, k, flt)
    boxed = with_box(flt, near)
    fetch = k
    while True:
        hits = store.search(vector, fetch, boxed)
        inside = [h for h in hits if near.contains(h.metadata)]
        if len(inside) >= k or len(hits) < fetch or fetch >= MAX_K:
            return inside[:k]
        fetch = min(MAX_K, fetch * 2)
