"""The vecface web page and its JSON API (``vecface serve``): a thin adapter over
:mod:`vecface.search`.

Modules: :mod:`.routes` (the FastAPI app: pages, API, error answers), :mod:`.service` (one open
collection and the JSON the page reads), :mod:`.uploads` (multipart parsing and upload checks),
:mod:`.thumbs` (thumbnails by record id), :mod:`.guard` (Host check, body limit, security
headers), :mod:`.schemas` (API shapes), :mod:`.errors` (status codes).

Needs the ``web`` extra (FastAPI, uvicorn, python-multipart)::

    from vecface.web import create_app
    app = create_app("faiss", "photos")          # then: uvicorn.run(app, host="127.0.0.1")
"""

from __future__ import annotations

from typing import Any

from .guard import LOCAL_HOSTS

__all__ = ["create_app", "LOCAL_HOSTS"]


def create_app(*args: Any, **kwargs: Any):
    """See :func:`vecface.web.routes.create_app` (imported on use: FastAPI is an optional extra)."""
    try:
        from .routes import create_app as _create_app
    except ImportError as e:
        from ..errors import MissingDependency

        raise MissingDependency(getattr(e, "name", None) or "fastapi", extra="web", purpose="vecface serve") from e
    return _create_app(*args, **kwargs)
