"""CLIP image and text vectors through sentence-transformers.

CLIP weights are never downloaded at run time: a model name is looked up in the Hugging Face cache
only (``local_files_only``), a directory is loaded as is. Set ``VECFACE_ALLOW_DOWNLOAD=1`` to let
sentence-transformers fetch a missing model (on a connected machine).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import InvalidArgument, MissingDependency, ModelUnavailable
from .base import DEFAULT_CLIP_MODEL, Embedder, EmbedderSpec, Item, check_device, l2_normalise

# Loaded models, keyed by (model, device): loading ViT-B/32 takes seconds, so each process loads a
# model once. Explicit and small; clear it with clear_model_cache().
_MODEL_CACHE: dict[tuple[str, str], Any] = {}
_MODEL_LOCK = threading.Lock()


def clear_model_cache() -> None:
    with _MODEL_LOCK:
        _MODEL_CACHE.clear()


def torch_device(device: str | None = None) -> str:
    """The torch device for ``device``: ``cpu``; ``cuda`` (or ``cuda:N``), refused where torch
    sees no CUDA device; ``auto`` or None: cuda when present, else cpu."""
    device = check_device(device)
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InvalidArgument(f"--device {device} asked for, but torch sees no CUDA device here "
                              f"(torch {torch.__version__}, CUDA build {torch.version.cuda or 'none'}); "
                              "use --device cpu or auto")
    return device


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
    device = torch_device(device)
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
        from ..images import decode_image, shrink

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
