"""EXIF date taken, GPS position and camera read with Pillow from JPEGs written here."""

from __future__ import annotations

import io
from datetime import datetime

import pytest

from vecface.exif import photo_metadata
from vecface.filters import epoch_seconds, matches_filter, normalise_filter

from .conftest import astronaut
from .people_photos import exif_jpeg


def test_date_offset_gps_and_camera():
    data = exif_jpeg(astronaut(128), taken=datetime(2024, 6, 1, 14, 3, 0), offset="+01:00",
                     gps=(38.7223, -9.1393), camera=("Canon", "Canon EOS 5D"))
    meta = photo_metadata(data)
    assert meta["taken"] == "2024-06-01T14:03:00+01:00"
    assert epoch_seconds(meta["taken"]) == epoch_seconds("2024-06-01T13:03:00Z")
    assert meta["lat"] == pytest.approx(38.7223, abs=1e-5)
    assert meta["lon"] == pytest.approx(-9.1393, abs=1e-5)  # west is negative
    assert meta["camera"] == "Canon EOS 5D"  # the make is not said twice
    assert photo_metadata(exif_jpeg(astronaut(64), camera=("NIKON CORPORATION", "NIKON D750")))["camera"] == "NIKON D750"
    # the same from a path and from an open image
    from PIL import Image

    assert photo_metadata(Image.open(io.BytesIO(data))) == meta


def test_southern_eastern_hemisphere_and_make_model_joined(tmp_path):
    path = tmp_path / "sydney.jpg"
    path.write_bytes(exif_jpeg(astronaut(64), taken=datetime(2023, 12, 31, 23, 59, 59),
                               gps=(-33.8688, 151.2093), camera=("NIKON CORPORATION", "D750")))
    meta = photo_metadata(path)
    assert meta["taken"] == "2023-12-31T23:59:59"  # no offset written: left naive (filters read it as UTC)
    assert meta["lat"] == pytest.approx(-33.8688, abs=1e-5) and meta["lon"] == pytest.approx(151.2093, abs=1e-5)
    assert meta["camera"] == "NIKON CORPORATION D750"


def test_datetime_fallback_and_blank_values():
    from PIL import Image

    exif = Image.Exif()
    exif[0x0132] = "2020:02:29 08:00:00"  # DateTime only: used when DateTimeOriginal is missing
    exif[0x8769] = {0x9003: "0000:00:00 00:00:00"}  # a camera's "unknown": not a date
    exif[0x8825] = {1: "N", 2: (38.0, 0.0, 0.0)}  # latitude without longitude: no position
    buf = io.BytesIO()
    astronaut(64).save(buf, "JPEG", exif=exif)
    assert photo_metadata(buf.getvalue()) == {"taken": "2020-02-29T08:00:00"}


def test_no_exif_and_not_an_image():
    assert photo_metadata(exif_jpeg(astronaut(64))) == {}
    buf = io.BytesIO()
    astronaut(64).save(buf, "PNG")
    assert photo_metadata(buf.getvalue()) == {}
    assert photo_metadata(b"not an image at all") == {}


def test_exif_metadata_passes_the_filters():
    meta = photo_metadata(exif_jpeg(astronaut(64), taken=datetime(2024, 6, 1, 12), gps=(38.72, -9.14),
                                    camera=("Canon", "Canon EOS 5D")))
    assert matches_filter(meta, normalise_filter({"taken": {"gte": "2024-06-01", "lte": "2024-06-02"},
                                                  "camera": "Canon EOS 5D",
                                                  "lat": {"gte": 38, "lte": 39}, "lon": {"gte": -10, "lte": -9}}))
    assert not matches_filter(meta, normalise_filter({"taken": {"gte": "2024-06-02"}}))


# ---------------------------------------------------------------- when and where: dates and places as filters

def test_date_range_bare_until_is_the_whole_day():
    from vecface.whenwhere import date_range

    june = date_range("2024-06-01", "2024-06-30")["taken"]
    assert epoch_seconds("2024-06-30T23:59:59") in june and epoch_seconds("2024-07-01") not in june
    assert epoch_seconds("2024-06-01T00:00:00") in june and epoch_seconds("2024-05-31T23:59:59") not in june
    assert date_range(until="2024-06-30T12:00:00+02:00")["taken"].lte == epoch_seconds("2024-06-30T10:00:00Z")
    assert date_range() is None
    from vecface.errors import InvalidFilter

    with pytest.raises(InvalidFilter):
        date_range("2024-07-01", "2024-06-01")
    with pytest.raises(InvalidFilter):
        date_range("yesterday")


