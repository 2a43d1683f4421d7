"""A CLIP with random weights saved as a sentence-transformers directory: the tiny one for tests,
and the exact ViT-B/32 architecture for ``vecface bench embed`` when the real weights are absent
(throughput does not depend on the weight values; the bench labels such runs)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from vecface.errors import InvalidArgument, MissingDependency

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
