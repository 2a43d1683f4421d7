"""Face detection and face embedders.

Detectors (``DetectorOptions.detector``):

- ``hog``: dlib's HOG + linear SVM frontal face detector (fast on CPU, the default).
- ``cnn``: dlib's MMOD CNN detector (``mmod_human_face_detector.dat``): finds turned and small faces
  the HOG detector misses, at many times the cost on a CPU.
- ``haar``: OpenCV's Haar cascade (``haarcascade_frontalface_default.xml``), as the seed used.

Face embedders:

- ``face-dlib``: dlib's ResNet face descriptor (128-d) from ``face_recognition_models``, computed
  on the face aligned with the 5-point landmark model. Built for identity: two photos of the same
  person are usually within 0.6 (Euclidean) of each other on the raw descriptors.
- ``face-clip``: CLIP on the face crop (with a margin), as the seed did.

Each face has a ``bbox`` ``[top, right, bottom, left]`` in the pixels of the original image (after
EXIF orientation). Faces are numbered from 1, left to right (then top to bottom).
"""

from __future__ import annotations

import importlib.util
import threading
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import InvalidArgument, MissingDependency, ModelUnavailable
from .base import Embedder, EmbedderSpec, Item, check_device, l2_normalise
from .clip import CLIPEmbedder

DETECTORS = ("hog", "cnn", "haar")

# HOG scores of real frontal faces are mostly above 1; clothing, patches and textures reach 0.3
# (dlib's own threshold of 0 keeps those), so vecface asks for 0.5 by default.
DEFAULT_MIN_SCORE = {"hog": 0.5, "cnn": 0.0, "haar": None}


