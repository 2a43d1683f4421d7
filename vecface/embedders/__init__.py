"""Embedders: CLIP whole-image vectors (:mod:`.clip`) and per-face vectors (:mod:`.faces`) behind
one interface (:mod:`.base`), built by :func:`make_embedder` (:mod:`.factory`)."""

from .base import DEFAULT_CLIP_MODEL, EMBEDDER_KINDS, Embedder, EmbedderSpec, Item, l2_normalise, pipelined
from .clip import CLIPEmbedder, clear_model_cache, load_sentence_transformer
from .faces import ClipFaceEmbedder, DetectorOptions, DlibFaceEmbedder, Face, FaceImage, detect_faces
from .factory import make_embedder

__all__ = ["DEFAULT_CLIP_MODEL", "EMBEDDER_KINDS", "Embedder", "EmbedderSpec", "Item", "l2_normalise", "pipelined",
           "CLIPEmbedder", "clear_model_cache", "load_sentence_transformer", "ClipFaceEmbedder", "DetectorOptions",
           "DlibFaceEmbedder", "Face", "FaceImage", "detect_faces", "make_embedder"]
