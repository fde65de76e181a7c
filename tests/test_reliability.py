"""Hostile input, cause by cause (issue 20): every case is a real bad input that once gave a
traceback, a wrong exit code, an overwritten input or a half-written output. Each must now give
one line on stderr, exit code 2, no output, and leave every input as it was. Tiny images and
the random encoder keep it fast. The property-based half is in test_reliability_properties.py.
"""

import io
import json
import logging
import os
import struct
import threading
import time

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from metastyle import checkpoint
from metastyle.cli import app
from metastyle.config import load_config
from metastyle.errors import UserError
from metastyle.images import check_outputs, image_from_bytes, load_image, write_files
from metastyle.inference import stylize_files
from metastyle.stylizer import load_stylizer

from conftest import tiny_config_overrides

runner = CliRunner()


def one_line_exit_2(result, *phrases):
    """The CLI's promise for bad input: exit 2, one line on stderr naming the problem."""
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    for phrase in phrases:
        assert phrase in result.stderr, result.stderr


@pytest.fixture
def adapt_args(base_model, tiny_corpus):
    return ["--base", str(base_model), "--content", str(tiny_corpus / "content"), "-k", "1",
            "--no-progress"]


def snapshot(folder):
    """Every file under ``folder`` with its bytes (to show inputs are unchanged and nothing
    else was written)."""
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def noise_png(path, size=(40, 32), seed=0):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(
        path, format="PNG")
    return path


# --- 1. adapt never overwrites its input --------------------------------------------------


@pytest.mark.parametrize("case", ["preview is the style", "default preview is the style",
                                  "model file is the style", "output is the base",
                                  "preview through a symlink", "preview is a content photo"])
def test_adapt_refuses_an_output_that_is_one_of_its_inputs(case, tmp_path, adapt_args,
                                                           base_model, tiny_corpus):
    work = tmp_path / "work"
    work.mkdir()
    style = noise_png(work / "s_preview.jpg.png")
    args = []
    if case == "preview is the style":
        args = ["-o", str(work / "out.safetensors"), "--preview", str(style)]
    elif case == "default preview is the style":  # <out>_preview.jpg is the style image
        style = work / "s_preview.jpg"
        Image.open(noise_png(work / "tmp.png")).save(style, format="JPEG")
        args = ["-o", str(work / "s.safetensors")]
    elif case == "model file is the style":  # an image named x.safetensors, -o x.safetensors
        style = work / "x.safetensors"
        noise_png(work / "tmp.png").rename(style)
        args = ["-o", str(style), "--preview", str(work / "p.jpg")]
    elif case == "output is the base":
        args = ["-o", str(base_model), "--preview", str(work / "p.jpg")]
    elif case == "preview through a symlink":
        (work / "link.png").symlink_to(style)
        args = ["-o", str(work / "out.safetensors"), "--preview", str(work / "link.png")]
    else:
        args = ["-o", str(work / "out.safetensors"), "--preview",
                str(tiny_corpus / "content" / "content0.png")]
    before, base_before = snapshot(tmp_path), base_model.read_bytes()
    result = runner.invoke(app, ["adapt", str(style), *adapt_args, *args])
    one_line_exit_2(result, "would overwrite the")
    assert snapshot(tmp_path) == before and base_model.read_bytes() == base_before


# --- 2. all outputs or none ---------------------------------------------------------------


def test_adapt_checks_every_output_is_writable_before_it_starts(tmp_path, adapt_args,
                                                                 tiny_corpus, monkeypatch):
    import metastyle.adapt_file as adapt_file

    started = []
    monkeypatch.setattr(adapt_file, "adapt_style_file",
                        lambda *a, **k: started.append(1) or pytest.fail("work started"))
    out = tmp_path / "out"
    out.mkdir()
    (out / "a-file").write_text("not a folder")
    model = out / "m.safetensors"
    result = runner.invoke(app, ["adapt", str(tiny_corpus / "style/style0.png"), *adapt_args,
                                 "-o", str(model), "--preview", str(out / "a-file" / "p.jpg")])
    one_line_exit_2(result, "a-file", "cannot write")
    assert not model.exists() and not started
    assert sorted(p.name for p in out.iterdir()) == ["a-file"]


