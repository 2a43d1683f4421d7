"""End to end in headless Chromium: ``vecface serve``'s app under uvicorn on 127.0.0.1, driven with
Selenium through Debian's chromium + chromium-driver (no driver download). Uploads a photo through
the file input, waits for the results grid, checks the top hit, saves a screenshot; then picks a
face in a two-face photo.

Skipped only when /usr/bin/chromium is absent (``apt-get install -y chromium chromium-driver``).
Set ``VECFACE_WEB_SCREENSHOT=docs/screenshot.png`` to also write the README's screenshot.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

from .conftest import encode
from .test_web import build_clip_collection, build_face_collection, pair_image, query_face

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="headless browser test needs /usr/bin/chromium: "
                       "apt-get install -y chromium chromium-driver"),
]

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1200,780", "--hide-scrollbars"]


def serve(app):
    """Run ``app`` under uvicorn in a thread on a free 127.0.0.1 port; yields the port."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield port
    finally:
        srv.should_exit = True
        thread.join(15)
        sock.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory, faiss_options, vecface_home):
    """The web app for a face-dlib collection."""
    from vecface.web import create_app

    info = build_face_collection(tmp_path_factory.mktemp("browser-faces"), "faces", faiss_options["path"])
    for port in serve(create_app("faiss", info["name"], store_options=faiss_options)):
        yield {"url": f"http://127.0.0.1:{port}/", **info}


@pytest.fixture(scope="module")
def clip_server(tmp_path_factory, faiss_options, vecface_home, tiny_clip):
    """The web app for a CLIP collection (tiny random weights)."""
    from vecface.web import create_app

    model = Path(tiny_clip)
    info = build_clip_collection(tmp_path_factory.mktemp("browser-clip-images"), "photos", faiss_options["path"],
                                 model)
    for port in serve(create_app("faiss", info["name"], store_options=faiss_options, device="cpu")):
        yield {"url": f"http://127.0.0.1:{port}/", **info}


@pytest.fixture(scope="module")
def camera_file(tmp_path_factory) -> Path:
    """A fake webcam for Chromium: an MJPEG stream of the astronaut (640x480 frames)."""
    from PIL import Image

    from .conftest import astronaut

    frame = Image.new("RGB", (640, 480), (40, 40, 40))
    frame.paste(astronaut(400), (120, 40))
    path = tmp_path_factory.mktemp("camera") / "camera.mjpeg"
    path.write_bytes(encode(frame, "JPEG", quality=90) * 30)
    return path


@pytest.fixture(scope="module")
def browser(tmp_path_factory, camera_file):
    assert CHROMEDRIVER.exists(), "chromium is installed but chromedriver is not: apt-get install -y chromium-driver"
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    profile = tmp_path_factory.mktemp("chromium-profile")
    opts = Options()
    opts.binary_location = str(CHROMIUM)
    camera = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
              f"--use-file-for-fake-video-capture={camera_file}"]
    for flag in CHROMIUM_FLAGS + camera + [f"--user-data-dir={profile}"]:
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # the driver path is given, so Selenium Manager (which would download a driver) is never run
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=opts)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def wait_state(driver, *states: str, timeout: float = 90) -> str:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout, poll_frequency=0.1).until(
        lambda d: d.find_element("css selector", "body").get_attribute("data-state") in states,
        message=f"page never reached state {states}")
    state = driver.find_element("css selector", "body").get_attribute("data-state")
    if state == "error":
        pytest.fail("the page shows an error: " + driver.find_element("id", "error").text)
    return state


def images_loaded(driver) -> bool:
    return driver.execute_script(
        "return [...document.querySelectorAll('#results img')].every(i => i.complete && i.naturalWidth > 0)")


