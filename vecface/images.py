"""Finding, hashing and decoding image files safely.

Every decode goes through :func:`decode_image`, which turns each way an image can be bad (empty,
truncated, not an image, a decompression bomb, an unreadable file) into one :class:`ImageError`
with a short reason, so callers can skip the file and say why.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from .errors import ImageError, InvalidArgument

# file name endings scanned by ``vecface ingest`` (compared case-insensitively)
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})

# Images with more pixels than this are refused as decompression bombs. 100 megapixels holds every
# camera and phone photo (a 108 MP phone sensor aside) while a bomb of a few KB that claims
# billions of pixels is turned away before any memory is allocated. Override with
# $VECFACE_MAX_IMAGE_PIXELS or the ``max_pixels`` argument.
DEFAULT_MAX_PIXELS = 100_000_000


def max_pixels_default() -> int:
    raw = os.environ.get("VECFACE_MAX_IMAGE_PIXELS")
    if raw:
        try:
            value = int(raw)
        except ValueError:
            raise InvalidArgument(f"VECFACE_MAX_IMAGE_PIXELS must be an integer, got {raw!r}") from None
        if value < 1:
            raise InvalidArgument("VECFACE_MAX_IMAGE_PIXELS must be positive")
        return value
    return DEFAULT_MAX_PIXELS


def is_image_name(path: str | os.PathLike[str]) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def scan_images(root: str | os.PathLike[str],
                on_unreadable: Callable[[Path, str], None] | None = None) -> list[Path]:
    """Image files under ``root`` (recursively, by extension, case-insensitive), absolute and
    sorted. A single file is returned as is. Directory symlinks are not followed (no loops);
    hidden directories (``.name``) are skipped. A directory that cannot be listed is passed to
    ``on_unreadable(path, reason)`` (and its contents are not scanned)."""
    root = Path(root).expanduser()
    if not root.exists():
        raise InvalidArgument(f"{root} does not exist")
    root = root.absolute()
    if root.is_file():
        return [root]
    found: list[Path] = []

    def onerror(err: OSError) -> None:
        if on_unreadable is not None:
            why = "permission denied" if isinstance(err, PermissionError) else (err.strerror or str(err))
            on_unreadable(Path(err.filename if err.filename is not None else root), f"unreadable directory: {why}")

    for dirpath, dirnames, filenames in os.walk(root, onerror=onerror, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if is_image_name(name):
                found.append(Path(dirpath) / name)
    return sorted(found)


# File names are bytes on POSIX; Python gives names that are not valid UTF-8 (old cameras, other
# locales) as str with lone surrogates, which no database, JSON or log can hold. vecface stores
# such a path as "fsbytes:" + the path with each undecodable byte written \xHH and each backslash
# doubled: readable, and it maps back to the same bytes. An absolute path never starts with
# "fsbytes:", so the two forms cannot collide; a valid UTF-8 path is stored as it is.
_FSBYTES = "fsbytes:"


def path_text(path: str | os.PathLike[str]) -> str:
    """The text vecface stores for a file path (the path itself when it is valid UTF-8)."""
    text = os.fsdecode(path)
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    raw = os.fsencode(text).decode("utf-8", "surrogateescape")
    out = []
    for ch in raw:
        if "\udc80" <= ch <= "\udcff":
            out.append(f"\\x{ord(ch) - 0xDC00:02x}")
        elif ch == "\\":
            out.append("\\\\")
        else:
            out.append(ch)
    return _FSBYTES + "".join(out)


def text_path(text: str) -> str:
    """The file path (a str that ``os.fsencode`` turns into the original bytes) of a stored path."""
    if not text.startswith(_FSBYTES):
        return text
    import re

    def unescape(m: "re.Match[str]") -> str:
        return "\\" if m.group(1) == "\\" else chr(0xDC00 + int(m.group(1)[1:], 16))

    return re.sub(r"\\(\\|x[0-9a-f]{2})", unescape, text[len(_FSBYTES):])


def read_file(path: str | os.PathLike[str]) -> bytes:
    """The file's bytes, or ImageError("unreadable: ...") / ImageError("empty file")."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except PermissionError:
        raise ImageError("unreadable: permission denied") from None
    except IsADirectoryError:
        raise ImageError("unreadable: is a directory") from None
    except OSError as e:
        raise ImageError(f"unreadable: {e.strerror or e}") from None
    if not data:
        raise ImageError("empty file (0 bytes)")
    return data


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def decode_image(source: Any, *, max_pixels: int | None = None, draft: int | None = None):
    """Decode ``source`` (bytes, a path, a PIL image or an HxWx3/HxW uint8 array) into an RGB PIL
    image with its EXIF orientation applied; a GIF gives its first frame.

    ``draft``: the caller only needs about this many pixels on the short side, so JPEG decoding
    may scale down by 2, 4 or 8 while decoding (much faster for large photos).
    """
    from PIL import Image, ImageOps

    if isinstance(source, np.ndarray):
        return _from_array(source)
    if isinstance(source, Image.Image):
        return _finish(source)
    if isinstance(source, (str, os.PathLike)):
        source = read_file(source)
    if not isinstance(source, (bytes, bytearray, memoryview)):
        raise InvalidArgument(f"cannot read an image from {type(source).__name__}")
    data = bytes(source)
    if not data:
        raise ImageError("empty file (0 bytes)")
    limit = max_pixels or max_pixels_default()
    if Image.MAX_IMAGE_PIXELS is not None and limit > Image.MAX_IMAGE_PIXELS:
        # Pillow refuses images over twice its own MAX_IMAGE_PIXELS in Image.open, before vecface
        # can apply its limit: a larger limit asked of vecface raises Pillow's to match
        Image.MAX_IMAGE_PIXELS = limit
    try:
        with warnings.catch_warnings():
            # PIL warns above its own MAX_IMAGE_PIXELS and raises at twice that; vecface applies
            # its own limit below, before anything is decoded
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
        w, h = img.size
        if w * h > limit:
            raise ImageError(f"decompression bomb: {w}x{h} = {w * h:,} pixels is over the limit of {limit:,}")
        if getattr(img, "n_frames", 1) > 1:
            img.seek(0)
        if draft and img.format == "JPEG":
            img.draft("RGB", (draft, draft))
        img.load()
        return _finish(img, ImageOps)
    except ImageError:
        raise
    except Image.DecompressionBombError:
        raise ImageError(f"decompression bomb: over the limit of {limit:,} pixels") from None
    except Image.UnidentifiedImageError:
        raise ImageError("not an image (unrecognised format)") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error) as e:
        msg = str(e) or type(e).__name__
        if "truncated" in msg.lower():
            raise ImageError(f"truncated image: {msg}") from None
        raise ImageError(f"corrupt image: {msg}") from None
    except MemoryError:
        raise ImageError("image too large to decode in memory") from None


