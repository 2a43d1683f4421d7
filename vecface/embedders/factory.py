"""Build an embedder from its kind or a stored :class:`EmbedderSpec`."""

from __future__ import annotations

from typing import Any

from ..errors import InvalidArgument
from .base import DEFAULT_CLIP_MODEL, Embedder, EmbedderSpec
from .clip import CLIPEmbedder
from .faces import ClipFaceEmbedder, DetectorOptions, DlibFaceEmbedder


def make_embedder(spec: EmbedderSpec | str = "clip", *, model: str | None = None, device: str | None = None,
                  **detector: Any) -> Embedder:
    """Build an embedder: ``make_embedder("clip")``, ``make_embedder("face-dlib", upsample=2)``,
    ``make_embedder("face-clip", model="/models/my-clip")`` or from a stored :class:`EmbedderSpec`.
    ``device``: cpu, cuda (cuda:N) or auto (None: cuda when present); refused where it cannot be used."""
    if isinstance(spec, str):
        spec = EmbedderSpec(kind=spec, model=model, detector={k: v for k, v in detector.items() if v is not None})
    elif model is not None or detector:
        spec = EmbedderSpec(kind=spec.kind, model=model or spec.model,
                            detector={**spec.detector, **{k: v for k, v in detector.items() if v is not None}})
    if spec.kind == "clip":
        if spec.detector:
            raise InvalidArgument("face detector options apply to face-clip and face-dlib only")
        return CLIPEmbedder(spec.model or DEFAULT_CLIP_MODEL, device=device)
    opts = DetectorOptions.from_dict(spec.detector)
    if spec.kind == "face-dlib":
        if spec.model:
            raise InvalidArgument("face-dlib uses the dlib models from face_recognition_models; --model is for CLIP")
        return DlibFaceEmbedder(opts, device=device)
    return ClipFaceEmbedder(CLIPEmbedder(spec.model or DEFAULT_CLIP_MODEL, device=device), opts)
