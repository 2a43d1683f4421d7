"""One exception hierarchy for everything vecface raises on purpose.

Catch :class:`VecfaceError` to handle any of them. Each subclass names one kind of
failure so callers (and the conformance suite) can tell them apart.
"""

from __future__ import annotations


class VecfaceError(Exception):
    """Base class of every error vecface raises deliberately."""


class InvalidArgument(VecfaceError, ValueError):
    """An argument has the wrong type or value (k <= 0, an empty id, ...)."""


class DimensionMismatch(InvalidArgument):
    """A vector's length differs from the collection's dimension."""

    def __init__(self, expected: int, got: int, what: str = "vector"):
        super().__init__(f"{what} has dimension {got}, but the collection expects {expected}")
        self.expected = expected
        self.got = got


class NonFiniteVector(InvalidArgument):
    """A vector holds NaN or infinity."""


class InvalidName(InvalidArgument):
    """A collection (or other identifier) name is not allowed."""


class InvalidFilter(InvalidArgument):
    """A metadata filter names an unknown field or has an unusable value."""


class UnknownCollection(VecfaceError, LookupError):
    """The collection does not exist (and was not asked to be created)."""


class UnknownRecord(VecfaceError, LookupError):
    """No record with that id is stored in the collection."""


class StoreClosed(VecfaceError):
    """The store handle was closed (or dropped) and cannot be used any more."""


class UnsupportedOperation(VecfaceError):
    """The backend has no way to do this (for example a one-row-at-a-time insert in-process)."""


class CollectionMismatch(VecfaceError):
    """An existing collection has a different dimension or metric than requested."""


class UnsupportedIndex(VecfaceError):
    """The backend has no implementation of the requested index kind."""


class UnknownBackend(VecfaceError, LookupError):
    """No backend is registered under that name."""


class BackendUnavailable(VecfaceError):
    """A backend cannot be used here: a server is down or not reachable, or it failed to start."""


class MissingDependency(BackendUnavailable, ImportError):
    """A Python package a backend or embedder needs is not installed.

    Also an ``ImportError`` so ``except ImportError`` keeps working.
    """

    def __init__(self, package: str, extra: str | None = None, purpose: str = ""):
        hint = f"pip install 'vecface[{extra}]'" if extra else f"pip install {package}"
        what = f" for {purpose}" if purpose else ""
        super().__init__(f"the package '{package}' is needed{what}; install it with: {hint}")
        self.package = package
        self.extra = extra


class BackendError(VecfaceError):
    """The backend refused or failed an operation (reported with its own message)."""


class CollectionBusy(BackendError):
    """Another writer held the collection's writer lock for longer than the wait allowed."""


class IngestFailed(BackendError):
    """Some records of a call were not stored; ``failures`` lists the (id, reason) of every one
    (the message may name only the first few)."""

    def __init__(self, message: str, failures: list[tuple[str, str]] | None = None):
        super().__init__(message)
        self.failures = failures or []


class ModelUnavailable(VecfaceError):
    """An embedding model's weights are not present here."""


class NoFaceFound(VecfaceError):
    """A query image holds no face (or several, or not the one asked for). ``faces`` lists the
    faces found (number, bbox, score) and ``image_size`` the image's [width, height], where known."""

    def __init__(self, message: str, faces: list[dict] | None = None, image_size: list[int] | None = None):
        super().__init__(message)
        self.faces = list(faces or [])
        self.image_size = image_size


class ImageError(VecfaceError):
    """An image cannot be read or decoded."""


__all__ = [name for name, obj in list(globals().items()) if isinstance(obj, type) and issubclass(obj, Exception)]
