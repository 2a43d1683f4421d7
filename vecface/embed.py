"""Embedders: one interface for whole-image CLIP vectors and per-face vectors.

Every embedder has a ``kind`` (``clip``, ``face-clip``, ``face-dlib``), a ``name``, a dimension
``dim``, ``embed_images(images)`` and, where the model has a text tower, ``embed_texts(texts)``.
Vectors are float32 and L2-normalised (images and texts alike), so cosine distance and inner
product rank them the same way.

Ingest and search use the two-step form: ``prepare(image)`` is the CPU work that may run in a
thread pool (decode, EXIF orientation, RGB, resize), ``extract(prepared)`` returns, for each
image, the list of :class:`Item` to store: one whole-image item (``bbox`` None) for ``clip``, one
per detected face for the face embedders.

CLIP weights are never downloaded at run time: a model name is looked up in the Hugging Face cache
only (``local_files_only``), a directory is loaded as is. Set ``VECFACE_ALLOW_DOWNLOAD=1`` to let
sentence-transformers fetch a missing model (on a connected machine).
"""

from __future__ import annotations

import abc
import json
import os
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from .errors import InvalidArgument, MissingDependency, ModelUnavailable

DEFAULT_CLIP_MODEL = "clip-ViT-B-32"
EMBEDDER_KINDS = ("clip", "face-clip", "face-dlib")


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
        from .images import decode_image

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
        :meth:`extract` (or :func:`vecface.faces.detect_faces`) for photos.
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


def make_embedder(spec: EmbedderSpec | str = "clip", *, model: str | None = None, device: str | None = None,
                  **detector: Any) -> Embedder:
    """Build an embedder: ``make_embedder("clip")``, ``make_embedder("face-dlib", upsample=2)``,
    ``make_embedder("face-clip", model="/models/my-clip")`` or from a stored :class:`EmbedderSpec`."""
    if isinstance(spec, str):
        spec = EmbedderSpec(kind=spec, model=model, detector={k: v for k, v in detector.items() if v is not None})
    elif model is not None or detector:
        spec = EmbedderSpec(kind=spec.kind, model=model or spec.model,
                            detector={**spec.detector, **{k: v for k, v in detector.items() if v is not None}})
    if spec.kind == "clip":
        if spec.detector:
            raise InvalidArgument("face detector options apply to face-clip and face-dlib only")
        return CLIPEmbedder(spec.model or DEFAULT_CLIP_MODEL, device=device)
    from .faces import ClipFaceEmbedder, DetectorOptions, DlibFaceEmbedder

    opts = DetectorOptions.from_dict(spec.detector)
    if spec.kind == "face-dlib":
        if spec.model:
            raise InvalidArgument("face-dlib uses the dlib models from face_recognition_models; --model is for CLIP")
        return DlibFaceEmbedder(opts)
    return ClipFaceEmbedder(CLIPEmbedder(spec.model or DEFAULT_CLIP_MODEL, device=device), opts)


# ---------------------------------------------------------------- CLIP through sentence-transformers

# Loaded models, keyed by (model, device): loading ViT-B/32 takes seconds, so each process loads a
# model once. Explicit and small; clear it with clear_model_cache().
_MODEL_CACHE: dict[tuple[str, str], Any] = {}
_MODEL_LOCK = threading.Lock()


def clear_model_cache() -> None:
    with _MODEL_LOCK:
        _MODEL_CACHE.clear()


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _how_to_provide(model: str) -> str:
    repo = model if "/" in model else f"sentence-transformers/{model}"
    return (f"the CLIP model {model!r} is not on this machine and vecface does not download at run time: "
            f"on a connected machine run `python -c \"from sentence_transformers import SentenceTransformer; "
            f"SentenceTransformer('{repo}')\"` and copy its Hugging Face cache (~/.cache/huggingface) here, "
            f"or pass a local model directory with --model DIR (or set VECFACE_ALLOW_DOWNLOAD=1 to let it download)")


