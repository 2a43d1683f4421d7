"""Embedders: a tiny CLIP built here (random weights, a tiny tokenizer) saved as a
sentence-transformers directory and loaded through vecface's real loading path; image decoding."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from vecface.embedders import CLIPEmbedder, EmbedderSpec, load_sentence_transformer, make_embedder
from vecface.errors import ImageError, InvalidArgument, ModelUnavailable, VecfaceError
from vecface.images import decode_image, scan_images
from vecface.ingest import ingest_folder
from vecface.manifest import Manifest

from .conftest import encode
from vecface.search import search_id, search_image, search_text

skimage_data = pytest.importorskip("skimage.data")


def photos() -> dict[str, Image.Image]:
    return {"astronaut": Image.fromarray(skimage_data.astronaut()),
            "cat": Image.fromarray(skimage_data.chelsea()),
            "coffee": Image.fromarray(skimage_data.coffee()),
            "rocket": Image.fromarray(skimage_data.rocket())}


def test_tiny_clip_dims_and_unit_norm(tiny_clip):
    emb = make_embedder("clip", model=tiny_clip, device="cpu")
    assert isinstance(emb, CLIPEmbedder) and emb.dim == 16 and emb.image_size == 32
    # loaded once per process: a second embedder reuses the model
    assert make_embedder("clip", model=tiny_clip, device="cpu").model is emb.model
    imgs = list(photos().values())
    gray = imgs[0].convert("L")
    rgba = imgs[1].convert("RGBA")
    palette = imgs[2].convert("P")
    cmyk = Image.open(io.BytesIO(encode(imgs[3].convert("CMYK"), "JPEG")))
    inputs = imgs + [gray, rgba, palette, cmyk, skimage_data.camera(), encode(imgs[0], "PNG")]
    vecs = emb.embed_images(inputs, batch_size=3)
    assert vecs.shape == (len(inputs), 16) and vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    # batching and the thread pool do not change the vectors
    one_by_one = np.concatenate([emb.embed_images([x], batch_size=1) for x in inputs[:4]])
    np.testing.assert_allclose(one_by_one, vecs[:4], atol=1e-5)
    texts = emb.embed_texts(["old man with glasses", "a cat", "a rocket on the launch pad"])
    assert texts.shape == (3, 16) and texts.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(texts, axis=1), 1.0, atol=1e-5)
    with pytest.raises(InvalidArgument):
        emb.embed_texts([""])


def test_missing_weights_say_how_to_provide_them(tmp_path):
    with pytest.raises(ModelUnavailable) as e:
        load_sentence_transformer("clip-ViT-does-not-exist", device="cpu")
    msg = str(e.value)
    assert "\n" not in msg and "--model" in msg and "sentence-transformers/clip-ViT-does-not-exist" in msg
    with pytest.raises(ModelUnavailable, match="no model directory"):
        make_embedder("clip", model=str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelUnavailable, match="could not be loaded"):
        make_embedder("clip", model=str(tmp_path / "empty"))


def test_face_dlib_has_no_text_tower():
    emb = make_embedder("face-dlib")
    with pytest.raises(InvalidArgument, match="no text tower"):
        emb.embed_texts(["old man with glasses"])
    with pytest.raises(InvalidArgument):
        EmbedderSpec("resnet")


def test_decode_applies_exif_orientation_and_rgb():
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    out = decode_image(encode(img, "JPEG", exif=exif.tobytes()))
    assert out.size == (20, 40) and out.mode == "RGB"
    two = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    assert decode_image(encode(two, "PNG")).getpixel((0, 0)) == (255, 255, 255)  # transparent -> white
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    r, g, b = decode_image(buf.getvalue()).getpixel((4, 4))
    assert r > 200 and b < 50  # the first frame
    with pytest.raises(ImageError, match="decompression bomb"):
        decode_image(encode(Image.new("L", (200, 200)), "PNG"), max_pixels=10_000)


def test_scan_is_recursive_and_case_insensitive(tmp_path):
    for rel in ("a.JPG", "b/c.jpeg", "b/d/e.Png", "b/f.webp", "g.BMP", "h.gif", "i.tif", "j.TIFF",
                "notes.txt", ".hidden/k.jpg"):
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    names = [p.name for p in scan_images(tmp_path)]
    assert sorted(names) == sorted(["a.JPG", "c.jpeg", "e.Png", "f.webp", "g.BMP", "h.gif", "i.tif", "j.TIFF"])


def test_clip_text_and_image_search_each_backend(store_factory, tiny_clip, tmp_path):
    root = tmp_path / "photos"
    for name, img in photos().items():
        (root / name).mkdir(parents=True)
        img.save(root / name / f"{name}.jpg", quality=95)
    emb = make_embedder("clip", model=tiny_clip, device="cpu")
    store = store_factory(dim=emb.dim)
    with Manifest(tmp_path / "m.sqlite") as manifest:
        report = ingest_folder(store, root, emb, tag="demo", batch_size=2, progress=False, manifest=manifest,
                               log_dir=tmp_path)
        assert report.records_stored == 4 and not report.skipped and report.exit_code == 0
        assert manifest.embedder(store.backend, store.name)[0].kind == "clip"
    result = search_text(store, emb, "old man with glasses", k=4, tag="demo")
    assert len(result.hits) == 4
    assert {h.path for h in result.hits} == {str((root / n / f"{n}.jpg").absolute()) for n in photos()}
    sims = [h.similarity for h in result.hits]
    assert sims == sorted(sims, reverse=True) and all(-1.0001 <= s <= 1.0001 for s in sims)
    assert all(h.bbox is None for h in result.hits)  # whole-image records
    # the stored image itself is the top hit of an image query
    top = search_image(store, emb, root / "cat" / "cat.jpg", k=1).hits[0]
    assert top.path.endswith("cat.jpg") and top.distance < 1e-4
    # search by a stored id: no embedding, the record itself left out
    by_id = search_id(store, top.id, k=3)
    assert by_id.embed_seconds == 0 and len(by_id.hits) == 3 and top.id not in {h.id for h in by_id.hits}
    with pytest.raises(VecfaceError, match="no record"):
        search_id(store, "nope", k=3)



def test_max_pixels_above_pillows_limit(monkeypatch):
    """vecface's max_pixels is the limit, above Pillow's own too; the error quotes vecface's."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow refuses over twice this: 2,000
    png = encode(Image.new("RGB", (50, 50), (0, 128, 255)), "PNG")  # 2,500 pixels
    assert decode_image(png, max_pixels=10_000).size == (50, 50)
    with pytest.raises(ImageError, match=r"over the limit of 1,500$"):
        decode_image(png, max_pixels=1500)


