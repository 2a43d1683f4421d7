"""Reaching Weaviate: options (one server or several nodes, replication), the client, and the one
way every Weaviate failure becomes a vecface error.

Options (each also an environment variable, the argument winning):

- ``url`` (``VECFACE_WEAVIATE_URL``): one ``http(s)://host:port`` or several (a list, or a
  comma-separated string) -- the nodes of one cluster. vecface talks to the first live one and moves
  to the next live node when the one it talks to dies. The gRPC port of a node is ``grpc_port``
  (one port for all, or a list, one per URL; ``VECFACE_WEAVIATE_GRPC_PORT``, default 50051) or
  given in the URL itself as ``?grpc=PORT``. No URL: the local server vecface runs (``data_dir``).
- ``api_key`` (``VECFACE_WEAVIATE_API_KEY``; never printed).
- ``replication_factor`` (``VECFACE_WEAVIATE_REPLICATION``) and ``shards``
  (``VECFACE_WEAVIATE_SHARDS``): used when a collection is created.
- ``consistency`` = ``one`` | ``quorum`` | ``all`` (``VECFACE_WEAVIATE_CONSISTENCY``): the
  consistency level of every read and write (Weaviate's default, QUORUM, when not given).
"""

from __future__ import annotations

import functools
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence
from urllib.parse import parse_qs, urlsplit

import weaviate
from weaviate.classes.config import ConsistencyLevel
from weaviate.classes.init import AdditionalConfig, Auth, Timeout
from weaviate.exceptions import (
    WeaviateBaseError,
    WeaviateClosedClientError,
    WeaviateConnectionError,
    WeaviateGRPCUnavailableError,
    WeaviateStartUpError,
    WeaviateTimeoutError,
)

from vecface.config import redact
from vecface.errors import BackendError, BackendUnavailable, InvalidArgument, VecfaceError

from . import weaviate_server

DEFAULT_GRPC_PORT = 50051
CONSISTENCY = {"one": ConsistencyLevel.ONE, "quorum": ConsistencyLevel.QUORUM, "all": ConsistencyLevel.ALL}
# a write of one batch (1,000 objects) takes seconds even on a busy laptop; one stuck for minutes is
# a node that stopped answering (seen in a cluster whose raft leader was starved of CPU): give up
# after 120 s, so the store moves to another node and tries once more instead of waiting 10 minutes
_TIMEOUTS = Timeout(init=30, query=300, insert=120)
# words in a failure that mean "the node is gone", not "the request was wrong"
_GONE = ("unavailable", "connection refused", "connecterror", "connection reset", "failed to connect",
         "broken pipe", "socket closed", "deadline exceeded", "no route to host", "econnrefused")


@dataclass(frozen=True)
class Endpoint:
    url: str
    grpc_port: int


@dataclass(frozen=True)
class Options:
    """Where the store's Weaviate is and how its collections are replicated."""

    endpoints: tuple[Endpoint, ...]  # empty: the local server vecface runs
    api_key: str | None = None
    data_dir: Any = None
    replication_factor: int | None = None
    shards: int | None = None
    consistency: str | None = None
    secrets: tuple[str, ...] = field(default=(), repr=False)

    @property
    def local(self) -> bool:
        return not self.endpoints

    @property
    def consistency_level(self) -> ConsistencyLevel | None:
        return CONSISTENCY[self.consistency] if self.consistency else None


def _env_int(name: str, value: int | None, what: str) -> int | None:
    if value is None and os.environ.get(name):
        value = os.environ[name]
    if value is None:
        return None
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise InvalidArgument(f"{what} ({name}) must be a positive integer, got {value!r}") from None
    if isinstance(value, bool) or n < 1:
        raise InvalidArgument(f"{what} ({name}) must be a positive integer, got {value!r}")
    return n


