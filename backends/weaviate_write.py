"""How the Weaviate backend writes objects: weaviate-client ``insert_many``, one gRPC batch request
of up to :data:`BATCH_OBJECTS` objects at a time, up to :data:`IN_FLIGHT` requests at once (the next
batch is encoded while the server indexes the one before), every failed object reported with the
request's own answer, nothing retried behind vecface's back.

``bench/weaviate_import.py`` measures this side by side with the client's batch contexts
(``fixed_size``, ``dynamic``, ``rate_limit``, server-side ``stream``) and with ``insert_many`` one
or two requests at a time.
"""

from __future__ import annotations

import itertools
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Iterable

from vecface.errors import BackendUnavailable, IngestFailed

from . import weaviate_conn as conn
from .weaviate_schema import VECTOR

if TYPE_CHECKING:  # pragma: no cover
    from .weaviate_conn import Options

BATCH_OBJECTS = 1000  # objects per gRPC batch request
IN_FLIGHT = 2  # batch requests one import keeps sent at once (see bench/weaviate_import.py)
MAX_REPORTED_ERRORS = 5


def import_objects(coll: Any, cls: str, objects: Iterable[tuple[str, dict[str, Any], Any]], total: int,
                   opts: "Options") -> None:
    """Import (uuid, properties, vector) tuples into ``coll`` (the client's handle of class ``cls``);
    raise IngestFailed (or BackendUnavailable when the server went away) for any failed object, after
    sending every batch."""
    from weaviate.classes.data import DataObject
    from weaviate.exceptions import WeaviateInsertManyAllFailedError

    failed: list[tuple[str, str]] = []

    def send(chunk: list) -> Any:
        return coll.data.insert_many([DataObject(properties=p, uuid=u, vector={VECTOR: v}) for u, p, v in chunk])

    def collect(chunk: list, future: Future) -> None:
        try:
            res = future.result()
        except WeaviateInsertManyAllFailedError as e:
            if conn.is_gone(e):
                raise
            failed.extend((str(p.get("vid") or u), conn.scrub(str(e), opts)) for u, p, _ in chunk)
            return
        failed.extend((str(chunk[i][1].get("vid") or chunk[i][0]), str(err.message)) for i, err in res.errors.items())

    it = iter(objects)
    pending: list[tuple[list, Future]] = []
    with ThreadPoolExecutor(IN_FLIGHT, thread_name_prefix="vecface-weaviate-import") as pool:
        try:
            while chunk := list(itertools.islice(it, BATCH_OBJECTS)):
                pending.append((chunk, pool.submit(send, chunk)))
                if len(pending) >= IN_FLIGHT:
                    collect(*pending.pop(0))
            while pending:
                collect(*pending.pop(0))
        finally:
            for _, future in pending:  # an error ended the import: send nothing more
                future.cancel()
    if not failed:
        return
    detail = "; ".join(f"{i}: {msg}" for i, msg in failed[:MAX_REPORTED_ERRORS])
    message = (f"{len(failed)} of {total} objects were not stored in Weaviate collection {cls} "
               f"(the others were); first errors: {conn.scrub(detail, opts)}")
    if all(conn.is_gone(RuntimeError(msg)) for _, msg in failed):
        raise BackendUnavailable(message)
    raise IngestFailed(message, failed[:MAX_REPORTED_ERRORS])