def _finish(img, ImageOps=None):
    from PIL import Image, ImageOps as _ops

    ops = ImageOps or _ops
    try:
        img = ops.exif_transpose(img)
    except Exception:  # a broken EXIF block: keep the pixels as stored
        pass
    if img.mode != "RGB":
        if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
            # composite transparent pixels on white rather than on black
            rgba = img.convert("RGBA")
            bg = Image.new("RGB", rgba.size, (255, 255, 255))
            bg.paste(rgba, mask=rgba.getchannel("A"))
            img = bg
        elif img.mode in ("I;16", "I;16B", "I;16L", "I"):
            arr = np.asarray(img, dtype=np.float64)
            top = arr.max() or 1.0
            img = Image.fromarray((arr * (255.0 / top)).astype(np.uint8)).convert("RGB")
        else:
            img = img.convert("RGB")
    return img


def _from_array(arr: np.ndarray):
    from PIL import Image

    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise InvalidArgument(f"an image array must be HxW or HxWx3/4, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating) and arr.max(initial=0) <= 1.0:
            arr = arr * 255.0
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(arr[..., :3]), "RGB")


def shrink(img, max_side: int | None = None, short_side: int | None = None):
    """Downscale (never upscale) so the long side is at most ``max_side`` or the short side is
    about ``short_side``. Returns (image, scale) where scale = original / new size."""
    from PIL import Image

    w, h = img.size
    factor = 1.0
    if max_side and max(w, h) > max_side:
        factor = max(w, h) / max_side
    elif short_side and min(w, h) > short_side:
        factor = min(w, h) / short_side
    if factor <= 1.0:
        return img, 1.0
    new = (max(1, round(w / factor)), max(1, round(h / factor)))
    return img.resize(new, Image.BICUBIC, reducing_gap=3.0), w / new[0]


def iter_chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    size = max(1, int(size))
    for start in range(0, len(items), size):
        yield items[start:start + size]