def test_haversine_and_the_box_around_a_circle():
    import numpy as np

    from vecface.whenwhere import Near, haversine_km

    assert haversine_km(38.7223, -9.1393, 48.8566, 2.3522) == pytest.approx(1453, abs=5)  # Lisbon - Paris
    rng = np.random.default_rng(0)
    for lat, lon, km in ((38.72, -9.14, 50), (64.1, -21.9, 300), (-33.87, 151.21, 1000), (0.0, 0.0, 5)):
        near = Near(lat, lon, km)
        box = near.box()
        dlat, dlon = box["lat"].lte - lat, box["lon"].lte - lon
        pts = np.column_stack([rng.uniform(lat - 1.5 * dlat, lat + 1.5 * dlat, 4000),
                               rng.uniform(lon - 1.5 * dlon, lon + 1.5 * dlon, 4000)])
        pts = pts[(np.abs(pts[:, 0]) <= 90) & (np.abs(pts[:, 1]) <= 180)]
        inside = [p for p in pts if near.contains({"lat": p[0], "lon": p[1]})]
        assert len(inside) > 1000 and all(p[0] in box["lat"] and p[1] in box["lon"] for p in inside)  # the box holds the circle
    assert "lon" not in Near(89.9, 10, 50).box()  # a pole inside: every longitude
    assert "lon" not in Near(10, 179.9, 50).box()  # across the 180th meridian: longitude left open
    assert Near(10, 179.9, 50).contains({"lat": 10, "lon": -179.9})  # and the haversine check still decides


@pytest.mark.parametrize("text,km", [("38.7", 50), ("a,b", 50), ("91,0", 50), ("0,181", 50), ("0,0", 0), ("0,0", -5)])
def test_near_refuses_bad_places(text, km):
    from vecface.errors import InvalidArgument
    from vecface.whenwhere import Near

    with pytest.raises(InvalidArgument):
        Near.parse(text, km)


def test_search_near_keeps_only_hits_within_km(store_factory):
    """On each backend: the box is filtered natively, the haversine check trims its corners, and
    more hits are fetched when the nearest ones lie outside the circle."""
    import numpy as np

    from vecface.whenwhere import Near, haversine_km, search_near

    rng = np.random.default_rng(4)
    n = 300
    lat = rng.uniform(37.5, 40.0, n)
    lon = rng.uniform(-10.5, -7.5, n)
    x = rng.normal(size=(n, 8)).astype(np.float32)
    metas = [{"lat": float(a), "lon": float(b), "camera": "Canon EOS 5D" if i % 2 else "NIKON D750"}
             for i, (a, b) in enumerate(zip(lat, lon))]
    metas[0] = {"camera": "Canon EOS 5D"}  # no position: never near anything
    s = store_factory(dim=8)
    s.upsert_arrays([f"r{i}" for i in range(n)], x, metas)
    near = Near(38.72, -9.14, 60)
    within = [i for i in range(n) if "lat" in metas[i] and haversine_km(38.72, -9.14, lat[i], lon[i]) <= 60]
    assert 10 < len(within) < n / 2
    q = x[0] / np.linalg.norm(x[0])
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    want = sorted(within, key=lambda i: 1 - float(xn[i] @ q))[:10]
    hits = search_near(s, x[0], 10, None, near)
    assert [h.id for h in hits] == [f"r{i}" for i in want]
    canon = [i for i in within if metas[i]["camera"] == "Canon EOS 5D"]
    hits = search_near(s, x[0], 500, {"camera": "Canon EOS 5D"}, near)
    assert sorted(h.id for h in hits) == sorted(f"r{i}" for i in canon)
    # a lat range of the caller's own narrows the box further (both apply)
    hits = search_near(s, x[0], 500, {"lat": {"gte": 38.72}}, near)
    assert sorted(h.id for h in hits) == sorted(f"r{i}" for i in within if lat[i] >= 38.72)


def test_box_filter_is_native_and_exact(store_factory):
    """--box S,W,N,E: every backend returns exactly the records inside the box (numpy brute force)."""
    import numpy as np

    from vecface.errors import InvalidArgument
    from vecface.search import query_filter

    rng = np.random.default_rng(9)
    n = 200
    lat, lon = rng.uniform(36.0, 42.0, n), rng.uniform(-10.0, -6.0, n)
    x = rng.normal(size=(n, 8)).astype(np.float32)
    s = store_factory(dim=8)
    s.upsert_arrays([f"r{i}" for i in range(n)], x, [{"lat": float(a), "lon": float(b)} for a, b in zip(lat, lon)])
    flt = query_filter(s, box="38.0,-9.5,40.0,-7.5")
    inside = {f"r{i}" for i in range(n) if 38.0 <= lat[i] <= 40.0 and -9.5 <= lon[i] <= -7.5}
    assert 10 < len(inside) < n / 2
    assert {h.id for h in s.search(x[0], k=n, filter=flt)} == inside
    for bad in ("38,-9.5,40", "40,-9.5,38,-7.5", "38,-7.5,40,-9.5", "38,-9.5,91,-7.5"):
        with pytest.raises(InvalidArgument, match="--box"):
            query_filter(s, box=bad)
