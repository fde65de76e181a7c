"""The onboarding page in a real browser: Debian's chromium driven by Playwright.

Runs uvicorn in a thread on a free port with the tiny base model, then learns a style, waits
for the job, stylizes a photo, moves the strength slider and checks each result image loaded;
with a tiny encoder-decoder base, the page shows the zero-shot result while the style is
learned, swaps in the adapted one when the job is done, and has palette and detail sliders.
Skips (with the reason) when /usr/bin/chromium or the playwright package is missing;
`.ci/setup-browser` installs chromium. Never run `playwright install`: the system chromium is
used through ``executable_path``.

With METASTYLE_SCREENSHOT=path the run uses the shipped init, the real encoder, a bundled style
(or the image in METASTYLE_SCREENSHOT_STYLE) and a scikit-image sample photo instead of the tiny
model, and saves the page there (that is how docs/serve_screenshot.png is made); otherwise the
screenshot goes to tmp_path.
"""

import contextlib
import json
import os
import socket
import threading
import time
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.is_file():
    pytest.skip(f"{CHROMIUM} not found (run .ci/setup-browser)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")

import uvicorn  # noqa: E402

import metastyle.serve.app as serve_app  # noqa: E402
from metastyle.serve import create_app  # noqa: E402
from metastyle.stylenet import DETAIL  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
SCREENSHOT = os.environ.get("METASTYLE_SCREENSHOT")


@pytest.fixture
def setup(tmp_path, base_model, tiny_corpus, photo):
    """(create_app options, style image, photo, screenshot path, seconds to wait for the job)."""
    if not SCREENSHOT:
        options = {"base": base_model, "steps": 2, "content": tiny_corpus / "content"}
        return options, tiny_corpus / "style/style0.png", photo, tmp_path / "page.png", 60
    from PIL import Image
    from skimage import data

    Image.fromarray(data.chelsea()).resize((384, 256)).save(tmp_path / "chelsea.jpg")
    style = Path(os.environ.get("METASTYLE_SCREENSHOT_STYLE", ROOT / "styles/mosaic.png"))
    return ({"steps": 10}, style, tmp_path / "chelsea.jpg",
            Path(SCREENSHOT), 600)


@contextlib.contextmanager
def serving(app):
    """``app`` on 127.0.0.1 at a free port (the socket is bound here, so no race): its URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        assert thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture
def server(tmp_path, setup):
    with serving(create_app(tmp_path / "styles", **setup[0])) as url:
        yield url


@pytest.fixture
def chromium_page():
    """(a page in headless chromium, the JavaScript errors it raises)."""
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = chromium.new_page(viewport={"width": 900, "height": 1000})
            errors = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            yield page, errors
        finally:
            chromium.close()


def _result_loaded(page, previous_src=""):
    page.wait_for_function(
        """previous => {
            const img = document.getElementById("result");
            return img.src && img.src !== previous && img.complete && img.naturalWidth > 0;
        }""", arg=previous_src, timeout=60_000)
    return page.eval_on_selector("#result", "img => [img.src, img.naturalWidth]")


def _job_done(page, seconds):
    page.wait_for_function("document.getElementById('job-status').textContent === 'done'",
                           timeout=seconds * 1000)


def test_learn_a_style_and_stylize_a_photo_in_the_browser(server, setup, chromium_page):
    _, style, photo, screenshot, job_seconds = setup
    page, errors = chromium_page
    page.goto(server)
    page.set_input_files("#style-file", str(style))
    page.check("#match-tone")  # the upload then asks for the colour term
    page.click("#learn")
    _job_done(page, job_seconds)
    assert page.eval_on_selector("#progress", "p => p.value === p.max && p.max > 0")
    page.wait_for_selector("#style-select option", state="attached")
    assert page.locator("#style-select option").count() == 1
    assert page.inner_text("#error") == ""
    [listed] = json.loads(urllib.request.urlopen(f"{server}/styles").read())
    assert listed["colour_weight"] == 10.0

    page.set_input_files("#photo-file", str(photo))
    src, width = _result_loaded(page)
    assert width > 0 and src.startswith("blob:")
    assert page.get_attribute("#download", "href") == src
    assert page.inner_text("#result-stage") == f"k = {listed['steps']} (adapted)"

    page.locator("#strength").fill("0.5")  # fires input + change: a new request
    new_src, width = _result_loaded(page, src)
    assert width > 0 and page.inner_text("#strength-value") == "0.50"
    # a Johnson style paints its own colours and detail
    assert not page.is_visible("#palette-row") and not page.is_visible("#detail-row")
    assert page.is_visible("#download") and page.inner_text("#error") == ""
    assert not errors
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.stat().st_size > 0


def test_the_page_shows_k0_at_once_then_swaps_in_the_adapted_result(
        tmp_path, stylenet_base, tiny_corpus, photo, chromium_page, monkeypatch):
    release = threading.Event()
    real_adapt = serve_app.adapt

    def held_adapt(*args, **kwargs):  # the job runs until the page has shown k = 0
        release.wait(60)
        return real_adapt(*args, **kwargs)

    monkeypatch.setattr(serve_app, "adapt", held_adapt)
    app = create_app(tmp_path / "styles", base=stylenet_base, steps=2,
                     content=tiny_corpus / "content")
    page, errors = chromium_page
    with serving(app) as url:
        try:
            page.goto(url)
            page.set_input_files("#photo-file", str(photo))  # no style yet: nothing to show
            page.set_input_files("#style-file", str(tiny_corpus / "style/style0.png"))
            page.click("#learn")
            src, width = _result_loaded(page)
            assert width > 0 and page.inner_text("#result-stage") == "k = 0 (instant)"
            assert "learning" in page.inner_text("#style-select")
            assert page.is_disabled("#delete-style") and page.is_disabled("#learn")
            # the sliders start at the model's defaults; palette and detail are an
            # encoder-decoder's
            assert page.input_value("#strength") == "1" and page.is_visible("#palette-row")
            assert page.inner_text("#palette-value") == "0.50"
            assert page.is_visible("#detail-row")
            assert page.inner_text("#detail-value") == f"{DETAIL:.2f}"
            page.locator("#strength").fill("0.5")
            src, width = _result_loaded(page, src)
        finally:
            release.set()
        _job_done(page, 60)
        page.wait_for_function(
            "document.getElementById('result-stage').textContent === 'k = 2 (adapted)'",
            timeout=60_000)
        new_src, width = _result_loaded(page, src)
        assert width > 0 and "learning" not in page.inner_text("#style-select")
        assert page.is_enabled("#delete-style") and page.inner_text("#error") == ""
        assert page.input_value("#strength") == "0.5"  # the user's, kept past the swap
        page.locator("#palette").fill("1")
        new_src, width = _result_loaded(page, new_src)
        assert width > 0 and page.inner_text("#palette-value") == "1.00"
        page.locator("#detail").fill("0.5")
        _, width = _result_loaded(page, new_src)
        assert width > 0 and page.inner_text("#detail-value") == "0.50"
    assert not errors