def test_write_files_is_all_or_nothing(tmp_path, monkeypatch):
    first, second = tmp_path / "a.bin", tmp_path / "b.bin"
    real_replace = os.replace

    def fail_second(src, dst):
        if str(dst).endswith("b.bin"):
            raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", fail_second)
    with pytest.raises(UserError, match="b.bin: cannot write file"):
        write_files({first: b"1", second: b"2"})
    assert list(tmp_path.iterdir()) == []  # neither the first output nor a temp file


def test_a_failed_preview_leaves_no_model_file(tmp_path, adapt_args, tiny_corpus, monkeypatch):
    import metastyle.adapt_file as adapt_file

    def broken_preview(*args, **kwargs):
        raise UserError("preview: cannot encode")

    monkeypatch.setattr(adapt_file, "encode_image", broken_preview)
    out = tmp_path / "out"
    result = runner.invoke(app, ["adapt", str(tiny_corpus / "style/style0.png"), *adapt_args,
                                 "-o", str(out / "m.safetensors")])
    one_line_exit_2(result, "cannot encode")
    assert not out.exists()


# --- 3. model metadata has a schema -------------------------------------------------------


def _with_metadata(path, tmp_path, meta_text: str):
    """A copy of the model file at ``path`` whose metastyle metadata is ``meta_text``."""
    from safetensors.torch import load, save

    tensors = load(path.read_bytes())
    out = tmp_path / f"edited{len(list(tmp_path.glob('edited*')))}.safetensors"
    out.write_bytes(save(tensors, metadata={"metastyle": meta_text}))
    return out


@pytest.mark.parametrize("meta, phrase", [
    ("[1, 2]", "expected a JSON object, got list"),
    ('"a string"', "expected a JSON object, got str"),
    ("3", "expected a JSON object, got int"),
    ("null", "expected a JSON object"),
    ('{"format_version": true}', "format version"),
    ('{"format_version": 1, "kind": ["generator"]}', "kind is"),
    ('{"format_version": 1, "kind": "generator", "generator": "wide"}', "generator is"),
    ('{"format_version": 1, "kind": "delta", "base_path": 7}', "base_path is"),
    ('{"format_version": 1, "kind": "generator", "config": []}', "config is"),
    ('{"format_version": 1, "kind": "generator", "config": {"data": {"crop": "big"}}}',
     "config.data.crop"),
    ('{"format_version": 1, "kind": "generator", "config": {"data": {"crop": -3}}}',
     "config.data.crop"),
    ('{"format_version": 1, "kind": "generator", "adapt_lr": "fast"}', "adapt_lr"),
])
def test_bad_metadata_is_one_line_naming_the_file(meta, phrase, base_model, tmp_path, photo):
    bad = _with_metadata(base_model, tmp_path, meta)
    with pytest.raises(UserError) as info:
        load_stylizer(bad)
    assert phrase in str(info.value) and bad.name in str(info.value)
    assert "\n" not in str(info.value)
    one_line_exit_2(runner.invoke(app, ["stylize", str(bad), str(photo)]), bad.name)


def test_a_base_recommending_bad_settings_is_refused_before_adapting(base_model, tmp_path,
                                                                      tiny_corpus):
    meta = checkpoint.read(base_model)[1] | {"adapt_lr": -1.0}
    bad = _with_metadata(base_model, tmp_path, json.dumps(meta))
    result = runner.invoke(app, ["adapt", str(tiny_corpus / "style/style0.png"), "--base",
                                 str(bad), "--content", str(tiny_corpus / "content"),
                                 "-o", str(tmp_path / "o.safetensors"), "--no-progress"])
    one_line_exit_2(result, "adapt_lr -1.0")


# --- 4. tile and size values --------------------------------------------------------------


@pytest.mark.parametrize("args, phrase", [(["--tile", "0"], "--tile"), (["--tile", "8"], "--tile"),
                                          (["--max-size", "0"], "--max-size"),
                                          (["--max-size", "-5"], "--max-size"),
                                          (["--strength", "nan"], "--strength"),
                                          (["--max-pixels", "0"], "--max-pixels")])
