"""Thumbnails of stored records' images. The file is found BY RECORD ID in the store, never from a
path in the request, and only served while its content has the SHA-256 recorded at ingest; it is
decoded and re-encoded as JPEG (never sent as it is), and cached under ``<data dir>/thumbs`` by
content hash."""

from __future__ import annotations

import io
import logging
import os
import re
import threading
from pathlib import Path

from ..errors import ImageError
from ..types import Record
from .errors import WebError

log = logging.getLogger("vecface.web")

THUMB_SIDE = 320
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def thumbnail(record: Record, thumb_dir: Path, side: int = THUMB_SIDE) -> bytes:
    """A JPEG of ``record``'s image, at most ``side`` pixels a side; WebError 404 (no image file)
    or 410 (the file is gone, changed since ingest, or cannot be decoded)."""
    from PIL import Image

    from ..images import content_hash, decode_image, read_file

    if not record.path:
        raise WebError(404, f"record {record.id!r} has no image file")
    sha = record.metadata.get("sha256")
    sha = sha if isinstance(sha, str) and _SHA256.match(sha) else None
    cached = thumb_dir / f"{sha}-{side}.jpg" if sha else None
    if cached is not None and cached.is_file():
        return cached.read_bytes()
    try:
        data = read_file(record.path)
    except ImageError:
        raise WebError(410, f"the image of record {record.id!r} is no longer readable; re-run vecface ingest") from None
    if sha is not None and content_hash(data) != sha:
        raise WebError(410, f"the image of record {record.id!r} changed since it was ingested; re-run vecface ingest")
    try:
        img = decode_image(data, draft=side)
    except ImageError as e:
        raise WebError(410, f"the image of record {record.id!r} cannot be decoded: {e}") from None
    img.thumbnail((side, side), Image.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=82, optimize=True)
    out = buf.getvalue()
    if cached is not None:
        _write_atomic(cached, out)
    return out


def _write_atomic(path: Path, data: bytes) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as e:  # a read-only data dir: serve from memory
        log.warning("cannot cache thumbnail %s: %s", path, e)
