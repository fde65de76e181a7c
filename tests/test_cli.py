"""End-to-end CLI runs on tiny images with the random encoder, and every bad-input kind."""

import pytest
from PIL import Image
from typer.testing import CliRunner

from metastyle import checkpoint
from metastyle.cli import app
from metastyle.presets import DEFAULT_COLOUR_WEIGHT

runner = CliRunner()


@pytest.fixture
def content_dir(tiny_corpus):
    return tiny_corpus / "content"


def _ok(result):
    assert result.exit_code == 0, result.stderr + result.stdout
    return result


def test_adapt_writes_a_small_delta_and_a_preview_then_stylize_uses_it(base_model, content_dir,
                                                                       tiny_corpus, tmp_path):
    out = tmp_path / "out" / "s.safetensors"
    result = _ok(runner.invoke(app, ["adapt", str(tiny_corpus / "style/style0.png"), "--base",
                                     str(base_model), "--content", str(content_dir), "-k", "3",
                                     "-o", str(out), "--no-progress"]))
    assert "3 steps (norm) in" in result.stdout and " s," in result.stdout
    assert out.stat().st_size < 16 * 1024
    assert (tmp_path / "out" / "s_preview.jpg").is_file()
    _, meta = checkpoint.read(out)
    assert meta["kind"] == "delta" and meta["steps"] == 3 and meta["style_sha256"]
    assert meta["loss"]["colour_weight"] == DEFAULT_COLOUR_WEIGHT  # recorded with the model
    _ok(runner.invoke(app, ["stylize", str(out), str(content_dir / "content0.png"), "-o",
                            str(tmp_path / "styled")]))
    written = list((tmp_path / "styled").glob("*.jpg"))
    assert len(written) == 1 and Image.open(written[0]).size == (48, 40)


def test_adapt_quality_preset_adapts_every_parameter_and_options_override_it(
        base_model, content_dir, tiny_corpus, tmp_path):
    style = str(tiny_corpus / "style/style0.png")
    common = ["--base", str(base_model), "--content", str(content_dir), "--no-progress"]
    quality = tmp_path / "q.safetensors"
    result = _ok(runner.invoke(app, ["adapt", style, "--preset", "quality", "-k", "2",
                                     "-o", str(quality)] + common))
    assert "2 steps (all) in" in result.stdout
    _, meta = checkpoint.read(quality)
    assert (meta["preset"], meta["subset"], meta["batch"]) == ("quality", "all", 4)
    small = tmp_path / "n.safetensors"
    _ok(runner.invoke(app, ["adapt", style, "--preset", "quality", "-k", "2", "--subset", "norm",
                            "-o", str(small)] + common))
    assert checkpoint.read(small)[1]["subset"] == "norm"
    toned = tmp_path / "toned.safetensors"
    _ok(runner.invoke(app, ["adapt", style, "-k", "2", "--colour-weight", "10", "-o", str(toned)]
                      + common))
    assert checkpoint.read(toned)[1]["loss"]["colour_weight"] == 10.0
    assert small.stat().st_size < quality.stat().st_size
    bad = runner.invoke(app, ["adapt", style, "--preset", "best", "-o",
                              str(tmp_path / "b.safetensors")] + common)
    assert bad.exit_code == 2 and "--preset': 'best': choose one of fast, quality" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and not (tmp_path / "b.safetensors").exists()


def test_train_style_and_optimize(tiny_corpus, content_dir, tmp_path):
    model = tmp_path / "per_style.safetensors"
    result = _ok(runner.invoke(app, [
        "train-style", str(tiny_corpus / "style/style1.png"), "--content", str(content_dir),
        "--steps", "3", "-o", str(model), "--batch", "2", "--no-progress",
        "--set", 'loss.encoder="random"', "--set", "generator.width=4",
        "--set", "generator.res_blocks=1", "--set", "data.crop=16"]))
    assert "s/step" in result.stdout
    assert checkpoint.read(model)[1]["trained_by"] == "metastyle train-style"
    out = tmp_path / "gatys.png"
    result = _ok(runner.invoke(app, [
        "optimize", str(content_dir / "content0.png"), str(tiny_corpus / "style/style1.png"),
        "-o", str(out), "--size", "32", "--steps", "5", "--encoder", "random", "--no-progress"]))
    first, last = (float(x) for x in result.stdout.split("loss ")[1].split(" in")[0].split(" -> "))
    assert last < first
    assert Image.open(out).size == (32, 27)


