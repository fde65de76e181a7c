"""Tests for `metastyle serve` (FastAPI TestClient): the onboarding flow, bad uploads, unknown
ids, the bounded queue, persistence across restarts, delete, the zero-shot model served while
an encoder-decoder base's adaptation runs. Tiny base models, 2 steps."""

import io
import re
import threading
import time

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")

from fastapi.testclient import TestClient  # noqa: E402

import metastyle.serve.app as serve_app  # noqa: E402
import metastyle.serve.zeroshot as serve_zeroshot  # noqa: E402
from metastyle import checkpoint  # noqa: E402
from metastyle.errors import UserError  # noqa: E402
from metastyle.serve import create_app  # noqa: E402
from metastyle.stylenet import DETAIL, PALETTE  # noqa: E402
from metastyle.stylizer import load_stylizer, zero_shot  # noqa: E402

HEX32 = re.compile(r"[0-9a-f]{32}")


@pytest.fixture
def data_dir(tmp_path):
    return tmp_path / "styles"


@pytest.fixture
def make_client(data_dir, base_model, tiny_corpus):
    def make(base=base_model, **options):
        app = create_app(data_dir, base=base, steps=2, content=tiny_corpus / "content",
                         **options)
        return TestClient(app)

    return make


@pytest.fixture
def blocked_adapt(monkeypatch):
    """Adaptation jobs wait for ``release`` before adapting; ``started`` is set by the first."""
    release, started = threading.Event(), threading.Event()
    real_adapt = serve_app.adapt

    def adapt(*args, **kwargs):
        started.set()
        release.wait(30)
        return real_adapt(*args, **kwargs)

    monkeypatch.setattr(serve_app, "adapt", adapt)
    return started, release


@pytest.fixture
def style_png(tiny_corpus):
    return (tiny_corpus / "style/style0.png").read_bytes()


def upload(client, data, name="style0.png"):
    return client.post("/styles", files={"style": (name, data, "image/png")})


def wait_for_job(client, job_id, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.get(f"/jobs/{job_id}").json()
        if status["state"] in ("done", "failed"):
            return status
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} still {status['state']} after {timeout} s")


def learn(client, data):
    response = upload(client, data)
    assert response.status_code == 202, response.text
    ids = response.json()
    assert wait_for_job(client, ids["job_id"])["state"] == "done"
    return ids["style_id"]


def stylize(client, style_id, photo_path, **form):
    return client.post(f"/styles/{style_id}/stylize", data=form,
                       files={"photo": ("photo.png", photo_path.read_bytes(), "image/png")})


def test_upload_poll_then_stylize_returns_a_jpeg(make_client, style_png, photo):
    with make_client() as client:
        response = upload(client, style_png)
        assert response.status_code == 202
        ids = response.json()
        assert HEX32.fullmatch(ids["job_id"]) and HEX32.fullmatch(ids["style_id"])
        assert ids["zero_shot"] is False  # a Johnson base
        status = wait_for_job(client, ids["job_id"])
        assert status == {"state": "done", "step": 2, "steps": 2, "loss": status["loss"],
                          "eta_seconds": 0.0, "error": None, "zero_shot": False}
        assert status["loss"] > 0
        [listed] = client.get("/styles").json()
        assert listed["id"] == ids["style_id"] and listed["name"] == "style0.png"
        assert listed["steps"] == 2 and listed["loss_after"] > 0
        assert listed["zero_shot"] is False
        assert listed["strength"] == 1.0 and listed["palette"] is None  # the page's defaults
        assert listed["detail"] is None

        result = stylize(client, ids["style_id"], photo, strength="0.5", preserve_colour="true",
                         max_size="32")
        assert result.status_code == 200 and result.headers["content-type"] == "image/jpeg"
        assert result.headers["x-metastyle-stage"] == "adapted"
        image = Image.open(io.BytesIO(result.content))
        assert image.format == "JPEG" and image.size == (32, 26)  # 40x32 scaled to long side 32
        assert stylize(client, ids["style_id"], photo).status_code == 200  # form defaults

        for form, phrase in (({"strength": "1.5"}, "strength 1.5: must be"),
                             ({"max_size": "5"}, "max_size"),
                             ({"strength": "lots"}, "strength"),
                             ({"palette": "-1"}, "palette -1.0: must be"),
                             ({"palette": "0.5"}, "only encoder-decoder models"),
                             ({"detail": "2"}, "detail 2.0: must be"),
                             ({"detail": "0.5"}, "detail: only encoder-decoder models")):
            bad = stylize(client, ids["style_id"], photo, **form)
            assert bad.status_code == 400 and phrase in bad.json()["detail"]


def test_the_page_and_its_assets_are_served(make_client):
    with make_client() as client:
        page = client.get("/")
        assert page.status_code == 200 and 'id="style-file"' in page.text
        assert 'id="match-tone"' in page.text and "colour_weight" in client.get(
            "/static/app.js").text
        assert "http" not in page.text.replace("http-equiv", "")  # no CDN: works offline
        assert client.get("/static/app.js").status_code == 200
        assert client.get("/static/style.css").status_code == 200


