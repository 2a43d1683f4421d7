"""The vecface web page and its JSON API (``vecface serve``).

Needs the ``web`` extra (FastAPI, uvicorn, python-multipart)::

    from vecface.web import create_app
    app = create_app("faiss", "photos")          # then: uvicorn.run(app, host="127.0.0.1")
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def create_app(*args: Any, **kwargs: Any):
    """See :func:`vecface.web.app.create_app`."""
    from .app import create_app as _create_app

    return _create_app(*args, **kwargs)