def test_stylize_tile_and_size_values_are_checked(args, phrase, base_model, photo, tmp_path):
    out = tmp_path / "out"
    one_line_exit_2(runner.invoke(app, ["stylize", str(base_model), str(photo), "-o", str(out),
                                        *args]), phrase)
    assert not out.exists()


@pytest.mark.parametrize("options, phrase", [({"tile": 8}, "tile 8"), ({"tile": 64}, "tile 64"),
                                             ({"max_size": 0}, "max size 0")])
def test_the_library_checks_tiling_too(options, phrase, photo, tmp_path):
    from metastyle.generator import Generator, GeneratorConfig

    with pytest.raises(UserError, match=phrase):
        stylize_files(Generator(GeneratorConfig(width=4, res_blocks=1)), [photo],
                      tmp_path / "out", **options)
    assert not (tmp_path / "out").exists()


# --- 5, 6. config values: range checks at load time, no run folder before the data --------


@pytest.mark.parametrize("override", ["train.steps=-5", "train.steps=0", "train.log_every=0",
                                      "train.checkpoint_every=-1", "meta.meta_batch=0",
                                      "generator.width=0", "data.crop=0", "data.crop=-16",
                                      "train.eval_every=0", "meta.meta_lr=nan",
                                      "loss.style_weight=inf", "meta.inner_lr=-0.1"])
def test_meta_train_refuses_bad_values_before_writing_a_run_folder(override, tiny_corpus,
                                                                   tmp_path):
    run = tmp_path / "run"
    sets = [x for o in tiny_config_overrides(tiny_corpus) + [override] for x in ("--set", o)]
    config = tmp_path / "c.toml"
    config.write_text("")
    result = runner.invoke(app, ["meta-train", str(config), "--run-dir", str(run),
                                 "--no-progress", *sets])
    one_line_exit_2(result, f"config key {override.split('=')[0]}")
    assert not run.exists()


def test_the_run_folder_is_written_only_after_the_data_is_found(tmp_path):
    run = tmp_path / "run"
    config = tmp_path / "c.toml"
    config.write_text(f'[data]\nmanifest = "{tmp_path / "missing.tsv"}"\n'
                      '[loss]\nencoder = "random"\n[meta]\ninit = ""\n')
    result = runner.invoke(app, ["meta-train", str(config), "--run-dir", str(run),
                                 "--no-progress", "--set", "generator.width=4"])
    one_line_exit_2(result, "missing.tsv")
    assert not run.exists()


def test_range_checks_apply_to_stage_and_bench_configs():
    from metastyle.config import BenchConfig
    from metastyle.stages import StageConfig

    with pytest.raises(UserError, match="config key batch"):
        load_config(None, ["batch=0"], root=StageConfig)
    with pytest.raises(UserError, match="config key train.steps"):
        load_config(None, ["train.steps=0"], root=StageConfig)
    with pytest.raises(UserError, match="config key ks"):
        load_config(None, ["ks=[0, -1]"], root=BenchConfig)
    with pytest.raises(UserError, match="config key tune_lrs.norm"):
        load_config(None, ["tune_lrs.norm=[0.1, nan]"], root=BenchConfig)


# --- 7. adapt's options -------------------------------------------------------------------


@pytest.mark.parametrize("args, phrase", [
    (["--steps", "-1"], "--steps"), (["--lr", "nan"], "--lr"), (["--lr", "0"], "--lr"),
    (["--lr", "-inf"], "--lr"), (["--batch", "0"], "--batch"), (["--subset", "bogus"], "--subset"),
    (["--colour-weight", "inf"], "--colour-weight"), (["--colour-weight", "-1"], "--colour-weight"),
    (["--style-weight", "nan"], "--style-weight"), (["--preset", "best"], "--preset"),
    (["--steps", "many"], "--steps")])
def test_adapt_options_are_checked(args, phrase, tmp_path, adapt_args, tiny_corpus):
    out = tmp_path / "out"
    result = runner.invoke(app, ["adapt", str(tiny_corpus / "style/style0.png"), *adapt_args,
                                 "-o", str(out / "o.safetensors"), *args])
    one_line_exit_2(result, phrase)
    assert not out.exists()