@pytest.mark.parametrize("form, expected, bad_forms", [
    ({"preset": "quality"}, {"preset": "quality", "subset": "all", "steps": 2},
     [({"preset": "best"}, "preset 'best'")]),
    ({"colour_weight": "10"}, {"preset": "fast", "colour_weight": 10.0},
     [({"colour_weight": "-1"}, "colour_weight -1"), ({"colour_weight": "lots"}, "colour_weight")]),
])
def test_an_upload_can_choose_its_settings_and_a_bad_one_is_a_400(make_client, style_png, form,
                                                                  expected, bad_forms):
    with make_client() as client:
        response = client.post("/styles", data=form,
                               files={"style": ("style0.png", style_png, "image/png")})
        assert response.status_code == 202, response.text
        assert wait_for_job(client, response.json()["job_id"])["state"] == "done"
        [listed] = client.get("/styles").json()
        assert {k: listed[k] for k in expected} == expected
        for bad_form, phrase in bad_forms:
            bad = client.post("/styles", data=bad_form,
                              files={"style": ("style0.png", style_png, "image/png")})
            assert bad.status_code == 400 and phrase in bad.json()["detail"], bad.text
        assert len(client.get("/styles").json()) == 1


@pytest.mark.parametrize("kind, status, phrase", [
    ("not an image", 400, "not an image"),
    ("empty", 400, "empty"),
    ("too many bytes", 413, "larger than 2000 bytes"),
    ("too many bytes (header)", 413, "upload too large"),
    ("too many pixels", 400, "too large"),
    ("no file field", 400, "style"),
])
def test_bad_uploads_get_a_4xx_with_a_one_line_detail(make_client, kind, status, phrase):
    big_but_small_file = io.BytesIO()
    Image.new("RGB", (64, 64)).save(big_but_small_file, "PNG")  # 4096 px in ~100 bytes
    with make_client(max_upload_bytes=2000, max_pixels=1000) as client:
        data = {"not an image": b"hello, not an image", "empty": b"",
                "too many bytes": b"\x89PNG" + bytes(3000),
                "too many bytes (header)": bytes(100_000),
                "too many pixels": big_but_small_file.getvalue()}.get(kind)
        if kind == "no file field":
            response = client.post("/styles", data={"other": "x"})
        else:
            response = upload(client, data, name="upload.png")
        assert response.status_code == status, response.text
        detail = response.json()["detail"]
        assert phrase in detail and "\n" not in detail
        assert client.get("/styles").json() == []


def test_unknown_and_malformed_ids_are_404(make_client, photo):
    unknown = "0" * 32
    with make_client() as client:
        for response in (client.get(f"/jobs/{unknown}"), client.get("/jobs/not-an-id"),
                         client.delete(f"/styles/{unknown}"), client.delete("/styles/..x"),
                         stylize(client, unknown, photo), stylize(client, "..x", photo)):
            assert response.status_code == 404, response.text
            assert "unknown" in response.json()["detail"]
        for path in ("/styles/..%2F..%2Fbase.safetensors", "/jobs/%2E%2E%2Fx"):
            assert client.delete(path).status_code in (404, 405)
            assert client.get(path).status_code in (404, 405)


def test_a_full_queue_answers_429_at_once(make_client, style_png, blocked_adapt):
    started, release = blocked_adapt
    with make_client(workers=1, queue_size=1) as client:
        running = upload(client, style_png).json()
        assert started.wait(30)
        waiting = upload(client, style_png).json()
        assert client.get(f"/jobs/{waiting['job_id']}").json()["state"] == "queued"
        assert client.get(f"/jobs/{running['job_id']}").json()["state"] == "running"
        start = time.monotonic()
        refused = upload(client, style_png)
        assert refused.status_code == 429 and "busy" in refused.json()["detail"]
        assert time.monotonic() - start < 5
        release.set()
        for ids in (running, waiting):
            assert wait_for_job(client, ids["job_id"])["state"] == "done"
        assert upload(client, style_png).status_code == 202  # room again


@pytest.mark.parametrize("base", ["base_model", "stylenet_base"])
def test_a_failed_adaptation_is_reported_and_not_listed(make_client, style_png, photo, base,
                                                        request, monkeypatch):
    def failing_adapt(*args, **kwargs):
        raise UserError("content (photos/): no readable content images")

    monkeypatch.setattr(serve_app, "adapt", failing_adapt)
    with make_client(base=request.getfixturevalue(base)) as client:
        ids = upload(client, style_png).json()
        status = wait_for_job(client, ids["job_id"])
        assert status["state"] == "failed" and "no readable content" in status["error"]
        assert status["zero_shot"] is False
        assert client.get("/styles").json() == []
        assert stylize(client, ids["style_id"], photo).status_code == 404  # not even zero-shot


def _pixels(image) -> np.ndarray:
    """A response's JPEG, or a PIL image sent through the service's JPEG encoding, as pixels."""
    if isinstance(image, Image.Image):
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=90)
        return _pixels(buffer.getvalue())
    return np.asarray(Image.open(io.BytesIO(image)))


