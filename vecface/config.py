"""Where vecface keeps its data, and how connection strings are shown safely."""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path


def data_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """vecface's data directory: ``override``, else $VECFACE_HOME, else the user's data dir."""
    if override:
        path = Path(override).expanduser()
    elif os.environ.get("VECFACE_HOME"):
        path = Path(os.environ["VECFACE_HOME"]).expanduser()
    else:
        import platformdirs

        path = Path(platformdirs.user_data_dir("vecface", appauthor=False))
    path.mkdir(parents=True, exist_ok=True)
    return path.resolve()


_PASSWORD_IN_URL = re.compile(r"(://[^:/@\s]*:)([^@\s]*)(@)")
_PASSWORD_KV = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def redact(text: str) -> str:
    """Hide passwords in DSNs / URLs (``postgresql://u:secret@h`` -> ``postgresql://u:***@h``)
    and in ``password=...`` key/value strings."""
    text = _PASSWORD_IN_URL.sub(lambda m: m.group(1) + ("***" if m.group(2) else "") + m.group(3), str(text))
    return _PASSWORD_KV.sub(r"\1***", text)


def quiet_runtime_dir_warning() -> None:
    """platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); that is harmless here."""
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
