"""How the Weaviate backend writes objects: weaviate-client ``insert_many``, one gRPC batch request
of up to :data:`BATCH_OBJECTS` objects at a time, up to :data:`IN_FLIGHT` requests at once and the
next batch made and queued behind them (a thread that is done sends it at once, while the server
indexes the batches before), every failed object reported with the request's own answer. An
object whose error is a replica's connection failing under the coordinator (a node of a cluster
dying mid-write: ``rpc error: code = Canceled ... the client connection is closing``) is sent
again, at most :data:`RETRIES` times; objects are keyed by their id, so sending one twice stores it
once. Any other refusal is reported, not retried.

``bench/weaviate_import.py`` measures this side by side with the client's batch contexts
(``fixed_size``, ``dynamic``, ``rate_limit``, server-side ``stream``) and with ``insert_many`` one
or two requests at a time.
"""

from __future__ import annotations

import itertools
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Callable, Iterable

from vecface.errors import BackendUnavailable, IngestFailed

from . import weaviate_conn as conn
from .weaviate_schema import data_objects

if TYPE_CHECKING:  # pragma: no cover
    from .weaviate_conn import Options

BATCH_OBJECTS = 1000  # objects per gRPC batch request (at most: a smaller upsert batch_size makes them smaller)
IN_FLIGHT = 2  # batch requests one import keeps sent at once (see bench/weaviate_import.py)
MAX_REPORTED_ERRORS = 5  # refused objects the message names; IngestFailed.failures holds every one
RETRIES = 2  # sends again of the objects a transient replica error refused (see the module docstring)
#: what a coordinator says of a replica it lost mid-write, beyond the words of an unreachable server
_REPLICA_LOST = ("connection is closing", "code = canceled", "code = deadlineexceeded")


def transient(message: str) -> bool:
    """Whether a per-object error says a replica could not be reached (a server that is gone, in
    :func:`weaviate_conn.is_gone`'s words, or a replica lost mid-write), not that the object is bad."""
    return conn.is_gone(RuntimeError(message)) or any(t in message.lower() for t in _REPLICA_LOST)


def import_objects(coll: Any, cls: str, objects: Iterable[tuple[str, dict[str, Any], Any]], total: int,
                   opts: "Options", size: int = BATCH_OBJECTS) -> None:
    """Import (uuid, properties, vector) tuples into ``coll`` (the client's handle of class ``cls``) in
    requests of ``size`` objects; raise IngestFailed (or BackendUnavailable when the server went away)
    for any failed object, after sending every batch: its ``failures`` list every refused object's
    (id, reason), its message the first MAX_REPORTED_ERRORS and how many more."""
    from weaviate.exceptions import WeaviateInsertManyAllFailedError

    failed: list[tuple[tuple[str, dict[str, Any], Any], str]] = []  # (object, error)

    def send(chunk: list) -> Any:
        return coll.data.insert_many(data_objects(chunk))

    def collect(chunk: list, result: Callable[[], Any]) -> None:
        """Record the failed objects of ``chunk``, whose answer ``result()`` gives."""
        try:
            res = result()
        except WeaviateInsertManyAllFailedError as e:
            if conn.is_gone(e):
                raise
            failed.extend((o, conn.scrub(str(e), opts)) for o in chunk)
            return
        failed.extend((chunk[i], str(err.message)) for i, err in res.errors.items())

    it = iter(objects)
    pending: list[tuple[list, Future]] = []
    with ThreadPoolExecutor(IN_FLIGHT, thread_name_prefix="vecface-weaviate-import") as pool:
        try:
            while chunk := list(itertools.islice(it, size)):
                pending.append((chunk, pool.submit(send, chunk)))
                if len(pending) > IN_FLIGHT:  # one more made and queued (see the module docstring)
                    done, future = pending.pop(0)
                    collect(done, future.result)
            while pending:
                done, future = pending.pop(0)
                collect(done, future.result)
        finally:
            for _, future in pending:  # an error ended the import: send nothing more
                future.cancel()
    for attempt in range(RETRIES):
        again = [o for o, msg in failed if transient(msg)]
        if not again:
            break
        failed = [(o, msg) for o, msg in failed if not transient(msg)]
        time.sleep(0.5 * (attempt + 1))  # the cluster marks the dead replica down meanwhile
        for start in range(0, len(again), size):
            chunk = again[start:start + size]
            collect(chunk, lambda: send(chunk))
    if not failed:
        return
    named = [(str(o[1].get("vid") or o[0]), conn.scrub(msg, opts)) for o, msg in failed]
    detail = "; ".join(f"{i}: {msg}" for i, msg in named[:MAX_REPORTED_ERRORS])
    more = len(named) - MAX_REPORTED_ERRORS
    message = (f"{len(failed)} of {total} objects were not stored in Weaviate collection {cls} "
               f"(the others were); first errors: {detail}"
               + (f" (and {more} more: every one is in the error's failures)" if more > 0 else ""))
    if all(conn.is_gone(RuntimeError(msg)) for _, msg in named):
        raise BackendUnavailable(message)
    raise IngestFailed(message, named)