@dataclass(frozen=True)
class DetectorOptions:
    """Face detector settings: options, not code edits.

    detector: hog | cnn | haar. upsample: times dlib upsamples the image first (finds smaller
    faces, costs about 4x per step). min_score: drop dlib detections scoring below this (None: the
    detector's default, hog 0.5, cnn 0.0). min_size: smallest face side in pixels (all detectors).
    scale_factor, min_neighbors: OpenCV Haar parameters. max_side: photos are downscaled so their
    long side is at most this before detection (bboxes are given in original pixels). jitter:
    dlib descriptor ``num_jitters`` (re-sampled copies averaged; slower, slightly more robust).
    margin: extra context around the box for face-clip crops, as a fraction of the box size.
    """

    detector: str = "hog"
    upsample: int = 1
    min_score: float | None = None
    min_size: int = 20
    scale_factor: float = 1.1
    min_neighbors: int = 5
    max_side: int = 1600
    jitter: int = 0
    margin: float = 0.25

    def __post_init__(self):
        if self.detector not in DETECTORS:
            raise InvalidArgument(f"unknown face detector {self.detector!r}; use one of {', '.join(DETECTORS)}")
        if self.upsample < 0 or self.upsample > 4:
            raise InvalidArgument("upsample must be between 0 and 4")
        if self.min_size < 1 or self.max_side < 64:
            raise InvalidArgument("min_size must be >= 1 and max_side >= 64")
        if self.scale_factor <= 1.0:
            raise InvalidArgument("scale_factor must be > 1.0")
        if self.min_neighbors < 0 or self.jitter < 0 or self.margin < 0:
            raise InvalidArgument("min_neighbors, jitter and margin must be >= 0")

    @property
    def effective_min_score(self) -> float | None:
        return self.min_score if self.min_score is not None else DEFAULT_MIN_SCORE[self.detector]

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "DetectorOptions":
        d = dict(d or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise InvalidArgument(f"unknown face detector option(s): {', '.join(unknown)}")
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Face:
    bbox: tuple[int, int, int, int]  # top, right, bottom, left (original image pixels)
    score: float | None = None
    vector: np.ndarray | None = None

    @property
    def width(self) -> int:
        return self.bbox[1] - self.bbox[3]

    @property
    def height(self) -> int:
        return self.bbox[2] - self.bbox[0]


@dataclass
class FaceImage:
    """A decoded photo ready for detection: ``array`` is the (possibly downscaled) RGB uint8
    image, ``scale`` maps its pixels back to the original (original = array * scale)."""

    array: np.ndarray
    scale: float
    size: tuple[int, int]  # original (width, height)


# ---------------------------------------------------------------- dlib model files

def _models_dir() -> Path:
    """face_recognition_models' model folder. Its functions need pkg_resources (gone from recent
    setuptools), so the package folder is located without importing it when they fail."""
    try:
        import face_recognition_models as frm

        return Path(frm.face_recognition_model_location()).parent
    except ImportError:
        spec = importlib.util.find_spec("face_recognition_models")
        if spec is None or not spec.submodule_search_locations:
            raise MissingDependency("face_recognition_models", extra="face", purpose="the dlib face models") from None
        return Path(list(spec.submodule_search_locations)[0]) / "models"


def dlib_model_paths() -> dict[str, Path]:
    """``face_recognition_model_location()``, ``pose_predictor_five_point_model_location()`` and
    ``cnn_face_detector_model_location()`` of face_recognition_models."""
    base = _models_dir()
    paths = {"recognition": base / "dlib_face_recognition_resnet_model_v1.dat",
             "landmarks5": base / "shape_predictor_5_face_landmarks.dat",
             "cnn_detector": base / "mmod_human_face_detector.dat"}
    for what, p in paths.items():
        if not p.is_file():
            raise ModelUnavailable(f"the dlib {what} model is missing at {p}; reinstall it with "
                                   "pip install --force-reinstall face_recognition_models")
    return paths


def _dlib():
    try:
        import dlib
    except ImportError as e:
        raise MissingDependency("dlib-bin", extra="face", purpose="dlib face detection and descriptors") from e
    return dlib


def dlib_device(device: str | None = None) -> str:
    """Where dlib runs its CNN detector and descriptor: ``cuda`` when this dlib was built with CUDA
    and sees a GPU, else ``cpu``. dlib picks this itself, so ``device`` can only be checked."""
    device = check_device(device)
    dlib = _dlib()
    cuda = bool(getattr(dlib, "DLIB_USE_CUDA", False)) and dlib.cuda.get_num_devices() > 0
    if device.startswith("cuda") and not cuda:
        raise InvalidArgument(f"--device {device} asked for, but this dlib ({dlib.__version__}) "
                              + ("was built without CUDA" if not getattr(dlib, "DLIB_USE_CUDA", False)
                                 else "sees no CUDA device") + "; use --device cpu or auto")
    if device == "cpu" and cuda:
        raise InvalidArgument("this dlib was built with CUDA and always runs on the GPU; use --device cuda or auto")
    return "cuda" if cuda else "cpu"


# Loaded dlib models, keyed by file: each is read once per process (the ResNet is ~22 MB).
_DLIB_CACHE: dict[str, Any] = {}
_DLIB_LOCK = threading.Lock()


def _dlib_model(what: str) -> Any:
    with _DLIB_LOCK:
        if what not in _DLIB_CACHE:
            dlib = _dlib()
            if what == "hog":
                _DLIB_CACHE[what] = dlib.get_frontal_face_detector()
            else:
                path = str(dlib_model_paths()[what])
                loader = {"recognition": dlib.face_recognition_model_v1,
                          "landmarks5": dlib.shape_predictor,
                          "cnn_detector": dlib.cnn_face_detection_model_v1}[what]
                _DLIB_CACHE[what] = loader(path)
        return _DLIB_CACHE[what]


def _haar_cascade() -> Any:
    with _DLIB_LOCK:
        if "haar" not in _DLIB_CACHE:
            try:
                import cv2
            except ImportError as e:
                raise MissingDependency("opencv-python-headless", extra="face", purpose="the haar face detector") from e
            if not hasattr(cv2, "CascadeClassifier"):
                raise MissingDependency("opencv-python-headless<5", extra="face",
                                        purpose="the haar detector (OpenCV 5 moved Haar cascades out of the main package)")
            path = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
            cascade = cv2.CascadeClassifier(str(path))
            if cascade.empty():
                raise ModelUnavailable(f"OpenCV's Haar cascade is missing at {path}")
            _DLIB_CACHE["haar"] = cascade
        return _DLIB_CACHE["haar"]


# ---------------------------------------------------------------- detection

def prepare_face_image(image: Any, options: DetectorOptions, max_pixels: int | None = None) -> FaceImage:
    """Decode and downscale a photo for detection (thread-safe; runs in ingest's worker pool)."""
    from ..images import decode_image, shrink

    img = decode_image(image, max_pixels=max_pixels)
    size = img.size
    small, scale = shrink(img, max_side=options.max_side)
    return FaceImage(np.ascontiguousarray(np.asarray(small, dtype=np.uint8)), scale, size)


def _clip_box(top: float, right: float, bottom: float, left: float, w: int, h: int) -> tuple[int, int, int, int]:
    return (max(0, int(round(top))), min(w, int(round(right))), min(h, int(round(bottom))), max(0, int(round(left))))


class FaceDetector:
    """Finds faces in an RGB array; boxes are in that array's pixels."""

    def __init__(self, options: DetectorOptions | None = None):
        self.options = options or DetectorOptions()
        if self.options.detector == "haar":
            _haar_cascade()
        else:
            _dlib_model("hog" if self.options.detector == "hog" else "cnn_detector")

    def detect(self, rgb: np.ndarray) -> list[tuple[tuple[int, int, int, int], float | None]]:
        o = self.options
        h, w = rgb.shape[:2]
        found: list[tuple[tuple[int, int, int, int], float | None]] = []
        if o.detector == "hog":
            threshold = o.effective_min_score or 0.0
            rects, scores, _ = _dlib_model("hog").run(rgb, o.upsample, threshold)
            for r, s in zip(rects, scores):
                found.append((_clip_box(r.top(), r.right(), r.bottom(), r.left(), w, h), float(s)))
        elif o.detector == "cnn":
            threshold = o.effective_min_score
            for d in _dlib_model("cnn_detector")(rgb, o.upsample):
                if threshold is None or d.confidence >= threshold:
                    r = d.rect
                    found.append((_clip_box(r.top(), r.right(), r.bottom(), r.left(), w, h), float(d.confidence)))
        else:
            import cv2

            gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
            boxes = _haar_cascade().detectMultiScale(gray, scaleFactor=o.scale_factor, minNeighbors=o.min_neighbors,
                                                     minSize=(o.min_size, o.min_size))
            for (x, y, bw, bh) in (boxes if len(boxes) else []):
                found.append((_clip_box(y, x + bw, y + bh, x, w, h), None))
        found = [(b, s) for b, s in found if (b[1] - b[3]) >= o.min_size and (b[2] - b[0]) >= o.min_size]
        found.sort(key=lambda f: (f[0][3], f[0][0]))  # left to right, then top to bottom
        return found


def detect_faces(image: Any, options: DetectorOptions | None = None) -> list[Face]:
    """The faces in one photo (a path, bytes, PIL image or array), without embedding them."""
    options = options or DetectorOptions()
    fi = prepare_face_image(image, options)
    return [Face(_scale_box(b, fi), s) for b, s in FaceDetector(options).detect(fi.array)]


def _scale_box(box: tuple[int, int, int, int], fi: FaceImage) -> tuple[int, int, int, int]:
    if fi.scale == 1.0:
        return box
    t, r, b, l = (v * fi.scale for v in box)
    return _clip_box(t, r, b, l, fi.size[0], fi.size[1])


# ---------------------------------------------------------------- face embedders

class FaceEmbedder(Embedder):
    per_face = True

    def __init__(self, options: DetectorOptions | None = None):
        self.options = options or DetectorOptions()
        self.detector = FaceDetector(self.options)

    def prepare(self, image: Any, *, max_pixels: int | None = None) -> FaceImage:
        return prepare_face_image(image, self.options, max_pixels)

    def detect(self, prepared: FaceImage) -> list[tuple[tuple[int, int, int, int], float | None]]:
        return self.detector.detect(prepared.array)

    def extract(self, prepared: Sequence[FaceImage]) -> list[list[Item]]:
        out: list[list[Item]] = []
        for fi in prepared:
            boxes = self.detect(fi)
            vecs = self._embed_boxes(fi, [b for b, _ in boxes]) if boxes else np.zeros((0, self.dim), np.float32)
            out.append([Item(v, _scale_box(b, fi), s) for (b, s), v in zip(boxes, vecs)])
        return out

    def faces(self, image: Any) -> list[Face]:
        """Detect and embed every face in one photo."""
        fi = self.prepare(image)
        return [Face(it.bbox, it.score, it.vector) for it in self.extract([fi])[0]]

    def embed_prepared(self, prepared: Sequence[FaceImage]) -> np.ndarray:
        """Each image as one face crop: the whole image is the face box."""
        rows = [self._embed_boxes(fi, [(0, fi.array.shape[1], fi.array.shape[0], 0)]) for fi in prepared]
        return np.concatenate(rows, axis=0) if rows else np.zeros((0, self.dim), np.float32)

    def _embed_boxes(self, fi: FaceImage, boxes: list[tuple[int, int, int, int]]) -> np.ndarray:
        raise NotImplementedError


class DlibFaceEmbedder(FaceEmbedder):
    """dlib's ResNet face descriptor (128-d), L2-normalised for storage."""

    kind = "face-dlib"
    dim = 128

    def __init__(self, options: DetectorOptions | None = None, device: str | None = None):
        self.device = dlib_device(device)
        super().__init__(options)
        self._sp = _dlib_model("landmarks5")
        self._rec = _dlib_model("recognition")
        self.name = f"face-dlib:{self.options.detector}"

    def spec(self) -> EmbedderSpec:
        return EmbedderSpec("face-dlib", None, self.options.to_dict())

    def descriptors(self, rgb: np.ndarray, boxes: list[tuple[int, int, int, int]]) -> np.ndarray:
        """The raw (not normalised) dlib descriptors of the given boxes in ``rgb``."""
        dlib = _dlib()
        shapes = dlib.full_object_detections()
        for t, r, b, l in boxes:
            shapes.append(self._sp(rgb, dlib.rectangle(int(l), int(t), int(r), int(b))))
        descs = self._rec.compute_face_descriptor(rgb, shapes, self.options.jitter)
        return np.asarray([np.asarray(d, dtype=np.float32) for d in descs], dtype=np.float32).reshape(len(boxes), 128)

    def _embed_boxes(self, fi: FaceImage, boxes: list[tuple[int, int, int, int]]) -> np.ndarray:
        return l2_normalise(self.descriptors(fi.array, boxes))


class ClipFaceEmbedder(FaceEmbedder):
    """CLIP on each face crop, with ``margin`` of context around the box."""

    kind = "face-clip"
    supports_text = True

    def __init__(self, clip: CLIPEmbedder, options: DetectorOptions | None = None):
        super().__init__(options)
        self.clip = clip
        self.dim = clip.dim
        self.name = f"face-clip:{clip.model_name}:{self.options.detector}"

    def spec(self) -> EmbedderSpec:
        return EmbedderSpec("face-clip", self.clip.model_name, self.options.to_dict())

    def _embed_boxes(self, fi: FaceImage, boxes: list[tuple[int, int, int, int]]) -> np.ndarray:
        from PIL import Image

        from ..images import shrink

        h, w = fi.array.shape[:2]
        crops = []
        for t, r, b, l in boxes:
            mw, mh = (r - l) * self.options.margin, (b - t) * self.options.margin
            t2, r2, b2, l2 = _clip_box(t - mh, r + mw, b + mh, l - mw, w, h)
            crop = Image.fromarray(fi.array[t2:b2, l2:r2])
            crops.append(shrink(crop, short_side=self.clip.image_size)[0])
        return self.clip.embed_prepared(crops)

    def embed_texts(self, texts: Sequence[str] | str) -> np.ndarray:
        return self.clip.embed_texts(texts)
