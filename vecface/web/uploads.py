"""Uploaded query images: the multipart form, parsed in memory (never spooled to a temporary
file; the request guard caps the whole body), and the checks an upload passes before it is
decoded: not empty, within the byte and pixel limits (413), an accepted format (415), and a file
PIL can verify (400)."""

from __future__ import annotations

import io
import sys
import warnings
from typing import Any

from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from .errors import WebError
from .schemas import FiltersIn

ACCEPTED_FORMATS = {"JPEG": "JPEG", "MPO": "JPEG", "PNG": "PNG", "WEBP": "WebP", "GIF": "GIF", "BMP": "BMP",
                    "TIFF": "TIFF"}


class _MemoryMultiPartParser(MultiPartParser):
    spool_max_size = sys.maxsize  # keep the file in memory: the request guard bounds it


FILTER_FIELDS = tuple(FiltersIn.model_fields)  # the search filters, as form fields


async def read_image_form(request: Request) -> tuple[bytes, int | None, str | None, int | None, dict[str, str]]:
    """The ``image`` file, the ``k``, ``tag`` and ``face`` fields and the filter fields (text, as
    sent: :class:`~vecface.web.schemas.FiltersIn` checks them) of a multipart upload."""
    if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        raise WebError(415, "send the image as multipart/form-data with a file field named 'image'")
    parser = _MemoryMultiPartParser(request.headers, request.stream(), max_files=1, max_fields=16,
                                    max_part_size=4096)
    try:
        form = await parser.parse()
    except MultiPartException as e:
        raise WebError(400, f"invalid multipart form: {e.message}") from None
    try:
        upload = form.get("image")
        if upload is None or isinstance(upload, str):
            raise WebError(400, "the form has no file field named 'image'")
        data = await upload.read()
        tag = form.get("tag")
        filters = {}
        for name in FILTER_FIELDS:
            value = form.get(name)
            if value is not None and not isinstance(value, str):
                raise WebError(400, f"{name} must be a text field, not a file")
            if value is not None and value.strip():
                filters[name] = value.strip()
        return (data, int_field(form.get("k"), "k"), tag if isinstance(tag, str) else None,
                int_field(form.get("face"), "face"), filters)
    finally:
        await form.close()


def int_field(value: Any, name: str) -> int | None:
    """A form field as an integer (None when absent or blank)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        raise WebError(400, f"{name} must be an integer field, not a file")
    try:
        return int(value.strip())
    except ValueError:
        raise WebError(400, f"{name} must be an integer, got {value[:40]!r}") from None


def validate_image(data: bytes, max_upload: int, max_pixels: int) -> tuple[str, int, int]:
    """Check an upload is one image of an accepted format, within the size and pixel limits,
    that PIL can verify. Returns (format, width, height); raises WebError 400/413/415."""
    from PIL import Image

    if not data:
        raise WebError(400, "the uploaded file is empty")
    if len(data) > max_upload:
        raise WebError(413, f"the image is {len(data):,} bytes; the limit is {max_upload:,} bytes")
    accepted = ", ".join(sorted(set(ACCEPTED_FORMATS.values())))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            fmt = img.format or "?"
            w, h = img.size
            if fmt not in ACCEPTED_FORMATS:
                raise WebError(415, f"images in {fmt} format are not accepted; send {accepted}")
            if w * h > max_pixels:
                raise WebError(413, f"the image is {w}x{h} = {w * h:,} pixels, over the limit of {max_pixels:,} "
                                    "(a decompression bomb, or a photo too large to search with)")
            img.verify()
    except WebError:
        raise
    except Image.UnidentifiedImageError:
        raise WebError(415, f"the upload is not an image (unrecognised format); send {accepted}") from None
    except Image.DecompressionBombError as e:
        raise WebError(413, f"decompression bomb refused: {e}") from None
    except Exception as e:  # verify() raises many kinds for broken files
        raise WebError(400, f"the image is corrupt or truncated: {str(e) or type(e).__name__}") from None
    return ACCEPTED_FORMATS[fmt], w, h
