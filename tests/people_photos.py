"""Labelled folders of photos of several people, built from the portraits that ship with
scikit-image and matplotlib, with EXIF date, place and camera.

The people: skimage's astronaut (Eileen Collins), matplotlib's Grace Hopper, and three faces of
skimage's LFW subset (25 px, upscaled; dlib finds them and tells them apart from each other and
from the two portraits). Each person's photos are transformed copies of their one portrait:
mirrored, cropped, brighter, darker, turned a little. A group photo holds two people side by side.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest

# lfw_subset rows whose faces the HOG detector finds in every transformed copy, and that lie
# beyond dlib's same-person distance from each other and from the two portraits
LFW_PEOPLE = {"alex": 0, "blake": 6, "casey": 46}
CAMERAS = [("Canon", "Canon EOS 5D"), ("NIKON CORPORATION", "NIKON D750")]
PLACES = {"lisbon": (38.7223, -9.1393), "paris": (48.8566, 2.3522)}


@dataclass
class Photo:
    path: Path
    people: tuple[str, ...]
    taken: datetime
    place: str
    camera: str


def portraits() -> dict:
    """name -> RGB PIL portrait (one face each)."""
    from PIL import Image

    data = pytest.importorskip("skimage.data")
    cbook = pytest.importorskip("matplotlib.cbook")
    with cbook.get_sample_data("grace_hopper.jpg") as fh:
        grace = Image.open(fh).convert("RGB")
    out = {"eileen": Image.fromarray(data.astronaut()), "grace": grace}
    lfw = data.lfw_subset()
    for name, row in LFW_PEOPLE.items():
        out[name] = Image.fromarray((lfw[row] * 255).astype("uint8")).convert("RGB").resize((200, 200), Image.BICUBIC)
    return out


def variants(img) -> list:
    """Transformed copies of one portrait (the original first): 6 mild ones (mirrored, cropped,
    brighter, darker, turned 6 degrees), then 5 harder ones (grey, blurred, JPEG quality 10, half
    size, posterised to 3 bits)."""
    from PIL import Image, ImageEnhance, ImageFilter, ImageOps

    w, h = img.size
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=10)
    return [img, ImageOps.mirror(img), img.crop((int(w * .06), int(h * .06), int(w * .94), int(h * .94))),
            ImageEnhance.Brightness(img).enhance(1.3), ImageEnhance.Brightness(img).enhance(0.7),
            img.rotate(6, resample=Image.BICUBIC),
            ImageOps.grayscale(img).convert("RGB"), img.filter(ImageFilter.GaussianBlur(2)),
            Image.open(buf).convert("RGB"), img.resize((w // 2, h // 2), Image.BILINEAR),
            ImageOps.autocontrast(ImageOps.posterize(img, 3))]


def exif_jpeg(img, *, taken: datetime | None = None, offset: str | None = None,
              gps: tuple[float, float] | None = None, camera: tuple[str, str] | None = None) -> bytes:
    """``img`` as JPEG bytes with EXIF DateTimeOriginal (+ OffsetTimeOriginal), GPS and Make/Model."""
    from PIL import Image

    exif = Image.Exif()
    if camera:
        exif[0x010F], exif[0x0110] = camera
    if taken:
        sub = {0x9003: taken.strftime("%Y:%m:%d %H:%M:%S")}
        if offset:
            sub[0x9011] = offset
        exif[0x8769] = sub
    if gps:
        lat, lon = gps
        exif[0x8825] = {1: "N" if lat >= 0 else "S", 2: _dms(abs(lat)), 3: "E" if lon >= 0 else "W", 4: _dms(abs(lon))}
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=92, exif=exif)
    return buf.getvalue()


def _dms(x: float) -> tuple[float, float, float]:
    d = int(x)
    m = int((x - d) * 60)
    return float(d), float(m), round((x - d - m / 60) * 3600, 4)


def build(root: Path, *, per_person: int = 4, people: list[str] | None = None, group_photo: bool = True,
          labelled: bool = True) -> list[Photo]:
    """Write ``per_person`` (up to 11) photos of each person under ``root`` (``root/<name>/<n>.jpg`` when
    ``labelled``, else flat), dated one month apart from 2024-01-01 (person k starts k days later),
    the first half in Lisbon and the rest in Paris, alternating cameras; plus one group photo of
    eileen and grace (in ``root/group/``, dated 2024-03-15, Paris). Returns what it wrote."""
    from PIL import Image

    faces = portraits()
    names = people or list(faces)
    photos = []
    for k, name in enumerate(names):
        folder = root / name if labelled else root
        folder.mkdir(parents=True, exist_ok=True)
        for n, img in enumerate(variants(faces[name])[:per_person]):
            taken = datetime(2024, 1 + n, 1 + k, 12, 0, 0)
            place = "lisbon" if n < per_person / 2 else "paris"
            camera = CAMERAS[n % 2]
            path = folder / f"{name}_{n}.jpg"
            path.write_bytes(exif_jpeg(img, taken=taken, gps=PLACES[place], camera=camera))
            photos.append(Photo(path, (name,), taken, place, camera[1]))
    if group_photo and {"eileen", "grace"} <= set(names):
        a, b = faces["eileen"].resize((400, 400)), faces["grace"].resize((340, 400))
        canvas = Image.new("RGB", (800, 440), (90, 90, 90))
        canvas.paste(a, (10, 20))
        canvas.paste(b, (440, 20))
        folder = root / "group"
        folder.mkdir(parents=True, exist_ok=True)
        taken = datetime(2024, 3, 15, 18, 30)
        path = folder / "eileen_and_grace.jpg"
        path.write_bytes(exif_jpeg(canvas, taken=taken, gps=PLACES["paris"], camera=CAMERAS[0]))
        photos.append(Photo(path, ("eileen", "grace"), taken, "paris", CAMERAS[0][1]))
    return photos
