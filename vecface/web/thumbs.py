"""Thumbnails of stored records' images. The file is found BY RECORD ID in the store, never from a
path in the request, and only served while its content has the SHA-256 recorded at ingest; it is
decoded and re-encoded as JPEG (never sent as it is), and cached under ``<data dir>/thumbs`` by
content hash. A face's crop (the People view's tiles) is made the same way."""

from __future__ import annotations

import io
import logging
import os
import re
import threading
from pathlib import Path
from typing import Callable

from ..errors import ImageError
from ..types import Record
from .errors import WebError

log = logging.getLogger("vecface.web")

THUMB_SIDE = 320
FACE_SIDE = 160  # pixels a side of a person's face crop
FACE_MARGIN = 0.25  # of the face box's size, around it
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def thumbnail(record: Record, thumb_dir: Path, side: int = THUMB_SIDE) -> bytes:
    """A JPEG of ``record``'s image, at most ``side`` pixels a side; WebError 404 (no image file)
    or 410 (the file is gone, changed since ingest, or cannot be decoded)."""
    from PIL import Image

    def shrink(img):
        img.thumbnail((side, side), Image.LANCZOS)
        return img

    return _render(record, thumb_dir, f"{side}", side, shrink)


def face_crop(record: Record, thumb_dir: Path, side: int = FACE_SIDE) -> bytes:
    """A square JPEG (``side`` pixels) of the face in ``record`` (its ``bbox`` and a margin around it);
    WebError 404 when the record has no face box, else as :func:`thumbnail`."""
    from PIL import Image

    box = record.bbox
    if not box or len(box) != 4:
        raise WebError(404, f"record {record.id!r} is not a face (it has no face box)")
    top, right, bottom, left = (float(v) for v in box)
    meta = record.metadata

    half0 = max(right - left, bottom - top, 1.0) * 0.5 * (1 + 2 * FACE_MARGIN)

    def crop(img):
        # the box is in the original image's pixels; a JPEG decoded in draft mode is smaller
        scale = img.width / float(meta["width"]) if meta.get("width") else 1.0
        half = half0 * scale
        # the square around the face, moved inside the photo where it fits (no black edges)
        cx = min(max((left + right) / 2 * scale, half), img.width - half) if 2 * half <= img.width \
            else img.width / 2
        cy = min(max((top + bottom) / 2 * scale, half), img.height - half) if 2 * half <= img.height \
            else img.height / 2
        out = img.crop((int(round(cx - half)), int(round(cy - half)), int(round(cx + half)), int(round(cy + half))))
        return out.resize((side, side), Image.LANCZOS)

    key = "face-" + "-".join(str(int(v)) for v in box) + f"-{side}"
    # draft decoding (just enough pixels for the face to fill ``side``) only where the original size
    # is known, to scale the box by
    short = min(float(meta.get("width") or 0), float(meta.get("height") or 0))
    draft = int(short * side / (2 * half0)) + 1 if short else None
    return _render(record, thumb_dir, key, draft, crop)


def _render(record: Record, thumb_dir: Path, key: str, draft: int | None, render: Callable) -> bytes:
    """``render(image)`` of ``record``'s image as JPEG, cached as ``<sha256>-<key>.jpg``: the file is read by
    the record's path, checked against the SHA-256 recorded at ingest, decoded (``draft``: about this
    many pixels are enough), rendered and re-encoded."""
    from ..images import content_hash, decode_image, read_file

    if not record.path:
        raise WebError(404, f"record {record.id!r} has no image file")
    sha = record.metadata.get("sha256")
    sha = sha if isinstance(sha, str) and _SHA256.match(sha) else None
    cached = thumb_dir / f"{sha}-{key}.jpg" if sha else None
    if cached is not None and cached.is_file():
        return cached.read_bytes()
    try:
        data = read_file(record.path)
    except ImageError:
        raise WebError(410, f"the image of record {record.id!r} is no longer readable; re-run vecface ingest") from None
    if sha is not None and content_hash(data) != sha:
        raise WebError(410, f"the image of record {record.id!r} changed since it was ingested; re-run vecface ingest")
    try:
        img = decode_image(data, draft=draft)
    except ImageError as e:
        raise WebError(410, f"the image of record {record.id!r} cannot be decoded: {e}") from None
    buf = io.BytesIO()
    render(img).save(buf, "JPEG", quality=82, optimize=True)
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