def _bad_images(tmp_path, photo):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "empty.png").write_bytes(b"")
    (bad / "text.png").write_text("not an image at all")
    data = photo.read_bytes()
    (bad / "truncated.png").write_bytes(data[: len(data) // 2])
    Image.new("RGB", (8, 8)).save(bad / "tiny.png")
    return {"missing": (bad / "missing.png", "not found"), "empty": (bad / "empty.png", "empty"),
            "not an image": (bad / "text.png", "not an image"),
            "truncated": (bad / "truncated.png", "truncated"),
            "too small": (bad / "tiny.png", "too small"), "too large": (photo, "too large")}


@pytest.mark.parametrize("kind", ["missing", "empty", "not an image", "truncated", "too small",
                                  "too large"])
def test_bad_input_gives_one_line_exit_2_and_no_output(kind, tmp_path, photo, base_model):
    path, phrase = _bad_images(tmp_path, photo)[kind]
    limit = ["--max-pixels", "100"] if kind == "too large" else []
    out = tmp_path / "result.jpg"
    result = runner.invoke(app, ["optimize", str(path), str(photo), "-o", str(out), "--steps", "1",
                                 "--encoder", "random", "--no-progress", *limit])
    assert result.exit_code == 2
    assert phrase in result.stderr and path.name in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert not out.exists() and not list(tmp_path.glob(".result*"))
    styled = tmp_path / "styled"
    result = runner.invoke(app, ["stylize", str(base_model), str(path), "-o", str(styled), *limit])
    assert result.exit_code == 2 and phrase in result.stderr
    assert not styled.exists() or not list(styled.iterdir())


def test_bad_model_file_and_bad_config_key_exit_2(tmp_path, photo):
    fake = tmp_path / "fake.safetensors"
    fake.write_bytes(b"\x00" * 64)
    result = runner.invoke(app, ["stylize", str(fake), str(photo)])
    assert result.exit_code == 2 and "not a metastyle model" in result.stderr
    config = tmp_path / "c.toml"
    config.write_text("[meta]\ninner_steps = 1\n")
    result = runner.invoke(app, ["meta-train", str(config), "--set", "meta.inner_stpes=2",
                                 "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 2 and "meta.inner_stpes" in result.stderr


def test_debug_flag_shows_the_traceback(tmp_path):
    result = runner.invoke(app, ["--debug", "stylize", str(tmp_path / "nope.safetensors"),
                                 str(tmp_path / "x.png")])
    assert result.exit_code != 0 and result.exception is not None


def test_every_command_has_help_with_an_example():
    for command in ("adapt", "stylize", "meta-train", "optimize", "train-style", "fetch-weights",
                    "export-init", "plot-runs", "export", "serve"):
        result = _ok(runner.invoke(app, [command, "--help"]))
        assert "Example" in result.stdout, command


def test_stylize_strength_and_preserve_colour_then_export(base_model, content_dir, tiny_corpus,
                                                          tmp_path):
    model = tmp_path / "s.safetensors"
    _ok(runner.invoke(app, ["adapt", str(tiny_corpus / "style/style0.png"), "--base",
                            str(base_model), "--content", str(content_dir), "-k", "2", "-o",
                            str(model), "--no-progress"]))
    photo = str(content_dir / "content0.png")
    for model_file, folder, flags in ((model, "zero", ["--strength", "0"]),
                                      (base_model, "base", []),
                                      (model, "colour", ["--preserve-colour"])):
        _ok(runner.invoke(app, ["stylize", str(model_file), photo, "-o", str(tmp_path / folder),
                                *flags]))
    [zero], [base] = (list((tmp_path / f).glob("*.jpg")) for f in ("zero", "base"))
    assert zero.read_bytes() == base.read_bytes()  # strength 0 is the base model
    assert len(list((tmp_path / "colour").glob("*.jpg"))) == 1
    result = runner.invoke(app, ["stylize", str(model), photo, "--strength", "2"])
    assert result.exit_code == 2 and "--strength': 2.0: must be" in result.stderr

    result = _ok(runner.invoke(app, ["export", str(model), "--format", "torchscript", "-o",
                                     str(tmp_path / "s.pt")]))
    assert "MB" in result.stdout and (tmp_path / "s.pt").stat().st_size > 0
    result = runner.invoke(app, ["export", str(model), "--format", "tflite", "-o",
                                 str(tmp_path / "s.tflite")])
    assert result.exit_code == 2 and "choose one of onnx, torchscript" in result.stderr
    assert result.stderr.count("\n") == 1 and not (tmp_path / "s.tflite").exists()