def test_zero_adaptation_steps_is_the_base_model(tmp_path, adapt_args, tiny_corpus):
    out = tmp_path / "o.safetensors"
    result = runner.invoke(app, ["adapt", str(tiny_corpus / "style/style0.png"), *adapt_args,
                                 "-o", str(out), "-k", "0"])
    assert result.exit_code == 0, result.stderr
    assert checkpoint.read(out)[1]["steps"] == 0


def test_a_non_finite_loss_stops_adaptation_and_saves_nothing(tmp_path, adapt_args, tiny_corpus,
                                                              monkeypatch):
    import metastyle.adapt_file as adapt_file

    real = adapt_file.perceptual_loss

    def exploding(cfg):
        loss_fn = real(cfg)
        forward = loss_fn.forward
        calls = []

        def nan_after_a_step(*args, **kwargs):
            terms = forward(*args, **kwargs)
            calls.append(1)
            if torch.is_grad_enabled() and len(calls) > 1:  # the second training step
                terms["total"] = terms["total"] * float("nan")
            return terms

        loss_fn.forward = nan_after_a_step
        return loss_fn

    monkeypatch.setattr(adapt_file, "perceptual_loss", exploding)
    out = tmp_path / "out"
    result = runner.invoke(app, ["adapt", str(tiny_corpus / "style/style0.png"), *adapt_args,
                                 "-o", str(out / "o.safetensors"), "-k", "3"])
    one_line_exit_2(result, "adaptation diverged", "nothing was saved")
    assert not out.exists()


# --- 8. images whose header claims more than their data -----------------------------------