def page_errors(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


def test_upload_shows_expected_top_result(server, browser, tmp_path):
    from selenium.webdriver.support.ui import WebDriverWait

    query = tmp_path / "query.jpg"
    query.write_bytes(query_face())
    browser.get(server["url"])
    wait_state(browser, "ready")
    info = browser.find_element("id", "info").text
    assert "face-dlib" in info and f"{server['count']} records" in info
    assert not browser.find_element("id", "text-form").is_displayed()  # no text search for face-dlib
    assert browser.find_element("id", "text-off").is_displayed()

    browser.find_element("id", "k").clear()
    browser.find_element("id", "k").send_keys("6")
    browser.find_element("id", "file").send_keys(str(query))
    wait_state(browser, "done")
    hits = browser.find_elements("css selector", "#results .hit")
    assert len(hits) == 3
    assert hits[0].find_element("css selector", ".file").text == "astronaut.png"
    assert "similarity 0.9" in hits[0].find_element("css selector", ".sim").text
    assert hits[0].find_elements("css selector", ".face-box")  # the face box drawn on the thumbnail
    status = browser.find_element("id", "status").text
    assert "3 results" in status and "embed" in status and "search" in status and "ms" in status
    assert browser.find_elements("css selector", "#preview-box .face-box.chosen")  # the query face
    WebDriverWait(browser, 30).until(images_loaded, message="thumbnails did not load")

    browser.execute_script("document.activeElement.blur()")
    shot = tmp_path / "search.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    target = os.environ.get("VECFACE_WEB_SCREENSHOT")
    if target:
        shutil.copyfile(shot, target)
    assert page_errors(browser) == []  # no CSP violations, no failed requests, no JS errors


def test_pick_a_face_in_a_group_photo(server, browser, tmp_path):
    group = tmp_path / "pair.png"
    group.write_bytes(encode(pair_image()))
    browser.get(server["url"])
    wait_state(browser, "ready")
    browser.find_element("id", "file").send_keys(str(group))
    assert wait_state(browser, "choose") == "choose"
    assert "2 faces found" in browser.find_element("id", "status").text
    buttons = browser.find_elements("css selector", "#faces button.face-pick")
    assert [b.text for b in buttons] == ["face 1", "face 2"]
    assert len(browser.find_elements("css selector", "#preview-box .face-box.pick")) == 2
    buttons[1].click()
    wait_state(browser, "done")
    assert browser.find_element("css selector", "#faces button.active").text == "face 2"
    top = browser.find_elements("css selector", "#results .hit")[0]
    assert top.find_element("css selector", ".file").text == "pair.png"
    assert top.find_elements("css selector", ".face-box")
    assert "face 2" in top.find_element("css selector", ".foot").text
    assert browser.save_screenshot(str(tmp_path / "pick-face.png"))
    # the "pick a face" answer is a 422 by design (a client that ignores it gets no silent hits)
    assert [e for e in page_errors(browser) if "/api/search/image" not in e or "422" not in e] == []


def test_webcam_snapshot_is_taken_in_the_browser(server, browser):
    """getUserMedia -> <video> -> <canvas> -> JPEG upload; Chromium's fake camera shows the astronaut."""
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(server["url"])
    wait_state(browser, "ready")
    browser.find_element("id", "webcam-start").click()
    WebDriverWait(browser, 30).until(
        lambda d: d.execute_script("return document.getElementById('video').videoWidth > 0"),
        message="the webcam video never started")
    assert browser.find_element("id", "webcam").is_displayed()
    browser.find_element("id", "snap").click()
    wait_state(browser, "done")
    top = browser.find_elements("css selector", "#results .hit")[0]
    assert top.find_element("css selector", ".file").text in ("astronaut.png", "pair.png")
    assert float(top.find_element("css selector", ".sim").text.split()[-1]) > 0.9
    size = browser.execute_script("const i = document.getElementById('preview-img'); return [i.naturalWidth, i.naturalHeight]")
    assert size == [640, 480]  # the snapshot is the camera frame, drawn on a canvas
    browser.find_element("id", "webcam-stop").click()
    assert not browser.find_element("id", "webcam").is_displayed()
    assert page_errors(browser) == []


def test_text_search_and_more_like_this(clip_server, browser):
    browser.get(clip_server["url"])
    wait_state(browser, "ready")
    assert "clip" in browser.find_element("id", "info").text
    assert browser.find_element("id", "text-form").is_displayed()
    browser.find_element("id", "tag").send_keys("things")
    browser.find_element("id", "text").send_keys("a cup of coffee")
    browser.find_element("css selector", "#text-form button").click()
    wait_state(browser, "done")
    hits = browser.find_elements("css selector", "#results .hit")
    assert len(hits) == 4 and all("tag things" in h.find_element("css selector", ".foot").text for h in hits)
    assert "a cup of coffee" in browser.find_element("id", "status").text
    browser.find_element("id", "tag").clear()
    first = hits[0].find_element("css selector", ".file").text
    browser.execute_script("document.body.dataset.state = 'busy'")
    hits[0].find_element("css selector", "button.more").click()
    wait_state(browser, "done")
    assert f"like {first}" in browser.find_element("id", "status").text
    files = [h.find_element("css selector", ".file").text for h in browser.find_elements("css selector", "#results .hit")]
    assert len(files) == 4 and first not in files
    assert page_errors(browser) == []


# ---------------------------------------------------------------- the People view and the filters

@pytest.fixture(scope="module")
def people_server(tmp_path_factory, faiss_options, vecface_home, dlib_embedder):
    """A face-dlib collection of three people's photos (EXIF dates, places, cameras), grouped into people."""
    import vecface
    from vecface import people
    from vecface.ingest import ingest_folder
    from vecface.web import create_app

    from .people_photos import build

    root = tmp_path_factory.mktemp("browser-people")
    build(root, per_person=3, people=["eileen", "grace", "alex"])
    name = f"browserpeople_{os.getpid()}"
    with vecface.open_store("faiss", name, dlib_embedder.dim, "cosine", **faiss_options) as store:
        ingest_folder(store, root, dlib_embedder, progress=False, workers=0, log_dir=root.parent / "logs")
        people.group(store)
        who = {}  # person name -> id, from the one-person photos
        for rec in store.get(store.ids()):
            base = os.path.basename(rec.metadata["path"])
            if "_and_" not in base:
                who[base.split("_")[0]] = rec.metadata["person"]
    for port in serve(create_app("faiss", name, store_options=faiss_options)):
        yield {"url": f"http://127.0.0.1:{port}/", "who": who}


def hit_files(driver) -> set[str]:
    return {h.text for h in driver.find_elements("css selector", "#results .hit .file")}


def tile(driver, person_id: str):
    return driver.find_element("css selector", f'#people .person[data-id="{person_id}"]')


def test_people_view_rename_and_photos(people_server, browser, tmp_path):
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    who = people_server["who"]
    browser.get(people_server["url"] + "#people")
    wait_state(browser, "ready")
    assert browser.find_element("id", "people-view").is_displayed()
    assert not browser.find_element("id", "query").is_displayed()
    tiles = browser.find_elements("css selector", "#people .person")
    assert sorted(t.get_attribute("data-id") for t in tiles) == sorted(who.values())
    WebDriverWait(browser, 30).until(lambda d: d.execute_script(
        "return [...document.querySelectorAll('#people img')].every(i => i.complete && i.naturalWidth === 160)"),
        message="the face crops did not load")
    assert "4 faces" in tile(browser, who["eileen"]).find_element("css selector", ".count").text

    # rename in place: Enter saves, a reload shows the new name
    name = tile(browser, who["eileen"]).find_element("css selector", "input.name")
    name.clear()
    name.send_keys("Eileen Collins" + Keys.ENTER)
    wait_state(browser, "renamed")
    browser.refresh()
    wait_state(browser, "ready")
    assert tile(browser, who["eileen"]).find_element("css selector", "input.name").get_attribute("value") == "Eileen Collins"
    # a name someone else has: the API's error on the page, nothing saved
    other = tile(browser, who["grace"]).find_element("css selector", "input.name")
    other.send_keys("eileen collins" + Keys.ENTER)
    WebDriverWait(browser, 30).until(lambda d: d.find_element("css selector", "body").get_attribute("data-state") == "error")
    assert "already named" in browser.find_element("id", "error").text
    assert "bad" in other.get_attribute("class")

    # a click on a face shows that person's photos, and nobody else's
    tile(browser, who["eileen"]).find_element("css selector", "button.face").click()
    wait_state(browser, "done")
    assert hit_files(browser) == {"eileen_0.jpg", "eileen_1.jpg", "eileen_2.jpg", "eileen_and_grace.jpg"}
    assert "Eileen Collins" in browser.find_element("id", "status").text
    WebDriverWait(browser, 30).until(images_loaded, message="thumbnails did not load")
    assert browser.save_screenshot(str(tmp_path / "people.png"))
    assert [e for e in page_errors(browser) if "/api/people/" not in e or "400" not in e] == []


def test_search_filters_narrow_the_results(people_server, browser, tmp_path):
    from selenium.webdriver.common.keys import Keys

    from .people_photos import portraits

    query = tmp_path / "grace.jpg"
    portraits()["grace"].save(query, "JPEG", quality=90)
    browser.get(people_server["url"])
    wait_state(browser, "ready")
    browser.find_element("id", "tab-people").click()
    assert browser.find_element("id", "people-view").is_displayed()
    browser.find_element("id", "tab-search").click()
    assert browser.find_element("id", "query").is_displayed()
    browser.find_element("id", "file").send_keys(str(query))
    wait_state(browser, "done")
    everything = hit_files(browser)
    assert len(everything) == 10  # every photo (k 12): the group photo's two faces are two hits
    assert len(browser.find_elements("css selector", "#results .hit")) == 11

    browser.execute_script("document.body.dataset.state = 'stale'")
    browser.find_element("id", "camera").send_keys("NIKON D750" + Keys.TAB)  # a change searches again
    wait_state(browser, "done")
    assert hit_files(browser) == {"eileen_1.jpg", "grace_1.jpg", "alex_1.jpg"}
    assert "camera NIKON D750" in browser.find_element("id", "status").text

    browser.execute_script("document.body.dataset.state = 'stale'")
    browser.find_element("id", "camera").clear()
    browser.find_element("id", "person").send_keys(people_server["who"]["grace"] + Keys.TAB)
    wait_state(browser, "done")
    assert hit_files(browser) == {"grace_0.jpg", "grace_1.jpg", "grace_2.jpg", "eileen_and_grace.jpg"}
    hits = browser.find_elements("css selector", "#results .hit")
    assert all(people_server["who"]["grace"] in h.find_element("css selector", ".foot").text for h in hits)
    browser.find_element("id", "filters-clear").click()
    assert page_errors(browser) == []


def test_no_people_yet_is_one_clear_line(server, browser):
    browser.get(server["url"] + "#people")
    wait_state(browser, "ready")
    assert "run vecface people" in browser.find_element("id", "people-msg").text
    assert browser.find_elements("css selector", "#people .person") == []
    assert page_errors(browser) == []
