"""The embedder interface: one interface for whole-image CLIP vectors and per-face vectors.

Every embedder has a ``kind`` (``clip``, ``face-clip``, ``face-dlib``), a ``name``, a dimension
``dim``, ``embed_images(images)`` and, where the model has a text tower, ``embed_texts(texts)``.
Vectors are float32 and L2-normalised (images and texts alike), so cosine distance and inner
product rank them the same way.

Ingest and search use the two-step form: ``prepare(image)`` is the CPU work that may run in a
thread or a worker process (decode, EXIF orientation, RGB, resize), ``extract(prepared)`` returns,
for each image, the list of :class:`Item` to store: one whole-image item (``bbox`` None) for
``clip``, one per detected face for the face embedders.

The embedders themselves are in :mod:`.clip` and :mod:`.faces`; :func:`.factory.make_embedder`
builds one from its kind or a stored :class:`EmbedderSpec`.
"""

from __future__ import annotations

import abc
import json
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from ..errors import InvalidArgument

DEFAULT_CLIP_MODEL = "clip-ViT-B-32"
EMBEDDER_KINDS = ("clip", "face-clip", "face-dlib")


DEVICES = ("auto", "cpu", "cuda")


def check_device(device: str | None) -> str:
    """``device`` as given (``auto`` for None) if it is one vecface knows: auto, cpu, cuda, cuda:N."""
    device = "auto" if device is None else str(device).strip().lower()
    base, _, index = device.partition(":")
    if base not in DEVICES or (index and (base != "cuda" or not index.isdigit())):
        raise InvalidArgument(f"unknown device {device!r}; use cpu, cuda (or cuda:N) or auto")
    return device


@dataclass
class Item:
    """One vector to store for an image: the whole image (``bbox`` None) or one face."""

    vector: np.ndarray
    bbox: tuple[int, int, int, int] | None = None  # [top, right, bottom, left] in image pixels
    score: float | None = None  # detector confidence, where the detector gives one


def l2_normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 1:
        x = x[None, :]
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(x / norms, dtype=np.float32)


class Embedder(abc.ABC):
    """The interface every embedder implements."""

    kind: str = "?"
    per_face: bool = False  # one record per detected face (True) or per image (False)
    supports_text: bool = False
    name: str
    dim: int

    def prepare(self, image: Any, *, max_pixels: int | None = None) -> Any:
        """CPU work for one image that is safe to run in a worker thread. ``image``: a path,
        bytes, a PIL image or an array. Raises ImageError for an unusable image."""
        from ..images import decode_image

        return decode_image(image, max_pixels=max_pixels)

    @abc.abstractmethod
    def extract(self, prepared: Sequence[Any]) -> list[list[Item]]:
        """For each prepared image, the items to store (possibly none: no face found)."""

    @abc.abstractmethod
    def embed_prepared(self, prepared: Sequence[Any]) -> np.ndarray:
        """One vector per prepared image, shape (n, dim)."""

    def embed_images(self, images: Iterable[Any], batch_size: int = 32, workers: int = 2) -> np.ndarray:
        """One L2-normalised float32 vector per image, shape (n, dim).

        Images are decoded and resized in a thread pool while the previous batch is embedded.
        Face embedders treat each image as a face crop (the whole image is the face box); use
        :meth:`extract` (or :func:`vecface.embedders.faces.detect_faces`) for photos.
        """
        out = [self.embed_prepared(batch) for batch in pipelined(list(images), self.prepare, batch_size, workers)]
        if not out:
            return np.zeros((0, self.dim), dtype=np.float32)
        return l2_normalise(np.concatenate(out, axis=0))

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        raise InvalidArgument(
            f"the {self.kind} embedder has no text tower, so it cannot embed text; "
            "text search needs a collection ingested with --embedder clip or face-clip")

    def spec(self) -> "EmbedderSpec":
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} dim={self.dim}>"


def pipelined(items: list[Any], prepare: Callable[[Any], Any], batch_size: int, workers: int = 2):
    """Yield lists of ``prepare(item)`` per batch, in order. While the caller works on one batch,
    the next one is being prepared in a thread pool. Exceptions from ``prepare`` propagate."""
    batch_size = max(1, int(batch_size))
    batches = [items[i:i + batch_size] for i in range(0, len(items), batch_size)]
    if not batches:
        return
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="vecface-prep") as pool:
        pending: deque[list[Future]] = deque()
        it = iter(batches)
        for _ in range(2):
            nxt = next(it, None)
            if nxt is not None:
                pending.append([pool.submit(prepare, x) for x in nxt])
        while pending:
            futures = pending.popleft()
            nxt = next(it, None)
            if nxt is not None:
                pending.append([pool.submit(prepare, x) for x in nxt])
            try:
                yield [f.result() for f in futures]
            except BaseException:
                for fs in pending:
                    for f in fs:
                        f.cancel()
                raise


# ---------------------------------------------------------------- embedder specs

@dataclass(frozen=True)
class EmbedderSpec:
    """What a collection was ingested with; stored in the ingest manifest so search can rebuild
    the same embedder from --backend/--collection alone."""

    kind: str = "clip"
    model: str | None = None  # CLIP model name or directory (clip, face-clip)
    detector: dict[str, Any] = field(default_factory=dict)  # face detector options (face-*)

    def __post_init__(self):
        if self.kind not in EMBEDDER_KINDS:
            raise InvalidArgument(f"unknown embedder {self.kind!r}; use one of {', '.join(EMBEDDER_KINDS)}")

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "EmbedderSpec":
        d = json.loads(text)
        return cls(kind=d["kind"], model=d.get("model"), detector=dict(d.get("detector") or {}))

    def identity(self) -> tuple[str, str | None]:
        """What must match between runs on one collection (detector options may change)."""
        return self.kind, (self.model or DEFAULT_CLIP_MODEL) if self.kind != "face-dlib" else None
