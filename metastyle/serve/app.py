"""HTTP routes of the style-onboarding service (FastAPI).

An app onboards a style in three calls: upload a style image (202 + a job to poll), poll the
job's progress, then stylize photos with the new style. With an encoder-decoder base the style
is usable at once: until its job is done, stylize answers with the zero-shot (k = 0) model, and
the ``X-Metastyle-Stage`` header says which model answered. Uploads are untrusted: they are
size- and pixel-limited and fully decoded before any work is queued, and every bad one is a 4xx
with a one-line JSON ``detail``. The model, steps and content photos are injectable so tests can run
a tiny generator with the random encoder.
"""

from __future__ import annotations

import io
from contextlib import asynccontextmanager
from pathlib import Path

import importlib.util
import logging
import threading

from fastapi import FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from ..checkpoint import SHIPPED_INIT, file_strength, read
from ..errors import UserError
from ..images import image_from_bytes, resize_long_side
from ..limits import STYLIZE, Range
from ..presets import resolve_settings
from ..stylenet import DETAIL, PALETTE
from ..stylizer import adapt
from .jobs import JobPool, QueueFull
from .store import StyleStore, new_id, valid_id
from .zeroshot import ZeroShotStyles

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
MAX_UPLOAD_BYTES = 10 * 2**20
MAX_PIXELS = 25_000_000
MAX_OUTPUT_SIDE = 2048
OUTPUT_SIDE = Range(STYLIZE["max_size"].low, MAX_OUTPUT_SIDE, integer=True)
_FORM_OVERHEAD = 64 * 1024  # multipart boundaries and the small form fields
STAGE_HEADER = "X-Metastyle-Stage"
STAGES = {"zero-shot": "its zero-shot (k = 0) model, while its adaptation is queued or running",
          "adapted": "its adapted model, once its adaptation is done"}


class BodyLimit:
    """ASGI middleware: stop reading a request body once it passes ``limit`` bytes (413).

    A Content-Length over the limit is refused before the body is read (see ``limit_body``);
    a chunked upload has none, so its chunks are counted as they arrive and reading stops at
    the limit rather than after the whole body.
    """

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        seen = 0

        async def limited_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise HTTPException(413, f"upload too large (limit {self.limit} bytes)")
            return message

        await self.app(scope, limited_receive, send)


def _swagger_assets() -> Path | None:
    """The folder of Swagger UI's JS and CSS from the swagger-ui-bundle package, if installed."""
    if importlib.util.find_spec("swagger_ui_bundle") is None:
        return None
    from swagger_ui_bundle import swagger_ui_path

    folder = Path(swagger_ui_path)
    return folder if (folder / "swagger-ui-bundle.js").is_file() else None


def _not_found(what: str, item_id: str) -> HTTPException:
    return HTTPException(404, f"unknown {what} {item_id[:40]!r}")


