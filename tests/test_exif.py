"""EXIF date taken, GPS position and camera read with Pillow from JPEGs written here."""

from __future__ import annotations

import io
from datetime import datetime

import pytest

from vecface.exif import photo_metadata
from vecface.types import epoch_seconds, matches_filter, normalise_filter

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
