"""The web API behind ``vecface serve``: real embedders (dlib faces, a tiny random CLIP), the FAISS
backend, folders ingested by ``ingest_folder``; searches, thumbnails, and the ways a request can be
wrong or hostile (path traversal, unknown ids, oversized, non-image and bomb uploads, other hosts)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from fastapi.testclient import TestClient  # the web extra: a missing one is an error
from PIL import Image

import vecface
from vecface.embedders import make_embedder
from vecface.ingest import ingest_folder
from vecface.web import create_app
from vecface.web.schemas import MAX_K

from .conftest import astronaut, encode, png_bomb, skimage_photo

BASE = "http://127.0.0.1"  # the app serves the local host names only (DNS rebinding)


# ---------------------------------------------------------------- images and collections

def pair_image() -> Image.Image:
    """Two faces side by side: the astronaut mirrored (left) and smaller (right)."""
    left = astronaut(320).transpose(Image.FLIP_LEFT_RIGHT)
    right = astronaut(260)
    img = Image.new("RGB", (600, 320), (235, 235, 235))
    img.paste(left, (0, 0))
    img.paste(right, (330, 30))
    return img


def query_face() -> bytes:
    """The astronaut's head and shoulders, cropped from a larger rendering, as a JPEG upload."""
    return encode(astronaut(400).crop((60, 0, 340, 260)), "JPEG", quality=88)


def _write(root: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)


def build_face_collection(root: Path, name: str, faiss_path: str) -> dict:
    """A face-dlib collection: the astronaut (tag people), a two-face picture (tag pair), a cat
    (no face: skipped). Returns what the tests need to know."""
    _write(root / "people", {"astronaut.png": encode(astronaut(320)),
                             "cat.png": encode(Image.fromarray(skimage_photo("chelsea")))})
    _write(root / "pair", {"pair.png": encode(pair_image())})
    emb = make_embedder("face-dlib")
    with vecface.open_store("faiss", name, emb.dim, "cosine", path=faiss_path) as store:
        r1 = ingest_folder(store, root / "people", emb, tag="people", progress=False)
        r2 = ingest_folder(store, root / "pair", emb, tag="pair", progress=False)
        assert r1.records_stored == 1 and r2.records_stored == 2, (r1.to_dict(), r2.to_dict())
        count = store.count()
    return {"name": name, "count": count, "root": root}


def build_clip_collection(root: Path, name: str, faiss_path: str, model_dir: Path) -> dict:
    """A CLIP collection (tiny random weights): a cat, a coffee, a rocket, the astronaut."""
    _write(root / "animals", {"chelsea.png": encode(Image.fromarray(skimage_photo("chelsea")))})
    _write(root / "things", {"coffee.png": encode(Image.fromarray(skimage_photo("coffee"))),
                             "rocket.jpg": encode(Image.fromarray(skimage_photo("rocket")), "JPEG"),
                             "astronaut.jpg": encode(astronaut(256), "JPEG"),
                             "changes.png": encode(Image.fromarray(skimage_photo("immunohistochemistry")))})
    emb = make_embedder("clip", model=str(model_dir), device="cpu")
    with vecface.open_store("faiss", name, emb.dim, "cosine", path=faiss_path) as store:
        ingest_folder(store, root / "animals", emb, tag="animals", progress=False)
        ingest_folder(store, root / "things", emb, tag="things", progress=False)
        count = store.count()
    assert count == 5
    return {"name": name, "count": count, "root": root}


@pytest.fixture(scope="module")
def faces(tmp_path_factory, faiss_options):
    return build_face_collection(tmp_path_factory.mktemp("web-faces"), f"webfaces_{os.getpid()}",
                                 faiss_options["path"])


@pytest.fixture(scope="module")
def face_client(faces, faiss_options, vecface_home):
    app = create_app("faiss", faces["name"], store_options=faiss_options)
    with TestClient(app, base_url=BASE) as client:
        yield client


@pytest.fixture(scope="module")
def clip(tmp_path_factory, faiss_options, tiny_clip):
    model = Path(tiny_clip)
    info = build_clip_collection(tmp_path_factory.mktemp("web-clip"), f"webclip_{os.getpid()}",
                                 faiss_options["path"], model)
    info["model"] = model
    return info


@pytest.fixture(scope="module")
def clip_client(clip, faiss_options, vecface_home):
    app = create_app("faiss", clip["name"], store_options=faiss_options, device="cpu")
    with TestClient(app, base_url=BASE) as client:
        yield client


def upload(client, data: bytes, name: str = "q.jpg", ctype: str = "image/jpeg", **fields):
    return client.post("/api/search/image", files={"image": (name, data, ctype)},
                       data={k: str(v) for k, v in fields.items()})