def test_worker_processes_store_what_one_process_stores(tiny_clip, tmp_path):
    """CLIP in two worker processes (chunks embedded as batches) and in this process: same ids,
    same vectors, same skips."""
    import vecface

    root = tmp_path / "photos"
    for i, (name, img) in enumerate(photos().items()):
        (root / f"d{i % 2}").mkdir(parents=True, exist_ok=True)
        img.save(root / f"d{i % 2}" / f"{name}.jpg", quality=95)
    (root / "broken.jpg").write_bytes(b"no image here")
    emb = make_embedder("clip", model=tiny_clip, device="cpu")
    got = {}
    for workers in (0, 2):
        with vecface.open_store("faiss", f"w{workers}", emb.dim, "cosine", path=str(tmp_path / "faiss")) as store, \
                Manifest(tmp_path / f"m{workers}.sqlite") as manifest:
            report = ingest_folder(store, root, emb, batch_size=3, progress=False, manifest=manifest,
                                   log_dir=tmp_path, workers=workers)
            assert report.files_stored == 4 and [s.path for s in report.skipped] == [str(root / "broken.jpg")]
            ids = sorted(i for s in manifest.files(store.backend, store.name).values() for i in s.ids)
            got[workers] = {r.id: r.vector for r in store.get(ids)}
    assert sorted(got[0]) == sorted(got[2]) and len(got[0]) == 4
    for rid, vec in got[0].items():
        np.testing.assert_allclose(got[2][rid], vec, atol=1e-5)


def test_device_selection(tiny_clip):
    """cpu, auto and cuda for CLIP (torch) and dlib: what is picked, and a clear refusal."""
    import dlib
    import torch

    assert make_embedder("clip", model=tiny_clip, device="cpu").device == "cpu"
    auto = make_embedder("clip", model=tiny_clip, device="auto").device
    assert auto.startswith("cuda" if torch.cuda.is_available() else "cpu")
    assert make_embedder("clip", model=tiny_clip).device == auto  # None is auto
    for bad in ("tpu", "cuda:x", "cpu:0", ""):
        with pytest.raises(InvalidArgument, match="unknown device"):
            make_embedder("clip", model=tiny_clip, device=bad)
    dlib_cuda = bool(dlib.DLIB_USE_CUDA) and dlib.cuda.get_num_devices() > 0
    assert make_embedder("face-dlib", device="auto").device == ("cuda" if dlib_cuda else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(InvalidArgument, match="no CUDA device"):
            make_embedder("clip", model=tiny_clip, device="cuda")
    if not dlib_cuda:
        with pytest.raises(InvalidArgument, match="--device cuda"):
            make_embedder("face-dlib", device="cuda")


@pytest.mark.skipif("not __import__('torch').cuda.is_available()",
                    reason="no CUDA device here: the CUDA path is tested for selection only")
def test_clip_on_cuda_matches_cpu(tiny_clip):
    cpu = make_embedder("clip", model=tiny_clip, device="cpu")
    gpu = make_embedder("clip", model=tiny_clip, device="cuda")
    assert gpu.device.startswith("cuda")
    imgs = list(photos().values())
    np.testing.assert_allclose(gpu.embed_images(imgs), cpu.embed_images(imgs), atol=1e-3)
