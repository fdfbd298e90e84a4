"""The draw-a-digit page (edgemnist/static/index.html) in a real browser against the real `edgemnist serve`.

Usage: pytest tests/test_serve_page.py
       (needs Debian's chromium, tools/install_test_deps.sh, and Python's playwright package, edgemnist[dev];
       Playwright drives the system's chromium, or the one EDGEMNIST_CHROMIUM names, and downloads no browser)

Each check compares what the page shows with what `edgemnist.load(MODEL).predict(...)` gives for the
same bytes: the canvas's own PNG after the strokes, the uploaded file. Where chromium or playwright is
missing the tests skip with the reason, or fail when EDGEMNIST_REQUIRE_GROUPS names "browser" (CI).
"""
from __future__ import annotations

import base64
import io
import json
import os
import shutil
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import pytest

from _helpers import cli_command, free_port, serving
from _images import digit_photo, write_image
from _strokes import digit_strokes
from conftest import skip_or_fail

pytestmark = pytest.mark.slow

GROUP = "browser"
# Chromium flags for a headless run on a closed network as root: no sandbox (root), no GPU process, and
# none of the background connections (updates, sync, QUIC probes) that such a network refuses.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
DIGITS_PER_CLASS = 3  # 30 MNIST test digits drawn as strokes (the issue asks for at least 20)
WAIT_MS = 60_000  # how long to wait for an answer before the test fails (a slow CI machine, not a target)


def chromium_path() -> str:
    """Debian's chromium (EDGEMNIST_CHROMIUM overrides), or a skip/failure naming the package."""
    path = os.environ.get("EDGEMNIST_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        skip_or_fail(GROUP, "no chromium on PATH (Debian: apt-get install chromium; tools/install_test_deps.sh)")
    return path


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def page_model(request) -> Path:
    """The shipped int8 model when this checkout has it, else the session's int8 export."""
    from edgemnist.runtime.models import SHIPPED, SHIPPED_DIR

    shipped = SHIPPED_DIR / SHIPPED["int8"]
    return shipped if shipped.is_file() else request.getfixturevalue("tflite_variants")["int8"]


@pytest.fixture(scope="module")
def model(page_model):
    import edgemnist

    return edgemnist.load(page_model)


@pytest.fixture(scope="module")
def server(page_model, tmp_path_factory):
    """`edgemnist serve MODEL --host 127.0.0.1 --port P` as a child process; yields its base URL."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("serve") / "serve.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[1]),
                                                                       os.environ.get("PYTHONPATH")]))}
    with serving(cli_command("serve", page_model, "--host", "127.0.0.1", "--port", port), port, log_path,
                 env=env) as base:
        yield base


@pytest.fixture(scope="module")
def browser():
    """Headless chromium driven by Playwright; a fresh, empty profile."""
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError:
        skip_or_fail(GROUP, "the playwright package is not installed (pip install -e '.[dev]')")
    executable = chromium_path()
    with sync_playwright() as playwright:
        try:  # Playwright gives each launch a new, empty profile folder
            launched = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        except Error as exc:
            skip_or_fail(GROUP, f"{executable} does not start under Playwright: {str(exc).splitlines()[0]}")
        yield launched
        launched.close()


@pytest.fixture
def page(browser, server):
    """A desktop-sized page on the server's `/`, in a context of its own; every request it makes is recorded."""
    context = browser.new_context(viewport={"width": 1000, "height": 760})
    tab = context.new_page()
    tab.requests = []
    tab.on("request", lambda request: tab.requests.append(request.url))
    tab.goto(server)
    yield tab
    context.close()


# --------------------------------------------------------------------------- driving the page


def seq(page) -> int:
    return int(page.evaluate("document.body.dataset.seq"))


def wait_answer(page, before: int) -> None:
    """Waits until the page has completed a request after `before` (body[data-seq] advanced)."""
    page.wait_for_function("before => Number(document.body.dataset.seq) > before", arg=before, timeout=WAIT_MS)


def pad_points(page, stroke, side: int = 28) -> list:
    """A stroke in a side x side image's pixels as page coordinates on the canvas."""
    box = page.locator("#pad").bounding_box()
    return [(box["x"] + x / side * box["width"], box["y"] + y / side * box["height"]) for x, y in stroke]


def draw(page, strokes, wait_each: bool = True) -> None:
    """Replays strokes with real mouse events (down, moves, up); after each, waits for its answer."""
    for stroke in strokes:
        before = seq(page)
        points = pad_points(page, stroke)
        page.mouse.move(*points[0])
        page.mouse.down()
        for point in points[1:]:
            page.mouse.move(*point)
        page.mouse.up()
        if wait_each:
            wait_answer(page, before)


def shown(page) -> dict:
    """What the page shows now, read from the DOM, and the canvas's pixels as a PNG."""
    return page.evaluate("""() => ({
        answer: document.getElementById("answer").textContent,
        status: document.getElementById("status").textContent,
        error: document.getElementById("error").textContent,
        error_visible: !document.getElementById("error").hidden &&
                       getComputedStyle(document.getElementById("error")).display !== "none",
        bars: Array.from(document.querySelectorAll("#bars [data-digit]"), b => [b.dataset.digit, b.dataset.p]),
        prepared: document.getElementById("prepared").getAttribute("src"),
        state: document.body.dataset.state,
        png: document.getElementById("pad").toDataURL("image/png"),
    })""")


def data_url_bytes(url: str) -> bytes:
    head, _, payload = url.partition(",")
    assert head == "data:image/png;base64", head
    return base64.b64decode(payload)


def png_pixels(data: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)))


