"""How the web API answers errors: always JSON ``{"error": "...", ...}`` with a status code that
says what kind of error it is (the table in the README)."""

from __future__ import annotations

from typing import Any

from ..errors import (
    BackendError,
    BackendUnavailable,
    ImageError,
    InvalidArgument,
    NoFaceFound,
    StoreClosed,
    UnknownCollection,
    UnknownRecord,
    VecfaceError,
)


class WebError(Exception):
    """An error answered as JSON ``{"error": message, **extra}`` with ``status``."""

    def __init__(self, status: int, message: str, **extra: Any):
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra


# most specific first: 400 bad input, 404 unknown record or collection, 422 no face / several faces,
# 503 the backend failed
_STATUS: tuple[tuple[type[VecfaceError], int], ...] = (
    (NoFaceFound, 422), (ImageError, 400), (UnknownRecord, 404), (UnknownCollection, 404), (InvalidArgument, 400),
    (BackendUnavailable, 503), (BackendError, 503), (StoreClosed, 503))


def as_web_error(exc: VecfaceError) -> WebError:
    """The answer to a vecface error. A face error lists the faces found (``faces``, numbered left to
    right), the query image's ``image_size``, and ``choose_face`` when asking again with ``face=N``
    would help."""
    status = next((code for cls, code in _STATUS if isinstance(exc, cls)), 500)
    if isinstance(exc, NoFaceFound):
        return WebError(status, str(exc), faces=exc.faces, image_size=exc.image_size,
                        choose_face=len(exc.faces) > 1)
    return WebError(status, str(exc))