def assert_error(resp, status: int, *words: str) -> dict:
    assert resp.status_code == status, (resp.status_code, resp.text)
    assert resp.headers["content-type"].startswith("application/json"), resp.headers
    body = resp.json()
    assert isinstance(body.get("error"), str) and body["error"], body
    for w in words:
        assert w.lower() in body["error"].lower(), body
    return body


# ---------------------------------------------------------------- face collection

def test_health_face(face_client, faces):
    r = face_client.get("/api/health")
    assert r.status_code == 200
    h = r.json()
    assert h["backend"] == "faiss" and h["collection"] == faces["name"] and h["count"] == faces["count"] == 3
    assert h["embedder"]["kind"] == "face-dlib" and h["embedder"]["dim"] == 128
    assert h["embedder"]["supports_text"] is False and h["embedder"]["per_face"] is True


def test_face_search_by_upload(face_client):
    r = upload(face_client, query_face(), k=5)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["query"]["mode"] == "image" and body["query"]["face"] == 1
    assert len(body["query"]["faces"]) == 1 and len(body["query"]["bbox"]) == 4
    assert body["embed_ms"] > 0 and body["search_ms"] >= 0
    hits = body["hits"]
    assert len(hits) == 3  # every face in the collection; the cat had none
    top = hits[0]
    assert top["file"] == "astronaut.png" and top["tag"] == "people" and top["similarity"] > 0.95
    t, r_, b, l = top["bbox"]
    assert top["image_size"] == [320, 320] and 0 <= l < r_ <= 320 and 0 <= t < b <= 320
    assert top["thumb"] == f"/api/thumb/{top['id']}"
    assert [h["rank"] for h in hits] == [1, 2, 3]
    assert all("/" not in (h["file"] or "") for h in hits)  # file names, not server paths
    sims = [h["similarity"] for h in hits]
    assert sims == sorted(sims, reverse=True)


def test_face_search_tag_filter(face_client):
    body = upload(face_client, query_face(), k=10, tag="pair").json()
    assert [h["tag"] for h in body["hits"]] == ["pair", "pair"]
    assert {h["face"] for h in body["hits"]} == {1, 2}
    assert upload(face_client, query_face(), tag="nobody").json()["hits"] == []


def test_several_faces_pick_one(face_client):
    data = encode(pair_image())
    r = upload(face_client, data, "pair.png", "image/png")
    body = assert_error(r, 422, "2 faces", "face=")
    assert body["choose_face"] is True and body["image_size"] == [600, 320]
    boxes = [f["bbox"] for f in body["faces"]]
    assert [f["face"] for f in body["faces"]] == [1, 2]
    assert boxes[0][3] < boxes[1][3]  # numbered left to right
    r2 = upload(face_client, data, "pair.png", "image/png", face=2, k=3)
    assert r2.status_code == 200, r2.text
    q = r2.json()["query"]
    assert q["face"] == 2 and q["bbox"] == boxes[1] and len(q["faces"]) == 2
    assert r2.json()["hits"][0]["similarity"] > 0.9
    assert_error(upload(face_client, data, "pair.png", "image/png", face=3), 422, "no face 3")


def test_no_face_in_upload(face_client):
    cat = encode(Image.fromarray(skimage_photo("chelsea")), "JPEG")
    body = assert_error(upload(face_client, cat), 422, "no face")
    assert body["faces"] == []


def test_text_search_refused_for_face_dlib(face_client):
    assert_error(face_client.post("/api/search/text", json={"text": "a woman"}), 400, "text search", "face-dlib")


