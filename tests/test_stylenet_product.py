"""The encoder-decoder generator through the product: adapt, zero-shot stylize, strength, export."""

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from metastyle import checkpoint
from metastyle.cli import DETAIL_HELP, app
from metastyle.colour import palette_of
from metastyle.detail import fine_detail
from metastyle.errors import UserError
from metastyle.images import pil_to_tensor
from metastyle.stylenet import DETAIL, DETAIL_SIGMA, StyleNet
from metastyle.stylizer import adapt, load_stylizer, zero_shot

runner = CliRunner()


def _ok(result):
    assert result.exit_code == 0, result.stderr + result.stdout
    return result


def test_adapt_starts_from_the_zero_shot_code_and_stores_a_tiny_delta(stylenet_base, tiny_corpus,
                                                                      tmp_path):
    style = tiny_corpus / "style" / "style0.png"
    out = tmp_path / "s.safetensors"
    _ok(runner.invoke(app, ["adapt", str(style), "--base", str(stylenet_base), "--content",
                            str(tiny_corpus / "content"), "-k", "2", "-o", str(out),
                            "--no-progress"]))
    tensors, meta = checkpoint.read(out)
    assert meta["kind"] == "delta" and meta["generator"]["kind"] == "stylenet"
    assert {"code.mean.relu4_1", "code.std.relu3_1", "palette.mean", "palette.cov"} <= set(tensors)
    assert out.stat().st_size < 16 * 1024
    adapted = load_stylizer(out).model
    k0 = zero_shot(style, stylenet_base).model
    assert isinstance(adapted, StyleNet)
    # the style's palette is stored as the zero-shot model sets it (adaptation leaves it)
    assert adapted.palette.active == 1 and torch.equal(adapted.palette.cov, k0.palette.cov)
    # the adapted code starts at the style's statistics and moved by at most K Adam steps
    moved = max((adapted.code.mean[n] - k0.code.mean[n]).abs().max() for n in k0.code.mean)
    assert 0 < moved <= 2 * 0.01 * 1.01


def test_adapt_at_k0_says_it_stored_the_zero_shot_code(stylenet_base, tiny_corpus, tmp_path):
    style = tiny_corpus / "style" / "style0.png"
    out = tmp_path / "k0.safetensors"
    result = _ok(runner.invoke(app, ["adapt", str(style), "--base", str(stylenet_base),
                                     "--content", str(tiny_corpus / "content"), "-k", "0",
                                     "-o", str(out), "--no-progress"]))
    assert "the zero-shot style code (k = 0), support loss" in result.stdout
    assert "nan" not in result.stdout + result.stderr
    adapted, k0 = load_stylizer(out).model, zero_shot(style, stylenet_base).model
    assert all(torch.equal(adapted.code.mean[n], k0.code.mean[n]) for n in k0.code.mean)


def test_the_refine_objective_adapts_the_affines_and_keeps_the_style_code(stylenet_base,
                                                                        tiny_corpus):
    """refine + affines: the decoder's affines move, the code stays the painting's statistics
    and is stored anyway, and the objective is the anchored fine-scale one."""
    style = tiny_corpus / "style" / "style0.png"
    losses = []
    stylizer = adapt(style, steps=3, base=stylenet_base, content=tiny_corpus / "content",
                     lr=0.05, subset="affines", objective="refine", crop=24,
                     on_step=lambda i, loss: losses.append(loss))
    k0 = zero_shot(style, stylenet_base).model
    model = stylizer.model
    assert stylizer.provenance["objective"] == "refine" and len(losses) == 3
    assert stylizer.provenance["crop"] == 24
    assert all(torch.equal(model.code.mean[n], k0.code.mean[n]) for n in k0.code.mean)
    assert any(not torch.equal(p, dict(k0.named_parameters())[n])
               for n, p in model.named_parameters() if ".norm." in n)
    assert set(model.style_parameter_names()) <= set(stylizer.names)
    loss = stylizer.provenance["loss"]
    assert loss["anchor"] and loss["style_layers"] == ["relu1_1", "relu2_1"]


def test_the_loss_is_reported_on_the_first_batches_the_steps_draw(stylenet_base, tiny_corpus):
    """At lr 0 the model stays the start: the support loss before and after is the mean of the
    first two steps' losses (two batches of two make the four report crops)."""
    from metastyle.adapt_file import adapt_style_file
    from metastyle.presets import AdaptSettings

    losses = []
    settings = AdaptSettings(steps=3, lr=0.0, batch=2, subset="affines", objective="refine",
                             crop=24)
    _, provenance = adapt_style_file(tiny_corpus / "style" / "style0.png", stylenet_base,
                                     sorted((tiny_corpus / "content").iterdir()), settings,
                                     on_step=lambda i, loss: losses.append(loss))
    before, after = provenance["support_loss_before"], provenance["support_loss_after"]
    assert before == pytest.approx((losses[0] + losses[1]) / 2, rel=1e-5)
    assert after == pytest.approx(before, rel=1e-6) and losses[2] != losses[0]