def load_sentence_transformer(model: str = DEFAULT_CLIP_MODEL, device: str | None = None) -> Any:
    """The SentenceTransformer for ``model`` (a name in the HF cache or a local directory),
    loaded once per process and device."""
    allow_download = os.environ.get("VECFACE_ALLOW_DOWNLOAD") == "1"
    if not allow_download:
        # before huggingface_hub is imported, so nothing tries the network
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import torch  # noqa: F401
        from sentence_transformers import SentenceTransformer
    except ImportError as e:
        raise MissingDependency(getattr(e, "name", None) or "sentence-transformers", extra="clip",
                                purpose="CLIP embeddings") from e
    device = device or _default_device()
    path = Path(model).expanduser()
    looks_like_path = path.is_absolute() or model.startswith((".", "~")) or model.count("/") > 1 or path.exists()
    if looks_like_path:
        if not path.is_dir():
            raise ModelUnavailable(f"there is no model directory at {path}; pass a sentence-transformers "
                                   "CLIP directory (one with modules.json) or a model name in the HF cache")
        source = str(path.resolve())
    else:
        source = model
    key = (source, device)
    with _MODEL_LOCK:
        if key in _MODEL_CACHE:
            return _MODEL_CACHE[key]
        import logging

        quiet = [logging.getLogger(n) for n in ("sentence_transformers", "transformers")]
        levels = [lg.level for lg in quiet]
        for lg in quiet:  # ST warns that its legacy CLIPModel module is deprecated; not our user's concern
            lg.setLevel(logging.ERROR)
        try:
            st = SentenceTransformer(source, device=device, local_files_only=not allow_download)
        except MissingDependency:
            raise
        except ImportError as e:
            raise MissingDependency(getattr(e, "name", None) or str(e), extra="clip", purpose="CLIP embeddings") from e
        except Exception as e:
            if looks_like_path:
                raise ModelUnavailable(f"the model directory {path} could not be loaded as a sentence-transformers "
                                       f"CLIP model ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
            raise ModelUnavailable(_how_to_provide(model)) from None
        finally:
            for lg, lvl in zip(quiet, levels):
                lg.setLevel(lvl)
        st.eval()
        _MODEL_CACHE[key] = st
        return st


def _image_size(st: Any) -> int:
    """The side the model's image processor crops to (224 for ViT-B/32)."""
    for module in st:
        proc = getattr(module, "processor", None)
        ip = getattr(proc, "image_processor", None) or proc
        for attr in ("crop_size", "size"):
            val = getattr(ip, attr, None)
            if val is not None and not isinstance(val, int):  # a dict, or transformers' SizeDict
                get = val.get if isinstance(val, dict) else (lambda k, v=val: getattr(v, k, None))
                val = get("shortest_edge") or get("height")
            if isinstance(val, int) and val > 0:
                return val
    return 224


class CLIPEmbedder(Embedder):
    """CLIP image and text vectors through sentence-transformers (default ``clip-ViT-B-32``, 512-d)."""

    kind = "clip"
    supports_text = True

    def __init__(self, model: str = DEFAULT_CLIP_MODEL, device: str | None = None):
        model = str(model)
        local = Path(model).expanduser()
        # a directory is remembered by its absolute path, so later runs from elsewhere find it
        self.model_name = str(local.resolve()) if local.is_dir() else model
        self.model = load_sentence_transformer(model, device)
        self.device = str(self.model.device)
        self.image_size = _image_size(self.model)
        dim = None
        for getter in ("get_embedding_dimension", "get_sentence_embedding_dimension"):
            fn = getattr(self.model, getter, None)
            if fn is not None:
                import warnings

                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", FutureWarning)
                    dim = fn()
                break
        if not dim:
            dim = int(self._encode(["a photo"]).shape[1])
        self.dim = int(dim)
        self.name = f"clip:{model}"

    def spec(self) -> EmbedderSpec:
        return EmbedderSpec("clip", self.model_name)

    def prepare(self, image: Any, *, max_pixels: int | None = None) -> Any:
        """Decode (JPEG at reduced scale where possible), orient, RGB, and shrink to about the
        model's input size so the processor does little work on the main thread."""
        from .images import decode_image, shrink

        img = decode_image(image, draft=self.image_size, max_pixels=max_pixels)
        return shrink(img, short_side=self.image_size)[0]

    def _encode(self, inputs: list[Any]) -> np.ndarray:
        import torch

        with torch.inference_mode():
            vecs = self.model.encode(inputs, batch_size=max(1, len(inputs)), convert_to_numpy=True,
                                     normalize_embeddings=True, show_progress_bar=False)
        return l2_normalise(np.asarray(vecs, dtype=np.float32))

    def embed_prepared(self, prepared: Sequence[Any]) -> np.ndarray:
        if not prepared:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self._encode(list(prepared))

    def extract(self, prepared: Sequence[Any]) -> list[list[Item]]:
        vecs = self.embed_prepared(prepared)
        return [[Item(v)] for v in vecs]

    def embed_texts(self, texts: Sequence[str] | str) -> np.ndarray:
        if isinstance(texts, str):
            texts = [texts]
        texts = list(texts)
        if not all(isinstance(t, str) and t.strip() for t in texts):
            raise InvalidArgument("texts must be non-empty strings")
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self._encode(texts)


# ---------------------------------------------------------------- random-weight CLIP models

_TINY_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


def build_random_clip(out_dir: str | os.PathLike[str], arch: str = "tiny", seed: int = 0) -> Path:
    """Save a CLIP with random weights as a sentence-transformers directory and return its path.

    ``arch="tiny"``: a few-layer model (16-d vectors, 32-px images) for tests. ``arch="ViT-B-32"``:
    the exact architecture of ``clip-ViT-B-32`` (512-d, 224-px images), for throughput
    measurements where the real weights are absent: speed does not depend on the weight values.
    The tokenizer is a character-level BPE vocabulary written here (no download).
    """
    try:
        import torch
        from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer
    except ImportError as e:
        raise MissingDependency(getattr(e, "name", None) or "transformers", extra="clip",
                                purpose="building a CLIP model") from e
    import logging
    import tempfile

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    vocab: dict[str, int] = {}
    for c in _TINY_ALPHABET:
        vocab[c] = len(vocab)
    for c in _TINY_ALPHABET:
        vocab[c + "</w>"] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    with tempfile.TemporaryDirectory() as tmp:
        hf = Path(tmp)
        (hf / "vocab.json").write_text(json.dumps(vocab))
        (hf / "merges.txt").write_text("#version: 0.2\n")
        tokenizer = CLIPTokenizer(str(hf / "vocab.json"), str(hf / "merges.txt"))
        special = dict(bos_token_id=vocab["<|startoftext|>"], eos_token_id=vocab["<|endoftext|>"],
                       pad_token_id=vocab["<|endoftext|>"])
        if arch == "tiny":
            config = CLIPConfig(
                text_config=dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                 num_attention_heads=2, max_position_embeddings=77, **special),
                vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                                   image_size=32, patch_size=8),
                projection_dim=16)
            size = 32
        elif arch in ("ViT-B-32", "clip-ViT-B-32"):
            # transformers' CLIPConfig defaults are openai/clip-vit-base-patch32
            config = CLIPConfig(text_config=dict(vocab_size=49408, **special), projection_dim=512)
            size = 224
        else:
            raise InvalidArgument(f"unknown random CLIP architecture {arch!r}; use tiny or ViT-B-32")
        torch.manual_seed(seed)
        model = CLIPModel(config)
        image_processor = CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
        CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(hf)
        model.save_pretrained(hf)
        from sentence_transformers import SentenceTransformer

        try:  # sentence-transformers >= 5.4
            from sentence_transformers.sentence_transformer.modules import CLIPModel as STCLIPModel
        except ImportError:  # pragma: no cover - older sentence-transformers
            from sentence_transformers.models import CLIPModel as STCLIPModel
        quiet = logging.getLogger("sentence_transformers")
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        try:
            SentenceTransformer(modules=[STCLIPModel(str(hf))], device="cpu").save(str(out))
        finally:
            quiet.setLevel(level)
    return out