def test_search_by_id_and_thumbnail(face_client, vecface_home):
    top = upload(face_client, query_face(), k=1).json()["hits"][0]
    r = face_client.get(f"/api/search/id/{top['id']}", params={"k": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["query"]["mode"] == "id" and body["query"]["file"] == "astronaut.png"
    assert top["id"] not in [h["id"] for h in body["hits"]] and len(body["hits"]) == 2
    t = face_client.get(top["thumb"])
    assert t.status_code == 200 and t.headers["content-type"] == "image/jpeg"
    img = Image.open(io.BytesIO(t.content))
    assert img.format == "JPEG" and max(img.size) <= 320
    cached = list((vecface_home / "thumbs").glob("*.jpg"))
    assert cached and all(p.resolve().is_relative_to(vecface_home.resolve()) for p in cached)
    assert face_client.get(top["thumb"]).content == t.content  # from the cache


# ---------------------------------------------------------------- hostile and wrong requests

@pytest.mark.parametrize("url", [
    "/api/thumb/..%2F..%2Fetc%2Fpasswd",
    "/api/thumb/%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "/api/thumb/..%5C..%5Cetc%5Cpasswd",
    "/api/thumb/%2Fetc%2Fpasswd",
    "/api/thumb/..",
    "/api/thumb/etc/passwd",
    "/api/thumb/0123456789abcdef0123456789abcdef",
    "/api/thumb/does-not-exist",
    "/api/thumb/%00",
    "/static/..%2F..%2F..%2F..%2Fetc%2Fpasswd",
    "/static/%2e%2e/%2e%2e/app.py",
    "/api/search/id/..%2F..%2Fetc%2Fpasswd",
    "/api/search/id/does-not-exist",
])
def test_path_traversal_and_unknown_ids(face_client, url):
    r = face_client.get(url)
    assert r.status_code in (404, 400), (url, r.status_code, r.text[:200])
    assert r.headers["content-type"].startswith("application/json")
    assert "root:" not in r.text and "import " not in r.text
    assert r.json()["error"]


def test_oversized_upload_is_413(faces, faiss_options, vecface_home):
    app = create_app("faiss", faces["name"], store_options=faiss_options, max_upload=200_000, max_pixels=50_000)
    big = os.urandom(260_000)  # over the file limit, under limit + multipart overhead
    huge = os.urandom(400_000)  # over the whole-request limit: refused before it is read
    with TestClient(app, base_url=BASE) as client:
        assert_error(upload(client, big), 413, "limit")
        # a real photo with more pixels than allowed (320 x 320 = 102,400 > 50,000)
        assert_error(upload(client, query_face()), 413, "pixels", "50,000")
        assert upload(client, encode(astronaut(200), "JPEG")).status_code == 200  # 40,000 pixels
        assert_error(upload(client, huge), 413, "limit")
        # a chunked body with no Content-Length is counted as it arrives
        def chunks():
            for _ in range(40):
                yield b"x" * 20_000
        r = client.post("/api/search/image", content=chunks(),
                        headers={"content-type": "multipart/form-data; boundary=xyz"})
        assert_error(r, 413, "limit")
        assert_error(client.post("/api/search/text", content=b"{" + b" " * 300_000 + b"}",
                                 headers={"content-type": "application/json"}), 413)


def test_default_upload_limit_is_10_mb(face_client):
    assert face_client.get("/api/health").json()["max_upload_bytes"] == 10 * 1024 * 1024
    r = upload(face_client, b"\0" * (10 * 1024 * 1024 + 1))
    assert_error(r, 413, "limit")


@pytest.mark.parametrize("data,name,ctype,status,words", [
    (b"these are my holiday notes, not a photo\n" * 20, "notes.jpg", "image/jpeg", 415, ("not an image",)),
    (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n", "doc.pdf", "application/pdf", 415, ("not an image",)),
    (b"", "empty.jpg", "image/jpeg", 400, ("empty",)),
    (encode(astronaut(64), "JPEG")[:300], "truncated.jpg", "image/jpeg", 400, ("corrupt",)),
    (png_bomb(), "bomb.png", "image/png", 413, ("pixels", "limit")),
    (encode(astronaut(64), "ICO"), "icon.ico", "image/x-icon", 415, ("ICO", "not accepted")),
])
def test_bad_uploads(face_client, data, name, ctype, status, words):
    assert_error(upload(face_client, data, name, ctype), status, *words)


def test_malformed_requests(face_client):
    assert_error(face_client.post("/api/search/image", content=b"raw", headers={"content-type": "image/jpeg"}),
                 415, "multipart")
    assert_error(face_client.post("/api/search/image", data={"k": "3"},
                                  files={"other": ("x.txt", b"x", "text/plain")}), 400, "'image'")
    assert_error(upload(face_client, query_face(), k="ten"), 400, "k must be an integer")
    assert_error(upload(face_client, query_face(), k=MAX_K + 1), 400, "k must be")
    assert_error(upload(face_client, query_face(), k=0), 400, "k must be")
    assert_error(upload(face_client, query_face(), face=0), 400, "face")
    # every bad parameter is 400, as the README says (422 is kept for the face answers)
    assert_error(face_client.get("/api/search/id/x", params={"k": 0}), 400, "k")
    assert_error(face_client.get("/api/search/id/x", params={"k": MAX_K + 1}), 400, "k")
    assert_error(face_client.post("/api/search/text", json={"text": "a", "k": MAX_K + 1}), 400, "k")
    assert_error(face_client.post("/api/search/text", json={"k": 3}), 400, "text")
    assert_error(face_client.get("/api/nothing-here"), 404, "not found")
    assert_error(face_client.delete("/api/health"), 405)


def test_other_host_refused(face_client):
    r = face_client.get("/api/health", headers={"host": "evil.example:8000"})
    assert_error(r, 400, "host")
    assert face_client.get("/api/health", headers={"host": "localhost:8000"}).status_code == 200


def test_page_and_openapi(face_client):
    page = face_client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert 'id="file"' in page.text and "getUserMedia" not in page.text  # the camera code is in app.js
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    js = face_client.get("/static/app.js")
    assert js.status_code == 200 and "getUserMedia" in js.text
    spec = face_client.get("/openapi.json").json()
    for path in ("/api/search/image", "/api/search/text", "/api/search/id/{record_id}", "/api/health",
                 "/api/thumb/{record_id}", "/api/people", "/api/people/{person}/face", "/api/people/{person}/photos",
                 "/api/people/{person}"):
        assert path in spec["paths"], path
    body = spec["paths"]["/api/search/image"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert set(body["schema"]["properties"]) == {"image", "k", "tag", "face", "since", "until", "camera", "person",
                                                 "near", "km", "box"}
    assert face_client.get("/docs").status_code == 200


def test_unknown_collection_fails_at_start(faiss_options, vecface_home):
    with pytest.raises(vecface.UnknownCollection):
        create_app("faiss", "never_ingested_here", store_options=faiss_options)


# ---------------------------------------------------------------- CLIP collection

def test_clip_health_and_image_search(clip_client, clip):
    h = clip_client.get("/api/health").json()
    assert h["embedder"]["kind"] == "clip" and h["embedder"]["supports_text"] is True and h["count"] == 5
    data = (clip["root"] / "animals" / "chelsea.png").read_bytes()
    body = upload(clip_client, data, "chelsea.png", "image/png", k=3).json()
    assert body["query"]["mode"] == "image" and "faces" not in body["query"]
    top = body["hits"][0]
    assert top["file"] == "chelsea.png" and top["similarity"] > 0.999 and top["bbox"] is None
    assert len(body["hits"]) == 3
    assert_error(upload(clip_client, data, face=1), 400, "face collections only")


def test_clip_text_search_and_tag(clip_client):
    r = clip_client.post("/api/search/text", json={"text": "a cat on a sofa", "k": 4})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["query"] == {"mode": "text", "text": "a cat on a sofa"}
    assert len(body["hits"]) == 4 and body["embed_ms"] > 0
    body = clip_client.post("/api/search/text", json={"text": "coffee", "k": 10, "tag": "things"}).json()
    assert len(body["hits"]) == 4 and {h["tag"] for h in body["hits"]} == {"things"}
    assert_error(clip_client.post("/api/search/text", json={"text": "   "}), 400, "empty")


def test_collections_without_people_say_why(face_client, clip_client):
    """Not grouped yet (vecface people never ran), or not a face collection: no people, and one line
    saying why; the filters still apply (the CLIP photos have no EXIF date)."""
    body = face_client.get("/api/people").json()
    assert body["people"] == [] and "run vecface people" in body["message"]
    assert_error(face_client.get("/api/people/p1/photos"), 404, "no person")
    body = clip_client.get("/api/people").json()
    assert body["people"] == [] and "face-dlib" in body["message"]
    r = clip_client.post("/api/search/text", json={"text": "a cat", "since": "2020-01-01"})
    assert r.status_code == 200 and r.json()["hits"] == [] and r.json()["filters"] == {"since": "2020-01-01"}
    assert len(clip_client.post("/api/search/text", json={"text": "a cat", "k": 3}).json()["hits"]) == 3


def test_thumbnail_of_changed_file_is_refused(clip_client, clip):
    changed = clip["root"] / "things" / "changes.png"
    data = changed.read_bytes()
    hit = upload(clip_client, data, "changes.png", "image/png", k=1).json()["hits"][0]
    assert hit["file"] == "changes.png"
    changed.write_bytes(b"now something else entirely")  # not what was ingested
    assert_error(clip_client.get(hit["thumb"]), 410, "changed since it was ingested")
    chelsea = upload(clip_client, (clip["root"] / "animals" / "chelsea.png").read_bytes(), k=1).json()["hits"][0]
    t = clip_client.get(chelsea["thumb"])
    assert t.status_code == 200 and Image.open(io.BytesIO(t.content)).size == (320, 213)


# ---------------------------------------------------------------- the command

def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_command(faces, vecface_home):
    import signal
    import subprocess
    import sys
    import time

    import httpx

    port = _free_port()
    cmd = [sys.executable, "-m", "vecface.cli", "serve", "--backend", "faiss", "--collection", faces["name"],
           "--port", str(port), "--data-dir", str(vecface_home)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.stdout.read()
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "vecface serve did not answer"
                time.sleep(0.2)
        assert r.status_code == 200 and r.json()["collection"] == faces["name"] and r.json()["count"] == 3
        page = httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
        assert page.status_code == 200 and "vecface" in page.text
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
    assert f"http://127.0.0.1:{port}/" in out and "face-dlib" in out
    assert proc.returncode == 0, out


def test_serve_unknown_collection_exits_1(vecface_home):
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "vecface.cli", "serve", "--collection", "not_ingested",
                        "--data-dir", str(vecface_home), "--port", str(_free_port())],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "not_ingested" in r.stderr and "vecface ingest" in r.stderr, r.stderr
