"""The encoder-decoder generator through the product: adapt, zero-shot stylize, strength, export."""

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from metastyle import checkpoint
from metastyle.cli import app
from metastyle.errors import UserError
from metastyle.stylenet import StyleNet
from metastyle.stylizer import load_stylizer, zero_shot

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
    assert {"code.mean.relu4_1", "code.std.relu3_1"} <= set(tensors)
    assert out.stat().st_size < 16 * 1024
    adapted = load_stylizer(out).model
    k0 = zero_shot(style, stylenet_base).model
    assert isinstance(adapted, StyleNet)
    # the adapted code starts at the style's statistics and moved by at most K Adam steps
    moved = max((adapted.code.mean[n] - k0.code.mean[n]).abs().max() for n in k0.code.mean)
    assert 0 < moved <= 2 * 0.01 * 1.01


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
        none, half, full = (stylizer.generator(s)(photo) for s in (0.0, 0.5, 1.0))
        assert torch.allclose(none, stylizer.model.reconstruct(photo), atol=1e-6)
    assert not torch.allclose(half, full) and not torch.allclose(half, none)
    assert stylizer.model.strength == 1.0  # the blend is a copy


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
