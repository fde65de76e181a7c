"""The onboarding page in a real browser: Debian's chromium driven by Playwright.

Runs uvicorn in a thread on a free port with the tiny base model, then learns a style, waits
for the job, stylizes a photo, moves the strength slider and checks each result image loaded.
Skips (with the reason) when /usr/bin/chromium or the playwright package is missing;
`.ci/setup-browser` installs chromium. Never run `playwright install`: the system chromium is
used through ``executable_path``.

With METASTYLE_SCREENSHOT=path the run uses the shipped init, the real encoder, a bundled style
(or the image in METASTYLE_SCREENSHOT_STYLE) and a scikit-image sample photo instead of the tiny
model, and saves the page there (that is how docs/serve_screenshot.png is made); otherwise the
screenshot goes to tmp_path.
"""

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

from metastyle.serve import create_app  # noqa: E402

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


@pytest.fixture
def server(tmp_path, setup):
    """The app on 127.0.0.1 at a free port (the socket is bound here, so no race)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    app = create_app(tmp_path / "styles", **setup[0])
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        assert thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(10)
    sock.close()


def _result_loaded(page, previous_src=""):
    page.wait_for_function(
        """previous => {
            const img = document.getElementById("result");
            return img.src && img.src !== previous && img.complete && img.naturalWidth > 0;
        }""", arg=previous_src, timeout=60_000)
    return page.eval_on_selector("#result", "img => [img.src, img.naturalWidth]")


def test_learn_a_style_and_stylize_a_photo_in_the_browser(server, setup):
    _, style, photo, screenshot, job_seconds = setup
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 900, "height": 1000})
            errors = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(server)
            page.set_input_files("#style-file", str(style))
            page.check("#match-tone")  # the upload then asks for the colour term
            page.click("#learn")
            page.wait_for_function("document.getElementById('job-status').textContent === 'done'",
                                   timeout=job_seconds * 1000)
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

            page.locator("#strength").fill("0.5")  # fires input + change: a new request
            new_src, width = _result_loaded(page, src)
            assert width > 0 and page.inner_text("#strength-value") == "0.50"
            assert page.is_visible("#download") and page.inner_text("#error") == ""
            assert not errors
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    assert screenshot.stat().st_size > 0