def resolve(url: str | Sequence[str] | None = None, grpc_port: int | Sequence[int] | None = None,
            api_key: str | None = None, data_dir: Any = None, replication_factor: int | None = None,
            shards: int | None = None, consistency: str | None = None) -> Options:
    """Options from the arguments, else the environment; checked, with a clear error."""
    url = url or os.environ.get("VECFACE_WEAVIATE_URL") or None
    urls = [u.strip() for u in url.split(",")] if isinstance(url, str) else list(url or [])
    urls = [u for u in urls if u]
    if grpc_port is None and os.environ.get("VECFACE_WEAVIATE_GRPC_PORT"):
        grpc_port = [p for p in os.environ["VECFACE_WEAVIATE_GRPC_PORT"].split(",") if p.strip()]
    ports = list(grpc_port) if isinstance(grpc_port, (list, tuple)) else [grpc_port] * max(1, len(urls))
    if len(ports) == 1 and len(urls) > 1:
        ports = ports * len(urls)
    if urls and len(ports) != len(urls):
        raise InvalidArgument(f"{len(urls)} Weaviate URLs but {len(ports)} gRPC ports; give one port, or one per URL")
    endpoints = []
    for u, p in zip(urls, ports):
        parts = urlsplit(u)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise BackendUnavailable(f"a Weaviate url must be http(s)://host[:port], got {redact(u)!r}")
        in_url = parse_qs(parts.query).get("grpc", [None])[0]
        try:
            port = int(in_url or p or DEFAULT_GRPC_PORT)
        except (TypeError, ValueError):
            raise BackendUnavailable(f"the gRPC port of {redact(u)!r} must be a port number") from None
        endpoints.append(Endpoint(parts._replace(query="", fragment="").geturl().rstrip("/"), port))
    api_key = api_key or os.environ.get("VECFACE_WEAVIATE_API_KEY") or None
    consistency = consistency or os.environ.get("VECFACE_WEAVIATE_CONSISTENCY") or None
    if consistency is not None:
        consistency = str(consistency).strip().lower()
        if consistency not in CONSISTENCY:
            raise InvalidArgument(f"consistency must be one of one, quorum, all; got {consistency!r}")
    return Options(tuple(endpoints), api_key, data_dir,
                   _env_int("VECFACE_WEAVIATE_REPLICATION", replication_factor, "replication_factor"),
                   _env_int("VECFACE_WEAVIATE_SHARDS", shards, "shards"), consistency,
                   (api_key,) if api_key else ())


def scrub(text: str, opts: Options | None) -> str:
    text = redact(str(text)).strip()
    for s in (opts.secrets if opts else ()):
        text = text.replace(s, "***")
    return text


def is_gone(e: BaseException) -> bool:
    """Whether a failure means the server (node) cannot be reached, rather than a refused request."""
    if isinstance(e, (WeaviateConnectionError, WeaviateGRPCUnavailableError, WeaviateClosedClientError,
                      WeaviateStartUpError, WeaviateTimeoutError, ConnectionError)):
        return True
    if type(e).__module__.split(".")[0] in ("httpx", "httpcore", "grpc"):
        return True
    text = f"{type(e).__name__} {e}".lower()
    return any(w in text for w in _GONE)


def convert(e: BaseException, what: str, opts: Options | None = None) -> VecfaceError:
    """THE conversion of a Weaviate client failure into a vecface error (used by every operation)."""
    if isinstance(e, VecfaceError):
        return e
    text = scrub(str(e), opts)
    if is_gone(e):
        return BackendUnavailable(f"Weaviate {what} failed: the server cannot be reached ({text})")
    return BackendError(f"Weaviate {what} failed: {text}")


#: the exceptions a Weaviate call can fail with, beyond vecface's own
CLIENT_ERRORS: tuple[type[BaseException], ...] = (WeaviateBaseError, ConnectionError, TimeoutError)
try:  # the transports' own errors, where they leak through the client
    import grpc
    import httpx

    CLIENT_ERRORS += (grpc.RpcError, httpx.HTTPError)
except ImportError:  # pragma: no cover - both come with weaviate-client
    pass


@contextmanager
def converted(what: str, opts: Options | None = None) -> Iterator[None]:
    try:
        yield
    except CLIENT_ERRORS as e:
        raise convert(e, what, opts) from e