def create_app(data_dir: str | Path, base: str | Path | None = None, steps: int | None = None,
               content=None, *, workers: int = 1, queue_size: int = 4,
               max_upload_bytes: int = MAX_UPLOAD_BYTES, max_pixels: int = MAX_PIXELS,
               stylize_workers: int = 2, stylize_queue: int = 4) -> FastAPI:
    """The service; styles live in ``data_dir``, adapted from ``base`` (default: shipped init)
    on ``content`` photos with the upload's preset (as `metastyle.adapt`); ``steps``, when
    given, overrides every preset's step count. At most ``stylize_workers`` photos are
    stylized at once and ``stylize_queue`` more wait; beyond that a stylize request gets 429.
    """
    base = Path(base).resolve() if base is not None else SHIPPED_INIT
    _, base_meta = read(base)  # fail now, not on the first upload, if the base is missing or bad
    store = StyleStore(data_dir)
    learning = ZeroShotStyles(base, base_meta)
    # a style's stylize defaults, which the page's sliders start at: the base's strength and,
    # for an encoder-decoder, its palette and detail (a Johnson network has neither: null)
    stylenet = base_meta["generator"].get("kind") == "stylenet"
    knobs = {"strength": file_strength(base_meta), "palette": PALETTE if stylenet else None,
             "detail": DETAIL if stylenet else None}
    pool = JobPool(workers, queue_size)
    stylize_slots = threading.BoundedSemaphore(stylize_workers + stylize_queue)  # in the house
    stylize_running = threading.BoundedSemaphore(stylize_workers)  # of those, computing

    @asynccontextmanager
    async def lifespan(_app):
        yield
        pool.shutdown()

    swagger = _swagger_assets()
    app = FastAPI(title="metastyle", lifespan=lifespan, docs_url=None)
    app.add_middleware(BodyLimit, limit=max_upload_bytes + _FORM_OVERHEAD)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    if swagger is not None:
        app.mount("/docs-assets", StaticFiles(directory=swagger), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def docs():
        """Swagger UI from local files (the swagger-ui-bundle package), so it works offline;
        without that package, from its CDN (a note on the page's title says so)."""
        if swagger is not None:
            return get_swagger_ui_html(openapi_url=app.openapi_url, title="metastyle - API",
                                       swagger_js_url="/docs-assets/swagger-ui-bundle.js",
                                       swagger_css_url="/docs-assets/swagger-ui.css",
                                       swagger_favicon_url="/docs-assets/favicon-32x32.png")
        return get_swagger_ui_html(openapi_url=app.openapi_url,
                                   title="metastyle - API (Swagger UI from a CDN: "
                                         "pip install swagger-ui-bundle to serve it offline)")

    @app.exception_handler(UserError)
    async def bad_input(_request, exc: UserError):
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.exception_handler(RequestValidationError)
    async def bad_form(_request, exc: RequestValidationError):
        problems = "; ".join(f"{'.'.join(map(str, e['loc'][1:]))}: {e['msg']}"
                             for e in exc.errors())
        return JSONResponse({"detail": problems}, status_code=400)

    @app.middleware("http")
    async def limit_body(request: Request, call_next):
        """Refuse an oversized upload from its header, before the body is read."""
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > max_upload_bytes + _FORM_OVERHEAD:
            return JSONResponse({"detail": f"upload too large (limit {max_upload_bytes} bytes)"},
                                status_code=413)
        return await call_next(request)

    def read_image(upload: UploadFile, what: str):
        name = Path(upload.filename or what).name[:100]
        data = upload.file.read(max_upload_bytes + 1)
        if len(data) > max_upload_bytes:
            raise HTTPException(413, f"{name}: larger than {max_upload_bytes} bytes")
        return name, image_from_bytes(data, name, max_pixels)

    @app.get("/", include_in_schema=False)
    def index():
        return FileResponse(STATIC / "index.html")

    @app.post("/styles", status_code=202)
    def add_style(style: UploadFile = File(...), preset: str = Form("fast"),
                  colour_weight: float | None = Form(None)):
        """Upload a style image: the answer names the adaptation job to poll and the style.
        ``zero_shot`` true (an encoder-decoder base): the style can be stylized at once, with
        its zero-shot (k = 0) model until the job is done, then with the adapted one."""
        # settings resolved (and checked: the CLI's ranges, metastyle.limits) up front: a bad
        # one is a 400, and steps drive progress
        chosen = resolve_settings(base_meta, preset, steps=steps, colour_weight=colour_weight)
        try:  # a queue slot first, so a busy server answers 429 without decoding the upload
            job = pool.reserve(chosen.steps)
        except QueueFull:
            raise HTTPException(429, "busy: too many styles are being learned; "
                                     "try again in a minute") from None
        try:
            name, image = read_image(style, "style")
        except BaseException:
            pool.release(job)
            raise
        style_id = new_id()
        info = {"name": name, "preset": preset, "subset": chosen.subset, "steps": chosen.steps,
                "colour_weight": chosen.colour_weight, "job_id": job.id, **knobs}
        learning.add(style_id, job, image, info)

        def work(job):
            try:
                stylizer = adapt(image, content=content, base=base, on_step=job.progress,
                                 settings=chosen)
                provenance = stylizer.provenance
                store.add(style_id, stylizer, {
                    **info, "seconds": provenance["seconds"],
                    "loss_before": provenance["support_loss_before"],
                    "loss_after": provenance["support_loss_after"], "job_loss": job.loss})
            finally:  # stored, it is served adapted; failed, it is not served at all
                learning.remove(style_id)

        pool.start(job, work)
        return {"job_id": job.id, "style_id": style_id, "zero_shot": learning.available}

    @app.get("/jobs/{job_id}")
    def job_status(job_id: str):
        """An adaptation job's progress; ``zero_shot`` true while its style is stylized with
        the zero-shot (k = 0) model (an encoder-decoder base, the job queued or running)."""
        if not valid_id(job_id):
            raise _not_found("job", job_id)
        job = pool.get(job_id)
        if job is not None:
            return {**job.status(), "zero_shot": learning.serves(job)}
        record = store.find_job(job_id)  # a finished job of an earlier run of the server
        if record is not None:
            return {"state": "done", "step": record["steps"], "steps": record["steps"],
                    "loss": record.get("job_loss"), "eta_seconds": 0.0, "error": None,
                    "zero_shot": False}
        raise HTTPException(404, f"unknown job {job_id!r}: not a job of this server run "
                                 "(unknown after restart: jobs in progress are kept in memory; "
                                 "finished ones are in GET /styles)")

    @app.get("/styles")
    def list_styles():
        """The styles that can be stylized, newest first: the adapted ones (``zero_shot``
        false) and, with an encoder-decoder base, those still being learned, served by their
        zero-shot (k = 0) model meanwhile (``zero_shot`` true; no loss or time yet)."""
        stored = [{**record, "zero_shot": False} for record in store.styles()]
        done = {record["id"] for record in stored}
        styles = stored + [r for r in learning.records() if r["id"] not in done]
        return sorted(styles, key=lambda record: record["created"], reverse=True)

    @app.delete("/styles/{style_id}", status_code=204)
    def delete_style(style_id: str):
        """Delete an adapted style; one still being learned is a 409 until its job is done."""
        if learning.record(style_id) is not None:
            raise HTTPException(409, f"style {style_id!r} is still being learned: delete it "
                                     "once its job is done")
        if not store.delete(style_id):
            raise _not_found("style", style_id)

    @app.post("/styles/{style_id}/stylize", response_class=Response, responses={200: {
        "content": {"image/jpeg": {}}, "description": "The stylized photo (JPEG).",
        "headers": {STAGE_HEADER: {
            "description": "Which model of the style answered: " + "; ".join(
                f"'{stage}' = {what}" for stage, what in STAGES.items()) + ".",
            "schema": {"type": "string", "enum": list(STAGES)}}}}})
    def stylize(style_id: str, photo: UploadFile = File(...), strength: float | None = Form(None),
                preserve_colour: bool = Form(False), max_size: int = Form(1024),
                palette: float | None = Form(None), detail: float | None = Form(None)):
        """Stylize a photo with a style's adapted model, or, while an encoder-decoder base's
        adaptation of it is queued or running, with its zero-shot (k = 0) model; the
        X-Metastyle-Stage header says which. A style is unknown (404) while a Johnson base's
        adaptation of it runs, and after its adaptation failed (upload it again). ``strength``,
        ``palette`` and ``detail`` default to the model's (`Stylizer.generator`)."""
        for name, value in (("strength", strength), ("palette", palette), ("detail", detail)):
            if value is not None:  # the CLI's ranges (metastyle.limits)
                STYLIZE[name].check(value, name)
        OUTPUT_SIDE.check(max_size, "max_size")
        if store.info(style_id) is None and learning.record(style_id) is None:
            raise _not_found("style", style_id)
        if not stylize_slots.acquire(blocking=False):  # before the upload is decoded
            raise HTTPException(429, "busy: too many photos are being stylized; "
                                     "try again in a few seconds")
        try:
            _, image = read_image(photo, "photo")
            if max(image.size) > max_size:
                image = resize_long_side(image, max_size)
            with stylize_running:  # a zero-shot model is made on first use: in bounds
                stylizer, stage = store.stylizer(style_id), "adapted"
                if stylizer is None:
                    stylizer, stage = learning.stylizer(style_id), "zero-shot"
                if stylizer is None:
                    raise _not_found("style", style_id)
                result = stylizer.stylize(image, strength, preserve_colour, palette=palette,
                                          detail=detail)
        finally:
            stylize_slots.release()
        buffer = io.BytesIO()
        result.save(buffer, format="JPEG", quality=90)
        return Response(buffer.getvalue(), media_type="image/jpeg",
                        headers={STAGE_HEADER: stage})

    return app


def run(data_dir: str | Path, host: str = "127.0.0.1", port: int = 8000, **options) -> None:
    """`metastyle serve`: build the app (``options`` as `create_app`) and serve it."""
    import uvicorn

    uvicorn.run(create_app(data_dir, **options), host=host, port=port)
