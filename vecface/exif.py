"""When and where a photo was taken, and with what: EXIF read with Pillow into filterable metadata.

:func:`photo_metadata` gives the keys ingest merges into each record's metadata, all optional:

- ``taken``: ISO 8601 text. ``DateTimeOriginal`` (the moment the shutter fired), else the file's
  ``DateTime``; with the zone from ``OffsetTimeOriginal`` (or ``OffsetTime``) when the camera wrote
  one, e.g. ``2024-06-01T14:03:00+01:00``. Without a zone the time is left naive, and filters read
  naive times as UTC (:func:`vecface.filters.epoch_seconds`), the only choice that needs no guess.
- ``lat``, ``lon``: the GPS position in decimal degrees (south and west negative).
- ``camera``: make and model, e.g. ``Canon EOS 5D`` (the make is not repeated when the model
  already starts with its first word: ``NIKON CORPORATION`` + ``NIKON D750`` is ``NIKON D750``).

Missing, unreadable or out-of-range values are left out rather than guessed: a photo without
EXIF simply has no ``taken`` and so never matches a date filter.
"""

from __future__ import annotations

import io
import math
import os
from datetime import datetime, timedelta, timezone
from typing import Any

# EXIF tag numbers (the TIFF/EXIF 2.32 standard; PIL.ExifTags.Base/GPS name the same numbers)
_MAKE, _MODEL, _DATETIME = 0x010F, 0x0110, 0x0132
_EXIF_IFD, _GPS_IFD = 0x8769, 0x8825
_DATETIME_ORIGINAL, _OFFSET_TIME, _OFFSET_TIME_ORIGINAL = 0x9003, 0x9010, 0x9011
_GPS_LAT_REF, _GPS_LAT, _GPS_LON_REF, _GPS_LON = 1, 2, 3, 4

EXIF_KEYS = ("taken", "lat", "lon", "camera")


def photo_metadata(source: Any) -> dict[str, Any]:
    """``taken``/``lat``/``lon``/``camera`` of a photo (bytes, a path or an open PIL image) where its
    EXIF has them. Never raises for a photo without or with broken EXIF: it returns what it could read."""
    from PIL import Image, UnidentifiedImageError

    try:
        if isinstance(source, Image.Image):
            exif = source.getexif()
        else:
            fh = io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else open(os.fspath(source), "rb")
            with fh, Image.open(fh) as img:  # lazy: reads the header, not the pixels
                exif = img.getexif()
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError):
        return {}
    return exif_metadata(exif)


def exif_metadata(exif: Any) -> dict[str, Any]:
    """The same keys from a ``PIL.Image.Exif`` (``img.getexif()``)."""
    out: dict[str, Any] = {}
    try:
        sub = exif.get_ifd(_EXIF_IFD)
    except Exception:  # a corrupt sub-IFD: keep what the base IFD has
        sub = {}
    try:
        gps = exif.get_ifd(_GPS_IFD)
    except Exception:
        gps = {}
    taken = _taken(sub.get(_DATETIME_ORIGINAL), sub.get(_OFFSET_TIME_ORIGINAL) or sub.get(_OFFSET_TIME))
    if taken is None:
        taken = _taken(exif.get(_DATETIME), sub.get(_OFFSET_TIME))
    if taken is not None:
        out["taken"] = taken
    lat = _degrees(gps.get(_GPS_LAT), gps.get(_GPS_LAT_REF), "S", 90.0)
    lon = _degrees(gps.get(_GPS_LON), gps.get(_GPS_LON_REF), "W", 180.0)
    if lat is not None and lon is not None:  # half a position is no position
        out["lat"], out["lon"] = lat, lon
    camera = _camera(exif.get(_MAKE), exif.get(_MODEL))
    if camera:
        out["camera"] = camera
    return out


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        return None
    value = value.replace("\x00", "").strip()
    return value or None


def _taken(value: Any, offset: Any) -> str | None:
    """EXIF 'YYYY:MM:DD HH:MM:SS' (+ '+HH:MM') as ISO 8601; None for blanks such as '0000:00:00 00:00:00'."""
    text = _text(value)
    if text is None:
        return None
    try:
        when = datetime.strptime(text[:19], "%Y:%m:%d %H:%M:%S")
    except ValueError:
        return None
    zone = _offset(_text(offset))
    if zone is not None:
        when = when.replace(tzinfo=zone)
    return when.isoformat()


def _offset(text: str | None) -> timezone | None:
    if not text or len(text) != 6 or text[0] not in "+-" or text[3] != ":":
        return None
    try:
        hours, minutes = int(text[1:3]), int(text[4:6])
    except ValueError:
        return None
    if hours > 14 or minutes > 59:
        return None
    delta = timedelta(hours=hours, minutes=minutes)
    return timezone(-delta if text[0] == "-" else delta)


def _degrees(dms: Any, ref: Any, negative: str, limit: float) -> float | None:
    """(degrees, minutes, seconds) rationals and an N/S or E/W reference as signed decimal degrees."""
    try:
        parts = [float(x) for x in dms]
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    if not 1 <= len(parts) <= 3 or not all(math.isfinite(p) and p >= 0 for p in parts):
        return None
    parts += [0.0] * (3 - len(parts))
    value = parts[0] + parts[1] / 60.0 + parts[2] / 3600.0
    if value > limit:
        return None
    if (_text(ref) or "").upper().startswith(negative):
        value = -value
    return round(value, 7)  # about 1 cm: more digits are noise


def _camera(make: Any, model: Any) -> str | None:
    make, model = _text(make), _text(model)
    if make and model and model.lower().startswith(make.split()[0].lower()):  # "NIKON CORPORATION", "NIKON D750"
        return model
    return " ".join(p for p in (make, model) if p) or None