def _jpeg_claiming(width, height, progressive=False):
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(
        buffer, "JPEG", quality=90, progressive=progressive)
    data = bytearray(buffer.getvalue())
    sof = data.find(b"\xff\xc2" if progressive else b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def hostile_images() -> dict[str, bytes]:
    """A generated set of bad image files: header/data mismatches, truncations, junk."""
    rng = np.random.default_rng(1)
    img = Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))

    def encoded(fmt):
        buffer = io.BytesIO()
        img.save(buffer, fmt)
        return bytearray(buffer.getvalue())

    bmp = encoded("BMP")
    bmp[18:26] = struct.pack("<ii", 640, 480)  # BMP header claims 100x the pixels
    png = encoded("PNG")
    return {
        "header 6000x6000, data 64x48.jpg": _jpeg_claiming(6000, 6000),
        "progressive, header 4000x3000.jpg": _jpeg_claiming(4000, 3000, progressive=True),
        "header 2000x2000.jpg": _jpeg_claiming(2000, 2000),
        "bmp header 640x480.bmp": bytes(bmp),
        "half a png.png": bytes(png[:len(png) // 2]),
        "half a jpeg.jpg": bytes(encoded("JPEG")[:len(encoded("JPEG")) // 2]),
        "half a tiff.tif": bytes(encoded("TIFF")[:len(encoded("TIFF")) // 2]),
        "half a webp.webp": bytes(encoded("WEBP")[:len(encoded("WEBP")) // 2]),
        "png magic then junk.png": b"\x89PNG\r\n\x1a\n" + rng.bytes(300),
        "jpeg magic then junk.jpg": b"\xff\xd8\xff\xe0" + rng.bytes(300),
        "just a jpeg header.jpg": _jpeg_claiming(64, 48)[:200],
        "text.png": b"hello\n",
    }


@pytest.mark.parametrize("name", list(hostile_images()))
def test_hostile_images_are_refused_in_one_line(name, tmp_path):
    data = hostile_images()[name]
    path = tmp_path / name
    path.write_bytes(data)
    for load in (lambda: load_image(path), lambda: image_from_bytes(data, name)):
        with pytest.raises(UserError) as info:
            load()
        assert name in str(info.value) and "\n" not in str(info.value)


def test_the_corrupt_jpeg_is_refused_before_a_36_mp_decode(tmp_path):
    path = tmp_path / "grey.jpg"
    path.write_bytes(_jpeg_claiming(6000, 6000))
    start = time.perf_counter()
    with pytest.raises(UserError, match="truncated or corrupt.*6000x6000"):
        load_image(path, max_pixels=10**8)
    assert time.perf_counter() - start < 0.5


def test_a_large_flat_jpeg_that_is_whole_is_accepted():
    buffer = io.BytesIO()
    Image.new("RGB", (2000, 1500), (128, 128, 128)).save(buffer, "JPEG", quality=75,
                                                          optimize=True, progressive=True)
    assert image_from_bytes(buffer.getvalue(), "flat.jpg").size == (2000, 1500)


# --- also seen: what a bad path is --------------------------------------------------------


def test_a_folder_a_symlink_loop_and_an_unreadable_file_say_what_they_are(tmp_path, monkeypatch,
                                                                          base_model):
    loop = tmp_path / "loop.png"
    loop.symlink_to(tmp_path / "loop.png")
    with pytest.raises(UserError, match="is a folder, not a file"):
        load_image(tmp_path)
    with pytest.raises(UserError, match="symbolic link loop"):
        load_image(loop)
    with pytest.raises(UserError, match="symbolic link loop"):
        checkpoint.read(loop)
    one_line_exit_2(runner.invoke(app, ["stylize", str(base_model), str(loop)]), "loop")
    unreadable = noise_png(tmp_path / "locked.png")
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if str(p) == str(unreadable)
                        else real_access(p, mode, **kw))  # root reads anything: pretend
    with pytest.raises(UserError, match="locked.png: cannot read file"):
        load_image(unreadable)
    result = runner.invoke(app, ["stylize", str(base_model), str(unreadable)])
    one_line_exit_2(result, "locked.png")
    assert "read" in result.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read a chmod 000 file")
def test_a_chmod_000_file_is_one_line(tmp_path, base_model):
    locked = noise_png(tmp_path / "locked.png")
    locked.chmod(0)
    one_line_exit_2(runner.invoke(app, ["stylize", str(base_model), str(locked)]), "locked.png")


def test_check_outputs_names_the_clash_and_checks_each_other(tmp_path):
    a = noise_png(tmp_path / "a.png")
    with pytest.raises(UserError, match="the preview would overwrite the model file"):
        check_outputs({"model file": tmp_path / "m.png", "preview": tmp_path / "m.png"}, {"x": a})
    with pytest.raises(UserError, match="is a folder"):
        check_outputs({"preview": tmp_path}, {"x": a})


# --- 9, 10. the service -------------------------------------------------------------------

fastapi = pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

import metastyle.serve.app as serve_app  # noqa: E402
from metastyle.serve import create_app  # noqa: E402
from metastyle.serve.app import BodyLimit  # noqa: E402


@pytest.fixture
def make_client(tmp_path, base_model, tiny_corpus):
    def make(**options):
        return TestClient(create_app(tmp_path / "styles", base=base_model, steps=1,
                                     content=tiny_corpus / "content", **options))

    return make


@pytest.fixture
def style_png(tiny_corpus):
    return (tiny_corpus / "style/style0.png").read_bytes()


def _upload(client, data, **form):
    return client.post("/styles", data=form, files={"style": ("s.png", data, "image/png")})


def _wait(client, job_id):
    for _ in range(600):
        status = client.get(f"/jobs/{job_id}").json()
        if status["state"] in ("done", "failed"):
            return status
        time.sleep(0.05)
    raise AssertionError(status)


@pytest.mark.parametrize("form", [{"colour_weight": "inf"}, {"colour_weight": "nan"},
                                  {"colour_weight": "-inf"}, {"colour_weight": "1e300"},
                                  {"colour_weight": "-1"}, {"preset": "fastest"}])
def test_bad_upload_form_fields_are_400_and_nothing_is_stored(form, make_client, style_png):
    with make_client() as client:
        response = _upload(client, style_png, **form)
        assert response.status_code == 400, response.text
        assert "\n" not in response.json()["detail"]
        assert client.get("/styles").json() == []


@pytest.mark.parametrize("form, phrase", [({"strength": "inf"}, "strength"),
                                          ({"strength": "nan"}, "strength"),
                                          ({"strength": "-0.5"}, "strength"),
                                          ({"max_size": "0"}, "max_size"),
                                          ({"max_size": "99999"}, "max_size"),
                                          ({"preserve_colour": "maybe"}, "preserve_colour")])
def test_bad_stylize_form_fields_are_400(form, phrase, make_client, style_png, photo):
    with make_client() as client:
        style_id = _upload(client, style_png).json()["style_id"]
        response = client.post(f"/styles/{style_id}/stylize", data=form,
                               files={"photo": ("p.png", photo.read_bytes(), "image/png")})
        assert response.status_code == 400 and phrase in response.json()["detail"], response.text


def test_a_bad_stored_record_never_takes_down_the_listing(make_client, style_png, tmp_path,
                                                          caplog):
    with make_client() as client:
        job = _upload(client, style_png).json()
        assert _wait(client, job["job_id"])["state"] == "done"
    folder = tmp_path / "styles"
    good = job["style_id"]
    model = (folder / f"{good}.safetensors").read_bytes()
    bad_records = {"1" * 32: '{"id": "%s", "name": "x", "colour_weight": Infinity}' % ("1" * 32),
                   "2" * 32: "[1, 2, 3]", "3" * 32: "{not json", "4" * 32: json.dumps(
                       {"id": "4" * 32, "created": "yesterday", "name": "x", "preset": "fast",
                        "subset": "norm", "steps": 1}),
                   "5" * 32: json.dumps({"id": "6" * 32, "created": 1.0, "name": "x",
                                         "preset": "fast", "subset": "norm", "steps": 1})}
    for style_id, text in bad_records.items():
        (folder / f"{style_id}.json").write_text(text)
        (folder / f"{style_id}.safetensors").write_bytes(model)
    with caplog.at_level(logging.WARNING), make_client() as client:  # after a restart too
        listing = client.get("/styles")
        assert listing.status_code == 200 and [s["id"] for s in listing.json()] == [good]
        assert client.delete(f"/styles/{'1' * 32}").status_code == 204  # can still be removed
    assert sum("skipping its record" in r.message for r in caplog.records) >= len(bad_records)


def test_a_job_whose_loss_is_not_finite_fails_and_polling_it_still_answers(
        make_client, style_png, monkeypatch):
    def diverging(*args, on_step=None, **kwargs):
        on_step(0, float("nan"))
        raise UserError("adaptation diverged: the loss is nan at step 1")

    monkeypatch.setattr(serve_app, "adapt", diverging)
    with make_client() as client:
        status = _wait(client, _upload(client, style_png).json()["job_id"])
        assert status["state"] == "failed" and "diverged" in status["error"]
        assert status["loss"] is None
        assert client.get("/styles").json() == []


def test_the_store_refuses_a_record_it_could_not_serve(tmp_path):
    from metastyle.serve.store import StyleStore

    store = StyleStore(tmp_path / "s")
    with pytest.raises(UserError, match="colour_weight"):
        store.add("a" * 32, None, {"name": "x", "preset": "fast", "subset": "norm", "steps": 1,
                                   "colour_weight": float("inf")})
    assert list((tmp_path / "s").iterdir()) == []


def test_serve_data_dir_that_is_a_file_is_one_line(tmp_path, base_model):
    not_a_folder = tmp_path / "styles.txt"
    not_a_folder.write_text("x")
    with pytest.raises(UserError, match="styles.txt: the data folder is a file"):
        create_app(not_a_folder, base=base_model)
    one_line_exit_2(runner.invoke(app, ["serve", "--data-dir", str(not_a_folder), "--base",
                                        str(base_model)]), "styles.txt")
    assert not_a_folder.read_text() == "x"
    one_line_exit_2(runner.invoke(app, ["serve", "--workers", "0"]), "--workers")


# --- the service, also seen ---------------------------------------------------------------


def test_a_chunked_upload_stops_being_read_at_the_limit():
    import asyncio

    pulled = []

    async def receive():  # an endless chunked body, 64 KiB at a time
        pulled.append(1)
        return {"type": "http.request", "body": b"x" * 65536, "more_body": True}

    async def app_reading_everything(scope, receive, send):
        while (await receive())["more_body"]:
            pass

    limited = BodyLimit(app_reading_everything, limit=1_000_000)
    with pytest.raises(fastapi.HTTPException) as info:
        asyncio.run(limited({"type": "http"}, receive, None))
    assert info.value.status_code == 413 and len(pulled) == 1_000_000 // 65536 + 1


def test_a_chunked_upload_without_content_length_is_413(make_client):
    def chunks():
        for _ in range(40):
            yield b"y" * 65536

    with make_client(max_upload_bytes=100_000) as client:
        response = client.post("/styles", content=chunks(),
                               headers={"content-type": "multipart/form-data; boundary=b"})
        assert response.status_code == 413 and "too large" in response.json()["detail"]


def test_a_full_queue_answers_429_without_decoding_the_upload(make_client, style_png,
                                                               monkeypatch):
    release = threading.Event()
    decoded = []
    real_decode = serve_app.image_from_bytes
    monkeypatch.setattr(serve_app, "adapt", lambda *a, **k: release.wait(30) and None)
    monkeypatch.setattr(serve_app, "image_from_bytes",
                        lambda *a, **k: decoded.append(1) or real_decode(*a, **k))
    with make_client(workers=1, queue_size=0) as client:
        assert _upload(client, style_png).status_code == 202
        assert len(decoded) == 1
        refused = _upload(client, style_png)
        assert refused.status_code == 429 and len(decoded) == 1
        release.set()


def test_a_bad_upload_gives_back_its_queue_slot(make_client, style_png):
    with make_client(workers=1, queue_size=0) as client:
        for _ in range(3):
            assert _upload(client, b"not an image").status_code == 400
        assert _wait(client, _upload(client, style_png).json()["job_id"])["state"] == "done"


def test_stylize_requests_run_in_a_bounded_pool(make_client, style_png, photo, monkeypatch):
    from metastyle.stylizer import Stylizer

    with make_client(stylize_workers=1, stylize_queue=0) as client:
        style_id = _upload(client, style_png).json()["style_id"]
        for _ in range(600):
            if client.get("/styles").json():
                break
            time.sleep(0.05)
        inside, release = threading.Event(), threading.Event()
        real = Stylizer.stylize

        def slow(self, *args, **kwargs):
            inside.set()
            release.wait(30)
            return real(self, *args, **kwargs)

        monkeypatch.setattr(Stylizer, "stylize", slow)
        files = {"photo": ("p.png", photo.read_bytes(), "image/png")}
        first = {}
        thread = threading.Thread(target=lambda: first.update(
            r=client.post(f"/styles/{style_id}/stylize", files=files)))
        thread.start()
        assert inside.wait(30)
        busy = client.post(f"/styles/{style_id}/stylize", files=files)
        assert busy.status_code == 429 and "busy" in busy.json()["detail"]
        release.set()
        thread.join(30)
        assert first["r"].status_code == 200
        assert client.post(f"/styles/{style_id}/stylize", files=files).status_code == 200


def test_job_ids_after_a_restart(make_client, style_png):
    with make_client() as client:
        job = _upload(client, style_png).json()
        done = _wait(client, job["job_id"])
    with make_client() as client:  # the same data folder, a new process's memory
        again = client.get(f"/jobs/{job['job_id']}")
        assert again.status_code == 200 and again.json()["state"] == "done"
        assert again.json()["steps"] == done["steps"]
        lost = client.get(f"/jobs/{'a' * 32}")
        assert lost.status_code == 404 and "unknown after restart" in lost.json()["detail"]


def test_too_large_in_the_service_names_no_cli_option(make_client):
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64)).save(buffer, "PNG")
    with make_client(max_pixels=1000) as client:
        response = _upload(client, buffer.getvalue())
        assert response.status_code == 400 and "too large" in response.json()["detail"]
        assert "--" not in response.json()["detail"]


def test_docs_are_served_offline_when_the_assets_are_installed(make_client):
    with make_client() as client:
        page = client.get("/docs")
        assert page.status_code == 200
        if serve_app._swagger_assets() is None:
            assert "swagger-ui-bundle" in page.text  # the page says how to serve it offline
            return
        assert "cdn" not in page.text.lower() and "/docs-assets/swagger-ui-bundle.js" in page.text
        assert client.get("/docs-assets/swagger-ui-bundle.js").status_code == 200
        assert client.get("/docs-assets/swagger-ui.css").status_code == 200