def expected_answer(prediction) -> str:
    return "?" if prediction.rejected or prediction.digit is None else str(prediction.digit)


def assert_shows(view: dict, prediction) -> None:
    """The page shows exactly `prediction`: the answer, the ten bars' data-p, the 28x28 image."""
    assert view["answer"] == expected_answer(prediction), view["status"]
    assert [d for d, _ in view["bars"]] == [str(d) for d in range(10)]
    probabilities = prediction.to_json()["probabilities"]
    if probabilities is None:
        assert all(p == "" for _, p in view["bars"]), view["bars"]
    else:
        assert [float(p) for _, p in view["bars"]] == probabilities
    if prediction.reason:
        assert prediction.reason in view["status"]
    if prediction.image is None:
        assert view["prepared"] is None
    else:
        np.testing.assert_array_equal(png_pixels(data_url_bytes(view["prepared"])), prediction.image)
    assert not view["error_visible"] and view["error"] == ""
    assert view["state"] == "done"


def ink_pixels(page) -> int:
    """Canvas pixels that are not white paper."""
    return page.evaluate("""() => {
        const pad = document.getElementById("pad");
        const rgba = pad.getContext("2d").getImageData(0, 0, pad.width, pad.height).data;
        let n = 0;
        for (let i = 0; i < rgba.length; i += 4) if (rgba[i] < 255 || rgba[i + 1] < 255 || rgba[i + 2] < 255) n++;
        return n;
    }""")


def pick_digits(split, per_class: int) -> list:
    """The first `per_class` digits of each class, in the split's order."""
    chosen = [i for d in range(10) for i in np.flatnonzero(split.labels == d)[:per_class]]
    return sorted(int(i) for i in chosen)


# --------------------------------------------------------------------------- tests


def test_drawn_digits_show_what_predict_reads(page, model, mnist_test):
    """Thirty MNIST test digits redrawn stroke by stroke with the mouse: after each digit the page shows exactly
    what predict gives for the canvas's PNG, and most read as their MNIST label."""
    indices = pick_digits(mnist_test, DIGITS_PER_CLASS)
    assert len(indices) >= 20
    answers = []
    for i in indices:
        page.click("#clear")
        assert ink_pixels(page) == 0
        draw(page, digit_strokes(mnist_test.images[i]))
        view = shown(page)
        prediction = model.predict(data_url_bytes(view["png"]))
        assert_shows(view, prediction)
        answers.append((int(mnist_test.labels[i]), view["answer"]))
    right = sum(str(label) == answer for label, answer in answers)
    # a sanity bound, not a score: strokes that no longer draw the digit read as noise
    assert right >= 0.7 * len(answers), answers
    assert all(url.startswith(page.url) for url in page.requests), page.requests


def test_page_is_self_contained(page, server):
    """No CDN or other host: everything the page loads comes from the server (it works offline on a LAN)."""
    html = urllib.request.urlopen(server, timeout=30).read().decode("utf-8")
    for needle in ("http://", "https://", "//cdn", "<script src", "<link rel=\"stylesheet\""):
        assert needle not in html, needle
    assert page.requests == [server]
    assert page.locator("#error").is_hidden()
    assert page.evaluate("document.body.dataset.state") == "idle"


def test_strokes_faster_than_answers_show_the_whole_drawing(page, model, mnist_test):
    """Strokes drawn without waiting: the last answer shown is the one for the finished drawing."""
    index = next(i for i in range(len(mnist_test)) if len(digit_strokes(mnist_test.images[i])) >= 2)
    draw(page, digit_strokes(mnist_test.images[index]), wait_each=False)
    page.wait_for_function("document.body.dataset.state === 'done'", timeout=WAIT_MS)
    view = shown(page)
    assert_shows(view, model.predict(data_url_bytes(view["png"])))


def test_clear_empties_canvas_and_result(page, mnist_test):
    draw(page, digit_strokes(mnist_test.images[0]))
    assert ink_pixels(page) > 0 and shown(page)["answer"] != ""
    page.click("#clear")
    view = shown(page)
    assert ink_pixels(page) == 0
    assert view["answer"] == "" and view["prepared"] is None and view["state"] == "idle"
    assert all(p == "" for _, p in view["bars"])


