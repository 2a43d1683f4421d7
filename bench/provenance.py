"""What a run was measured on: the machine and the versions of the software (servers' versions
come from the stores themselves, ``VectorStore.server_versions()``)."""

from __future__ import annotations

import os
import platform
from typing import Any

import numpy as np

import vecface


def _pkg_version(name: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:
        return None


def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        mem = None
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_bytes": mem, "os": platform.platform(),
            "python": platform.python_version(), "hostname_hash": hex(hash(platform.node()) & 0xFFFF)}


def software_versions() -> dict[str, Any]:
    v = {"vecface": vecface.__version__, "numpy": np.__version__, "python": platform.python_version()}
    try:
        import faiss

        v["faiss"] = faiss.__version__
    except ImportError:
        v["faiss"] = None
    for pkg in ("psycopg", "pgvector", "weaviate-client", "h5py", "matplotlib"):
        # "pgvector" alone names the server extension (provenance.servers); this is the Python adapter
        v[pkg + "-python" if pkg == "pgvector" else pkg] = _pkg_version(pkg)
    return v
