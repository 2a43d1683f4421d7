"""Embedders: CLIP whole-image vectors (:mod:`.clip`) and per-face vectors (:mod:`.faces`) behind
one interface (:mod:`.base`), built by :func:`make_embedder` (:mod:`.factory`)."""

from .base import (DEFAULT_CLIP_MODEL, DEVICES, EMBEDDER_KINDS, Embedder, EmbedderSpec, Item, check_device,
                   l2_normalise, pipelined)
from .clip import CLIPEmbedder, clear_model_cache, load_sentence_transformer, torch_device
from .faces import (ClipFaceEmbedder, DetectorOptions, DlibFaceEmbedder, Face, FaceImage, detect_faces,
                    dlib_device)
from .factory import make_embedder

__all__ = ["DEFAULT_CLIP_MODEL", "DEVICES", "EMBEDDER_KINDS", "Embedder", "EmbedderSpec", "Item", "check_device",
           "l2_normalise", "pipelined", "CLIPEmbedder", "clear_model_cache", "load_sentence_transformer",
           "torch_device", "ClipFaceEmbedder", "DetectorOptions", "DlibFaceEmbedder", "Face", "FaceImage",
           "detect_faces", "dlib_device", "make_embedder"]
