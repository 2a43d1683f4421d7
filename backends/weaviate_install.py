"""Getting the ``weaviate-server`` binary vecface runs (``vecface weaviate install``).

``go install github.com/weaviate/weaviate/cmd/weaviate-server@v<PINNED_VERSION>`` with
``CGO_ENABLED=0`` and ``GOBIN`` set to a per-version cache directory (``$VECFACE_WEAVIATE_BIN_DIR``,
else ``<user cache dir>/vecface/weaviate/v<version>/``). The build is skipped when that binary is
already there. The binary lives in the user's *cache* directory, not in ``$VECFACE_HOME``, so test
sessions (each with a fresh ``VECFACE_HOME``) and every data directory share one build. Without a
Go toolchain, the release archive that weaviate-client's embedded mode downloads is used instead
(needs network access to github.com); without either, the error says how to get a server (Go,
``compose/docker-compose.yml``, or ``VECFACE_WEAVIATE_URL``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from vecface.errors import BackendUnavailable

PINNED_VERSION = "1.38.13"
GO_PACKAGE = "github.com/weaviate/weaviate/cmd/weaviate-server"
BINARY_NAME = "weaviate-server"

NO_SERVER_HELP = (
    "To get a Weaviate server, either\n"
    "  - install Go (https://go.dev/dl/, 1.26 or newer) and run: vecface weaviate install\n"
    "  - run the compose file: docker compose -f compose/docker-compose.yml up -d weaviate\n"
    "    and set VECFACE_WEAVIATE_URL=http://127.0.0.1:8080 (gRPC on 50051)\n"
    "  - or point vecface at any Weaviate server: VECFACE_WEAVIATE_URL=<url> "
    "(VECFACE_WEAVIATE_GRPC_PORT, VECFACE_WEAVIATE_API_KEY)"
)


def bin_dir(version: str = PINNED_VERSION) -> Path:
    """Where the binary of ``version`` is kept: $VECFACE_WEAVIATE_BIN_DIR, else the user cache dir."""
    override = os.environ.get("VECFACE_WEAVIATE_BIN_DIR")
    if override:
        return Path(override).expanduser().resolve()
    import platformdirs

    return Path(platformdirs.user_cache_dir("vecface", appauthor=False)) / "weaviate" / f"v{version}"


def binary_path(version: str = PINNED_VERSION) -> Path:
    return bin_dir(version) / BINARY_NAME


def find_binary(version: str = PINNED_VERSION) -> Path | None:
    path = binary_path(version)
    return path if path.is_file() and os.access(path, os.X_OK) else None


@dataclass
class InstallResult:
    path: Path
    version: str
    method: str  # "cached", "go install", "download"
    seconds: float

    def describe(self) -> str:
        if self.method == "cached":
            return f"Weaviate {self.version} is already installed: {self.path}"
        return f"Weaviate {self.version} installed with {self.method} in {self.seconds:.1f} s: {self.path}"


def install(version: str = PINNED_VERSION, *, force: bool = False,
            echo: Callable[[str], None] | None = None, allow_download: bool = True) -> InstallResult:
    """Make sure the ``weaviate-server`` binary of ``version`` is in :func:`bin_dir`.

    Builds it with ``go install`` (CGO off) when Go is on PATH; otherwise downloads the release
    archive (as weaviate-client's embedded mode does) when ``allow_download``. Skips both when the
    binary is already there (``force`` rebuilds). Raises BackendUnavailable with what to do if
    neither works.
    """
    echo = echo or (lambda msg: print(msg, file=sys.stderr, flush=True))
    target = binary_path(version)
    t0 = time.perf_counter()
    if not force and find_binary(version):
        return InstallResult(target, version, "cached", time.perf_counter() - t0)
    target.parent.mkdir(parents=True, exist_ok=True)
    go = shutil.which("go")
    if go:
        _go_install(go, version, target.parent, echo)
        method = "go install"
    elif allow_download:
        echo(f"no Go toolchain on PATH; downloading the Weaviate {version} release archive instead")
        try:
            _download(version, target, echo)
        except Exception as e:
            raise BackendUnavailable(
                f"no Go toolchain on PATH to build Weaviate {version}, and downloading the release "
                f"failed ({type(e).__name__}: {e}).\n{NO_SERVER_HELP}") from None
        method = "download"
    else:
        raise BackendUnavailable(f"no Go toolchain on PATH to build Weaviate {version}.\n{NO_SERVER_HELP}")
    if not find_binary(version):
        raise BackendUnavailable(f"the Weaviate build finished but {target} is missing")
    return InstallResult(target, version, method, time.perf_counter() - t0)


def _go_install(go: str, version: str, gobin: Path, echo: Callable[[str], None]) -> None:
    env = dict(os.environ, CGO_ENABLED="0", GOBIN=str(gobin))
    cmd = [go, "install", f"{GO_PACKAGE}@v{version}"]
    echo(f"building Weaviate {version}: {' '.join(cmd)}  (CGO_ENABLED=0 GOBIN={gobin})")
    echo("the first build downloads ~200 modules and compiles for several minutes; later builds use Go's cache")
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    done = threading.Event()

    def heartbeat() -> None:  # go prints nothing while it compiles; show that it is alive
        while not done.wait(30):
            echo(f"  [{time.perf_counter() - t0:5.0f} s] still building ...")

    threading.Thread(target=heartbeat, daemon=True).start()
    tail: list[str] = []
    downloads = 0
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip()
            tail = (tail + [line])[-30:]
            if line.startswith("go: downloading"):
                downloads += 1
                if downloads % 25 == 1:
                    echo(f"  [{time.perf_counter() - t0:5.0f} s] {line} ({downloads} modules so far)")
            else:
                echo(f"  {line}")
        rc = proc.wait()
    finally:
        done.set()
        if proc.poll() is None:
            proc.kill()
    if rc != 0:
        raise BackendUnavailable(
            f"'go install {GO_PACKAGE}@v{version}' failed (exit {rc}):\n" + "\n".join(tail))
    echo(f"built in {time.perf_counter() - t0:.1f} s")


def _download(version: str, target: Path, echo: Callable[[str], None]) -> None:
    """Fetch the release binary with weaviate-client's embedded mode, then move it into place.
    The embedded mode names its download ``weaviate-v<version>-<hash>`` in ``binary_path``: that
    file, found by its name, is the binary (no private attribute of the client is read)."""
    import tempfile

    from weaviate.embedded import EmbeddedOptions, EmbeddedV4

    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        emb = EmbeddedV4(EmbeddedOptions(binary_path=tmp, persistence_data_path=tmp, version=version))
        echo(f"  downloading the Weaviate {version} release for this platform")
        emb.ensure_weaviate_binary_exists()
        found = [p for p in Path(tmp).glob(f"weaviate-v{version}-*") if p.is_file()]
        if len(found) != 1:
            raise RuntimeError(f"expected one downloaded weaviate binary, found {len(found)}")
        os.replace(found[0], target)
        target.chmod(0o755)


def go_module_version(path: Path) -> str | None:
    """The weaviate module version a binary was built from (``go version -m``), if Go is here."""
    go = shutil.which("go")
    if not go:
        return None
    try:
        out = subprocess.run([go, "version", "-m", str(path)], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0] == "mod" and parts[1] == "github.com/weaviate/weaviate":
            return parts[2].lstrip("v")
    return None