def operation(what: str, *, retry: bool = True) -> Callable:
    """The one error pattern of the Weaviate store's operations: a client failure becomes a vecface
    error (:func:`convert`); when the node is gone (or the store's watch closed its client because
    it died) and there are other nodes, the store moves to a live one (``store._fail_over()``) and
    the operation is tried once more."""

    def deco(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            client = self._client
            try:
                with converted(what, self._opts):
                    return fn(self, *args, **kwargs)
            except Exception as e:
                if client is None or client is not self._dead:
                    if not isinstance(e, BackendUnavailable):
                        raise
                # a failure of a client closed because its node died is the node's death
                if not (retry and self._fail_over()):
                    if isinstance(e, BackendUnavailable):
                        raise
                    raise BackendUnavailable(f"Weaviate {what} failed: the node "
                                             f"{describe(self._opts, self._node)} died") from e
            with converted(what, self._opts):
                return fn(self, *args, **kwargs)

        return wrapper

    return deco


def connect(opts: Options, start: int = 0) -> tuple[weaviate.WeaviateClient, int]:
    """A ready client for the first live endpoint from ``start`` on (round the list); its index.

    The local server: acquired from the supervisor (pair with :func:`release`)."""
    config = AdditionalConfig(timeout=_TIMEOUTS)
    if opts.local:
        info = weaviate_server.acquire(opts.data_dir)
        try:
            # skip_init_checks: no call to pypi.org for a client version check; readiness
            # was checked by the supervisor
            return weaviate.connect_to_local(host="127.0.0.1", port=info.http_port, grpc_port=info.grpc_port,
                                             additional_config=config, skip_init_checks=True), 0
        except Exception as e:
            weaviate_server.release(opts.data_dir)
            raise BackendUnavailable(f"cannot connect to the local Weaviate at {info.url}: {e}") from None
    problems = []
    n = len(opts.endpoints)
    for step in range(n):
        i = (start + step) % n
        ep = opts.endpoints[i]
        parts = urlsplit(ep.url)
        secure = parts.scheme == "https"
        try:
            client = weaviate.connect_to_custom(
                http_host=parts.hostname, http_port=parts.port or (443 if secure else 80), http_secure=secure,
                grpc_host=parts.hostname, grpc_port=ep.grpc_port, grpc_secure=secure,
                auth_credentials=Auth.api_key(opts.api_key) if opts.api_key else None,
                additional_config=config, skip_init_checks=True)
        except Exception as e:
            problems.append(f"{redact(ep.url)}: {scrub(str(e), opts)}")
            continue
        try:
            ready = client.is_ready()
        except Exception:
            ready = False
        if ready:
            return client, i
        client.close()
        problems.append(f"{redact(ep.url)}: not ready (or not reachable)")
    raise BackendUnavailable("cannot reach Weaviate at " + "; ".join(problems))


def close_quietly(client: Any) -> None:
    """Close a client whose node may be gone (then there is nothing to close cleanly)."""
    try:
        client.close()
    except Exception:  # the node is gone
        pass


@contextmanager
def session(opts: Options) -> Iterator[tuple[weaviate.WeaviateClient, int]]:
    """(client, node) of its own for one short task (a probe, a listing); closed and released after."""
    client, node = connect(opts)
    try:
        yield client, node
    finally:
        client.close()
        release(opts)


def release(opts: Options) -> None:
    if opts.local:
        weaviate_server.release(opts.data_dir)


def describe(opts: Options, index: int = 0) -> str:
    if opts.local:
        return "the local server"
    ep = opts.endpoints[index]
    more = f" (+{len(opts.endpoints) - 1} more nodes)" if len(opts.endpoints) > 1 else ""
    return f"{redact(ep.url)}, gRPC port {ep.grpc_port}{more}"


def node_alive(ep: Endpoint, timeout: float = 1.0) -> bool:
    """Whether a node answers its liveness probe."""
    try:
        return weaviate_server.http_get(ep.url + "/v1/.well-known/live", timeout)[0] == 200
    except Exception:  # refused, reset, timed out: not alive
        return False


class NodeWatch:
    """With several nodes: probe the node in use every ``interval`` seconds; after two failed probes
    call ``on_dead()`` (the store closes its client, so a call the client is retrying against the
    dead node for up to a minute fails at once and moves to a live node)."""

    def __init__(self, opts: Options, current: Any, on_dead: Any, interval: float = 1.0):
        import threading

        self._opts, self._current, self._on_dead, self._interval = opts, current, on_dead, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vecface-weaviate-watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        failures = 0
        while not self._stop.wait(self._interval):
            failures = 0 if node_alive(self._opts.endpoints[self._current()]) else failures + 1
            if failures >= 2:
                failures = 0
                self._on_dead()

    def stop(self) -> None:
        self._stop.set()
