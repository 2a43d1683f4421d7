"""The face pipeline on a real photo (skimage's astronaut) with the real dlib models."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from vecface.embedders import DetectorOptions, detect_faces, make_embedder
from vecface.errors import InvalidArgument, NoFaceFound
from vecface.ingest import ingest_folder
from vecface.manifest import Manifest
from vecface.search import search_image

from .conftest import astronaut as astronaut_photo
from .conftest import encode

skimage_data = pytest.importorskip("skimage.data")

# where the astronaut's face is in the 512x512 original: [top, right, bottom, left]
FACE = (76, 265, 166, 175)


def astronaut() -> np.ndarray:
    return np.asarray(astronaut_photo())


def variants() -> dict[str, np.ndarray]:
    """The same face after flip, resize and JPEG re-encoding."""
    img = astronaut_photo()
    return {
        "flipped": np.ascontiguousarray(astronaut()[:, ::-1]),
        "resized": np.asarray(img.resize((360, 360), Image.BICUBIC)),
        "jpeg": np.asarray(Image.open(io.BytesIO(encode(img, "JPEG", quality=40))).convert("RGB")),
    }


def iou(a, b) -> float:
    t, r, bo, l = max(a[0], b[0]), min(a[1], b[1]), min(a[2], b[2]), max(a[3], b[3])
    inter = max(0, r - l) * max(0, bo - t)
    area = lambda x: (x[1] - x[3]) * (x[2] - x[0])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def test_dlib_finds_the_astronaut_face(dlib_embedder):
    faces = dlib_embedder.faces(astronaut())
    assert len(faces) == 1
    assert iou(faces[0].bbox, FACE) > 0.6
    v = faces[0].vector
    assert v.shape == (128,) and v.dtype == np.float32
    assert abs(np.linalg.norm(v) - 1.0) < 1e-5


def test_same_face_within_06_after_flip_resize_jpeg(dlib_embedder):
    original = dlib_embedder.faces(astronaut())[0]
    raw_original = dlib_embedder.descriptors(astronaut(), [original.bbox])[0]
    for name, img in variants().items():
        faces = dlib_embedder.faces(img)
        assert len(faces) == 1, name
        # the stored (normalised) vectors and dlib's raw descriptors alike
        assert np.linalg.norm(faces[0].vector - original.vector) < 0.6, name
        raw = dlib_embedder.descriptors(np.ascontiguousarray(img), [faces[0].bbox])[0]
        assert np.linalg.norm(raw - raw_original) < 0.6, name


def test_detector_options_are_options():
    img = astronaut()
    haar = detect_faces(img, DetectorOptions(detector="haar", scale_factor=1.1, min_neighbors=5))
    assert len(haar) == 1 and iou(haar[0].bbox, FACE) > 0.5
    assert detect_faces(img, DetectorOptions(min_size=200)) == []  # faces smaller than 200 px dropped
    # dlib's own threshold (0) also keeps a weak detection on the suit; vecface's default does not
    assert len(detect_faces(img, DetectorOptions(min_score=0.0))) > 1
    # downscaled for detection, boxes still in original pixels
    small = detect_faces(img, DetectorOptions(max_side=256, upsample=2))
    assert len(small) == 1 and iou(small[0].bbox, FACE) > 0.5
    with pytest.raises(InvalidArgument):
        DetectorOptions(detector="yolo")
    with pytest.raises(InvalidArgument):
        DetectorOptions.from_dict({"upsampel": 1})


def test_cnn_detector_when_asked():
    # the MMOD CNN is slow on a CPU: a 256-px crop around the face, without upsampling
    img = np.ascontiguousarray(astronaut()[0:256, 100:356])
    faces = detect_faces(img, DetectorOptions(detector="cnn", upsample=0))
    assert len(faces) == 1
    t, r, b, l = FACE
    assert iou(faces[0].bbox, (t, r - 100, b, l - 100)) > 0.5


def test_query_with_two_faces_needs_face_n(store_factory, dlib_embedder, tmp_path):
    store = store_factory(dim=128)
    pair = np.concatenate([astronaut(), np.ascontiguousarray(astronaut()[:, ::-1])], axis=1)
    with pytest.raises(NoFaceFound, match=r"2 faces found.*face 1: bbox.*face 2: bbox.*--face N"):
        search_image(store, dlib_embedder, pair, k=1)
    with pytest.raises(NoFaceFound, match="no face found"):
        search_image(store, dlib_embedder, skimage_data.chelsea(), k=1)
    with pytest.raises(NoFaceFound, match="there is no face 3"):
        search_image(store, dlib_embedder, pair, k=1, face=3)


def test_ingest_then_search_each_backend(store_factory, dlib_embedder, tmp_path):
    """The stored face is the top hit for each altered copy, within 0.6, on every backend."""
    root = tmp_path / "photos"
    (root / "people").mkdir(parents=True)
    Image.fromarray(astronaut()).save(root / "people" / "astronaut.jpg", quality=92)
    Image.fromarray(skimage_data.chelsea()).save(root / "cat.jpg")  # no face: skipped
    Image.fromarray(skimage_data.coffee()).save(root / "coffee.png")  # no face: skipped
    store = store_factory(dim=128)
    with Manifest(tmp_path / "m.sqlite") as manifest:
        report = ingest_folder(store, root, dlib_embedder, progress=False, manifest=manifest, log_dir=tmp_path)
    assert report.records_stored == 1 and len(report.skipped) == 2
    pair = np.concatenate([np.ascontiguousarray(astronaut()[:, ::-1]), astronaut()], axis=1)
    queries = {**variants(), "second of two faces": pair}
    for name, img in queries.items():
        result = search_image(store, dlib_embedder, img, k=3, face=2 if name.startswith("second") else None)
        top = result.hits[0]
        assert top.path == str((root / "people" / "astronaut.jpg").absolute()), name
        assert iou(top.bbox, FACE) > 0.6
        euclid = np.sqrt(max(0.0, 2 * top.distance))  # cosine distance of unit vectors -> Euclidean
        assert euclid < 0.6, (name, euclid)
        assert result.embed_seconds > 0 and result.search_seconds >= 0
    # the tag filter applies
    assert search_image(store, dlib_embedder, astronaut(), k=3, tag="nobody").hits == []


def test_face_clip_embeds_each_face(tiny_clip):
    emb = make_embedder("face-clip", model=tiny_clip, device="cpu")
    pair = np.concatenate([astronaut(), np.ascontiguousarray(astronaut()[:, ::-1])], axis=1)
    faces = emb.faces(pair)
    assert len(faces) == 2 and faces[0].bbox[3] < faces[1].bbox[3]  # numbered left to right
    for f in faces:
        assert f.vector.shape == (emb.dim,) and abs(np.linalg.norm(f.vector) - 1) < 1e-5
    assert emb.embed_texts(["a face"]).shape == (1, emb.dim)