def test_touch_stroke_draws_without_scrolling(browser, server, model):
    """A phone in portrait: the pad fits the screen, and a finger's stroke draws (touch events through
    Chromium's input pipeline) instead of scrolling the page."""
    context = browser.new_context(viewport={"width": 390, "height": 700}, device_scale_factor=2, is_mobile=True,
                                  has_touch=True)
    try:
        page = context.new_page()
        page.goto(server)
        box = page.locator("#pad").bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 390 and box["width"] >= 0.8 * 390
        assert page.evaluate("document.documentElement.scrollHeight > innerHeight")  # there is room to scroll
        cdp = context.new_cdp_session(page)
        before = seq(page)
        # a "1": one finger from the bottom of the pad to the top (a swipe that would scroll the page up)
        points = pad_points(page, [(14.0, 24.0 - 0.5 * k) for k in range(41)])
        cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": points[0][0],
                                                                                     "y": points[0][1]}]})
        for x, y in points[1:]:
            cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [{"x": x, "y": y}]})
        cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
        wait_answer(page, before)
        assert page.evaluate("scrollY") == 0
        view = shown(page)
        assert ink_pixels(page) > 0
        assert_shows(view, model.predict(data_url_bytes(view["png"])))
    finally:
        context.close()


def test_photo_upload_shows_what_predict_reads(page, model, tmp_path):
    """A photo of a digit on paper chosen in #file (a phone's camera gives the same input) is read as predict reads
    the file, and shown."""
    photo = write_image(digit_photo("5", size=(320, 240), centre=(0.6, 0.45), light=60, noise=5),
                        tmp_path / "five.jpg", quality=85)
    before = seq(page)
    page.set_input_files("#file", str(photo))
    wait_answer(page, before)
    view = shown(page)
    prediction = model.predict(photo)
    assert_shows(view, prediction)
    assert view["answer"] == "5"
    assert page.locator("#photo").is_visible()


def multipart(field: str, name: str, data: bytes, content_type: str) -> tuple:
    """(body, Content-Type header) of a multipart/form-data upload of one file."""
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{name}\"\r\n"
            f"Content-Type: {content_type}\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def test_server_error_is_shown_and_the_page_goes_on(page, model, server, tmp_path, mnist_test):
    """A file that is no image: the server's 400 error text shows in #error (not a blank page), and the next
    drawing is read as usual, the message gone."""
    notes = tmp_path / "notes.txt"
    notes.write_text("seven, to be photographed later\n", encoding="utf-8")
    body, content_type = multipart("image", notes.name, notes.read_bytes(), "text/plain")
    request = urllib.request.Request(server + "predict?prepared=1&top=3", data=body,
                                     headers={"Content-Type": content_type})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 400
    message = json.load(refused.value)["error"]
    assert notes.name in message

    before = seq(page)
    page.set_input_files("#file", str(notes))
    wait_answer(page, before)
    view = shown(page)
    assert view["state"] == "error" and view["error_visible"]
    assert view["error"] == message
    assert view["answer"] == "?"
    assert page.locator("#error").get_attribute("role") == "alert"

    draw(page, digit_strokes(mnist_test.images[1]))
    view = shown(page)
    assert_shows(view, model.predict(data_url_bytes(view["png"])))


def test_upload_over_the_size_cap_shows_the_413(page, server, tmp_path):
    """A file over the server's body cap: the 413's message shows (the server refuses it unread), not a
    network failure."""
    with urllib.request.urlopen(server + "health", timeout=30) as answer:
        cap = json.load(answer)["max_bytes"]
    big = tmp_path / "huge.jpg"
    big.write_bytes(np.random.default_rng(0).integers(0, 256, cap + 1000, dtype=np.uint8).tobytes())
    before = seq(page)
    page.set_input_files("#file", str(big))
    wait_answer(page, before)
    view = shown(page)
    assert view["state"] == "error" and view["error_visible"] and view["answer"] == "?"
    assert str(cap) in view["error"], view["error"]  # the message names the limit


def test_unreachable_server_is_shown(page, model, mnist_test):
    """A request that never reaches the server (the network drops it) shows why in #error; the next stroke, once
    the network is back, is read as usual."""
    strokes = digit_strokes(mnist_test.images[2])
    page.route("**/predict*", lambda route: route.abort("connectionrefused"))
    draw(page, strokes[:1])
    view = shown(page)
    assert view["state"] == "error" and view["error_visible"] and view["answer"] == "?"
    assert view["error"].startswith("could not reach the server")
    page.unroute("**/predict*")
    page.click("#clear")
    draw(page, strokes)
    view = shown(page)
    assert_shows(view, model.predict(data_url_bytes(view["png"])))