def test_zero_shot_stylize_from_the_command_line(stylenet_base, tiny_corpus, tmp_path):
    photo = tiny_corpus / "content" / "content0.png"
    result = _ok(runner.invoke(app, ["stylize", "--style", str(tiny_corpus / "style/style1.png"),
                                     "--base", str(stylenet_base), str(photo), "-o",
                                     str(tmp_path / "out")]))
    written = list((tmp_path / "out").glob("*.jpg"))
    assert len(written) == 1 and Image.open(written[0]).size == (48, 40)
    assert "style1" in result.stdout


def test_zero_shot_needs_an_encoder_decoder_model(base_model, tiny_corpus):
    with pytest.raises(UserError, match="encoder-decoder"):
        zero_shot(tiny_corpus / "style/style1.png", base_model)
    result = runner.invoke(app, ["stylize", str(base_model)])
    assert result.exit_code == 2 and "at least one photo" in result.stderr


def test_strength_blends_features_zero_is_the_reconstruction(stylenet_base, tiny_corpus):
    stylizer = zero_shot(tiny_corpus / "style/style1.png", stylenet_base)
    photo = torch.rand(1, 3, 24, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        # without the photo's fine detail added back, which is not part of the style
        none, half, full = (stylizer.generator(s, detail=0.0)(photo) for s in (0.0, 0.5, 1.0))
        assert torch.allclose(none, stylizer.model.reconstruct(photo), atol=1e-6)
    assert not torch.allclose(half, full) and not torch.allclose(half, none)
    assert stylizer.model.strength == 1.0  # the blend is a copy


def test_a_model_files_strength_is_its_default_everywhere(stylenet_base, tiny_corpus,
                                                          tmp_path):
    """export-init records the strength; stylize, zero-shot, adapt and adapted files keep it,
    an explicit strength overrides it, and a bad one in a file is refused by name."""
    (tmp_path / "ae-run").rename(tmp_path / "run")
    base = tmp_path / "base09.safetensors"
    _ok(runner.invoke(app, ["export-init", str(tmp_path / "run"), "-o", str(base),
                            "--strength", "0.9"]))
    assert checkpoint.read(base)[1]["strength"] == 0.9
    style = tiny_corpus / "style/style1.png"
    stylizer = zero_shot(style, base)
    photo = torch.rand(1, 3, 24, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        default, full = stylizer.generator()(photo), stylizer.generator(1.0)(photo)
        assert torch.equal(default, stylizer.generator(0.9)(photo))
        assert torch.equal(full, zero_shot(style, stylenet_base).generator()(photo))
    assert not torch.allclose(default, full)
    adapted = tmp_path / "a.safetensors"
    _ok(runner.invoke(app, ["adapt", str(style), "--base", str(base), "--content",
                            str(tiny_corpus / "content"), "-k", "1", "-o", str(adapted),
                            "--no-progress"]))
    assert checkpoint.read(adapted)[1]["strength"] == 0.9
    assert load_stylizer(adapted).model.strength == 0.9
    tensors, meta = checkpoint.read(base)
    bad = tmp_path / "bad.safetensors"
    checkpoint.write(bad, tensors, {**meta, "strength": 1.5})
    result = runner.invoke(app, ["stylize", "--style", str(style), "--base", str(bad),
                                 str(tiny_corpus / "content/content0.png")])
    assert result.exit_code == 2
    assert "bad.safetensors: bad metadata: strength is 1.5" in result.stderr


def test_palette_moves_the_colours_to_the_paintings_and_is_a_user_option(
        stylenet_base, base_model, tiny_corpus, tmp_path):
    style = tiny_corpus / "style/style1.png"
    stylizer = zero_shot(style, stylenet_base)
    photo = torch.rand(1, 3, 24, 32, generator=torch.Generator().manual_seed(3))
    painting = palette_of(pil_to_tensor(Image.open(style).convert("RGB")))[0]
    with torch.no_grad():
        outputs = [stylizer.generator(palette=p, detail=0.0)(photo) for p in (0.0, 0.5, 1.0)]
    distances = [(palette_of(o)[0] - painting).norm().item() for o in outputs]
    assert distances[2] < distances[1] < distances[0]
    assert torch.equal(outputs[0], stylizer.model.stylize(photo, stylizer.model.code.as_dict()))
    with pytest.raises(UserError, match="only encoder-decoder"):
        load_stylizer(base_model).generator(palette=0.5)
    _check_cli_option("--palette", style, stylenet_base, base_model, tiny_corpus, tmp_path)


def _check_cli_option(option, style, stylenet_base, base_model, tiny_corpus, tmp_path):
    """``stylize --style``'s ``option`` at 0 and 1 writes different images; out of range, or
    for a Johnson model, it gets one line and exit code 2, and nothing is written."""
    photo_path = tiny_corpus / "content" / "content0.png"
    cli = ["stylize", "--style", str(style), "--base", str(stylenet_base), str(photo_path)]
    for value in ("0", "1"):
        _ok(runner.invoke(app, [*cli, option, value, "-o", str(tmp_path / value)]))
    zero, one = (next((tmp_path / v).glob("*.jpg")).read_bytes() for v in ("0", "1"))
    assert zero != one
    result = runner.invoke(app, [*cli, option, "2"])
    assert result.exit_code == 2 and option in result.stderr and result.stderr.count("\n") == 1
    result = runner.invoke(app, ["stylize", str(base_model), str(photo_path), option, "1"])
    assert result.exit_code == 2 and "only encoder-decoder" in result.stderr
    assert result.stderr.count("\n") == 1 and not list(tiny_corpus.glob("content/*.jpg"))


def test_detail_adds_the_photos_fine_detail_and_is_a_user_option(stylenet_base, base_model,
                                                                 tiny_corpus, tmp_path):
    style = tiny_corpus / "style/style1.png"
    stylizer = zero_shot(style, stylenet_base)
    photo = 0.25 + 0.5 * torch.rand(1, 3, 24, 32, generator=torch.Generator().manual_seed(4))
    assert stylizer.generator().detail_strength == DETAIL and f"model's, {DETAIL:g})" in DETAIL_HELP
    with torch.no_grad():
        plain, detailed = (stylizer.generator(detail=d)(photo) for d in (0.0, 0.5))
    assert 0 < plain.min() and plain.max() < 1
    assert torch.allclose(detailed - plain, 0.5 * fine_detail(photo, DETAIL_SIGMA).expand(
        -1, 3, -1, -1), atol=1e-6)
    with pytest.raises(UserError, match="detail 2: must be"):
        stylizer.generator(detail=2)
    with pytest.raises(UserError, match="detail: only encoder-decoder"):
        load_stylizer(base_model).generator(detail=0.5)
    _check_cli_option("--detail", style, stylenet_base, base_model, tiny_corpus, tmp_path)
    result = runner.invoke(app, ["export", str(stylenet_base), "--format", "onnx", "-o",
                                 str(tmp_path / "x.onnx"), "--detail", "2"])
    assert result.exit_code == 2 and "--detail" in result.stderr
    assert result.stderr.count("\n") == 1 and not (tmp_path / "x.onnx").exists()


def test_a_file_from_before_the_palette_keeps_the_decoders_colours(stylenet_base, tiny_corpus,
                                                                   tmp_path):
    tensors, meta = checkpoint.read(stylenet_base)
    old = tmp_path / "old.safetensors"
    checkpoint.write(old, {k: v for k, v in tensors.items() if not k.startswith("palette.")},
                     meta)
    model = load_stylizer(old).model
    assert model.palette.active == 0
    photo = torch.rand(1, 3, 24, 32)
    with torch.no_grad():
        assert torch.equal(model.with_detail(0.0)(photo),
                           model.stylize(photo, model.code.as_dict()))


def test_a_model_for_other_encoder_weights_is_refused(stylenet_base, tmp_path):
    tensors, meta = checkpoint.read(stylenet_base)
    meta["encoder_sha256"] = "0" * 64
    bad = tmp_path / "bad.safetensors"
    checkpoint.write(bad, tensors, meta)
    with pytest.raises(UserError, match="other random weights"):
        load_stylizer(bad)


def test_onnx_export_holds_encoder_and_decoder_with_the_code_baked_in(stylenet_base, tiny_corpus,
                                                                     tmp_path):
    pytest.importorskip("onnxruntime")
    import numpy as np
    import onnxruntime as ort

    from metastyle.export import export_generator

    model = zero_shot(tiny_corpus / "style/style1.png", stylenet_base).model
    path = tmp_path / "s.onnx"
    export_generator(model, path, "onnx")
    photo = torch.rand(1, 3, 40, 56, generator=torch.Generator().manual_seed(2))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {session.get_inputs()[0].name: photo.numpy()})
    with torch.no_grad():
        want = model(photo).numpy()
    assert got.shape == want.shape and np.abs(got - want).max() < 1e-4


def test_export_init_sets_the_size_a_file_reads_styles_at(stylenet_base, tiny_corpus, tmp_path):
    from metastyle.images import load_tensor

    big = tmp_path / "big.safetensors"
    _ok(runner.invoke(app, ["export-init", str(stylenet_base.parent / "ae-run"), "-o", str(big),
                            "--style-size", "64"]))
    assert checkpoint.file_style_size(checkpoint.read(big)[1]) == 64
    style = tiny_corpus / "style" / "style0.png"
    model = zero_shot(style, big).model
    want = model.style_code_of(load_tensor(style, 64))
    got = model.code.as_dict()
    assert all(torch.allclose(got[n][0], want[n][0]) for n in want)
    default = zero_shot(style, stylenet_base).model.code.as_dict()  # read at the run's 32 px
    assert not all(torch.allclose(got[n][1], default[n][1]) for n in got)
    bad = runner.invoke(app, ["export-init", str(stylenet_base.parent / "ae-run"), "-o",
                              str(tmp_path / "bad.safetensors"), "--style-size", "8"])
    assert bad.exit_code == 2 and "--style-size" in bad.stderr
    assert not (tmp_path / "bad.safetensors").exists()