def test_an_encoder_decoder_style_is_served_zero_shot_until_its_adaptation_is_done(
        make_client, stylenet_base, tiny_corpus, style_png, photo, data_dir, blocked_adapt,
        monkeypatch):
    started, release = blocked_adapt
    made = []

    def counted_zero_shot(*args):
        made.append(args)
        return zero_shot(*args)

    monkeypatch.setattr(serve_zeroshot, "zero_shot", counted_zero_shot)
    with make_client(base=stylenet_base) as client:
        ids = upload(client, style_png).json()
        assert ids["zero_shot"] is True
        assert started.wait(30)
        status = client.get(f"/jobs/{ids['job_id']}").json()
        assert status["state"] == "running" and status["zero_shot"] is True
        [listed] = client.get("/styles").json()
        assert listed["id"] == ids["style_id"] and listed["zero_shot"] is True
        assert listed["name"] == "style0.png" and listed["steps"] == 2
        assert listed["strength"] == 1.0 and listed["palette"] == PALETTE
        assert listed["detail"] == DETAIL
        instant = [stylize(client, ids["style_id"], photo) for _ in range(2)]
        assert [r.status_code for r in instant] == [200, 200], instant[0].text
        assert [r.headers["x-metastyle-stage"] for r in instant] == ["zero-shot"] * 2
        k0_model = zero_shot(tiny_corpus / "style/style0.png", stylenet_base)
        k0 = k0_model.stylize(photo)
        assert np.array_equal(_pixels(instant[0].content), _pixels(k0))
        detailed = _pixels(stylize(client, ids["style_id"], photo, detail="1").content)
        assert np.array_equal(detailed, _pixels(k0_model.stylize(photo, detail=1.0)))
        assert not np.array_equal(detailed, _pixels(k0))
        assert len(made) == 1  # one zero-shot model per style, kept while it is learned
        refused = client.delete(f"/styles/{ids['style_id']}")
        assert refused.status_code == 409 and "being learned" in refused.json()["detail"]

        release.set()
        done = wait_for_job(client, ids["job_id"])
        assert done["state"] == "done" and done["zero_shot"] is False
        [listed] = client.get("/styles").json()
        assert listed["zero_shot"] is False and listed["loss_after"] > 0
        adapted = stylize(client, ids["style_id"], photo)
        assert adapted.status_code == 200 and adapted.headers["x-metastyle-stage"] == "adapted"
        refined = load_stylizer(data_dir / f"{ids['style_id']}.safetensors").stylize(photo)
        assert np.array_equal(_pixels(adapted.content), _pixels(refined))
        assert not np.array_equal(_pixels(adapted.content), _pixels(k0))


def test_stylize_defaults_to_the_base_files_strength(make_client, stylenet_base, tmp_path,
                                                     style_png, photo):
    tensors, meta = checkpoint.read(stylenet_base)
    base = tmp_path / "base09.safetensors"
    checkpoint.write(base, tensors, {**meta, "strength": 0.9})
    with make_client(base=base) as client:
        ids = upload(client, style_png).json()
        assert wait_for_job(client, ids["job_id"])["state"] == "done"
        [listed] = client.get("/styles").json()
        assert listed["strength"] == 0.9
        default, at_09, full = (stylize(client, ids["style_id"], photo, **form)
                                for form in ({}, {"strength": "0.9"}, {"strength": "1"}))
    assert np.array_equal(_pixels(default.content), _pixels(at_09.content))
    assert not np.array_equal(_pixels(default.content), _pixels(full.content))


def test_a_johnson_style_is_unknown_until_its_adaptation_is_done(make_client, style_png, photo,
                                                                 blocked_adapt):
    started, release = blocked_adapt
    with make_client() as client:
        ids = upload(client, style_png).json()
        assert ids["zero_shot"] is False
        assert started.wait(30)
        assert client.get(f"/jobs/{ids['job_id']}").json()["zero_shot"] is False
        assert client.get("/styles").json() == []
        early = stylize(client, ids["style_id"], photo)
        assert early.status_code == 404 and "unknown style" in early.json()["detail"]
        release.set()
        assert wait_for_job(client, ids["job_id"])["state"] == "done"
        assert stylize(client, ids["style_id"], photo).headers["x-metastyle-stage"] == "adapted"


def test_styles_persist_across_restarts_and_can_be_deleted(make_client, style_png, photo,
                                                            data_dir):
    with make_client() as client:
        style_id = learn(client, style_png)
    assert sorted(p.name for p in data_dir.iterdir()) == [f"{style_id}.json",
                                                          f"{style_id}.safetensors"]
    with make_client() as client:  # a new app on the same folder
        assert [s["id"] for s in client.get("/styles").json()] == [style_id]
        assert stylize(client, style_id, photo).status_code == 200
        assert client.delete(f"/styles/{style_id}").status_code == 204
        assert client.get("/styles").json() == []
        assert stylize(client, style_id, photo).status_code == 404
        assert client.delete(f"/styles/{style_id}").status_code == 404
    assert list(data_dir.iterdir()) == []
