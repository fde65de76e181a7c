"""The student encoder and a distilled model file through the product: the frozen encoder's
channels at a fraction of its work; the file holds the student, never the frozen encoder or the
teacher; zero-shot, stylize, adapt (under the frozen encoder's loss) and export work with it."""

from pathlib import Path

import pytest
import torch
from PIL import Image
from torch import nn
from typer.testing import CliRunner

from metastyle import adapt_file, checkpoint
from metastyle.cli import app
from metastyle.encoders import VGG16_CFG, Encoder, load_encoder
from metastyle.errors import UserError
from metastyle.images import load_tensor
from metastyle.config import Config, load_config
from metastyle.generator import ADAPT_SUBSETS, adapt_parameter_names
from metastyle.stages import CHECKPOINT, StageConfig, Teacher
from metastyle.train import build_model
from metastyle.student import StudentEncoder
from metastyle.stylenet import Affine, StyleNet, StyleNetConfig
from metastyle.stylizer import load_stylizer, zero_shot

runner = CliRunner()
LAYERS = {"relu3_1": 256, "relu4_1": 512}
RECIPE = Path(__file__).parents[1] / "experiments" / "stylenet" / "distill.toml"


def _ok(result):
    assert result.exit_code == 0, result.stderr + result.stdout
    return result


def _macs(module: nn.Module, run) -> int:
    """Multiply-adds of ``module``'s convolutions while ``run()`` runs."""
    total = 0

    def count(conv, _inputs, output):
        nonlocal total
        total += output.numel() * conv.weight[0].numel()

    hooks = [m.register_forward_hook(count) for m in module.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        run()
    for hook in hooks:
        hook.remove()
    return total


def test_the_student_gives_the_frozen_encoders_channels_at_a_fraction_of_its_work():
    encoder = load_encoder("random")
    student = StudentEncoder(encoder, 0.25, LAYERS)
    widths = [m.out_channels for m in student.features if isinstance(m, nn.Conv2d)]
    assert widths == [16, 16, 32, 32, 64, 64, 64, 128]  # VGG16 to relu4_1, a quarter as wide
    x = torch.rand(2, 3, 64, 48)
    got, want = student(x, list(LAYERS)), encoder(x, list(LAYERS))
    assert {n: f.shape for n, f in got.items()} == {n: f.shape for n, f in want.items()}
    assert _macs(student, lambda: student(x, list(LAYERS))) < _macs(
        encoder, lambda: encoder(x, list(LAYERS))) / 10
    trunk = encoder.features[:encoder.layer_names.index("relu4_1") + 1]
    assert sum(p.numel() for p in student.parameters()) < sum(
        p.numel() for p in trunk.parameters()) / 8
    with pytest.raises(ValueError, match="lifts only"):
        student(x, ["relu2_1"])
    narrow = StudentEncoder(encoder, 0.01, LAYERS)
    assert {m.out_channels for m in narrow.features if isinstance(m, nn.Conv2d)} == {8}


def test_the_student_reads_its_input_as_the_encoder_it_replaces():
    hed_like = Encoder("hed-like", VGG16_CFG[:10], "caffe", "test")
    student = StudentEncoder(hed_like, 0.25, LAYERS)
    x = torch.rand(1, 3, 8, 8)
    assert torch.equal(student.preprocess(x), hed_like.preprocess(x))
    # a constant of the encoder, not a weight of the generator: no file stores it
    model = StyleNet(StyleNetConfig(width=8, student_width=0.25), load_encoder("random"))
    assert not any("preprocess" in name for name in model.state_dict())


@pytest.fixture
def student_file(stylenet_base, tiny_corpus, tmp_path):
    """The distill recipe, shrunk, run for two steps from ``stylenet_base`` and exported."""
    sets = [f'data.manifest="{tiny_corpus / "manifest.tsv"}"', "data.crop=16",
            "data.style_size=32", "generator.width=8", 'loss.encoder="random"', "batch=2",
            "train.steps=2", f'teacher="{stylenet_base}"']
    _ok(runner.invoke(app, ["train-stage", str(RECIPE), "--run-dir", str(tmp_path / "distill"),
                            "--no-progress", *(a for s in sets for a in ("--set", s))]))
    path = tmp_path / "student.safetensors"
    _ok(runner.invoke(app, ["export-init", str(tmp_path / "distill"), "-o", str(path)]))
    return path


def test_a_distilled_file_holds_the_student_not_the_frozen_encoder_or_the_teacher(
        student_file, stylenet_base, tmp_path):
    state = checkpoint.read_training(tmp_path / "distill" / CHECKPOINT)
    tensors, meta = checkpoint.read(student_file)
    assert meta["generator"]["student_width"] == 0.25 and meta["trained_by"] == "stage distill"
    assert meta["teacher"] == state.meta["teacher"]
    assert meta["teacher"]["file"] == str(stylenet_base)
    # the frozen encoder the file was made for: adaptation's loss network
    assert meta["encoder"] == "random"
    model, _ = checkpoint.load_generator(student_file)
    # the run saved the student's weights and nothing of the teacher; the file holds them all
    assert set(state.model) == set(model.state_dict()) == set(tensors)
    assert len([k for k in tensors if k.startswith("student.")]) == 20  # 8 convs + 2 lifts
    assert all(k.startswith(("decoder.", "code.", "palette.", "student.")) for k in tensors)
    # loaded back, the file's float16 weights give exactly what the run's weights give in float16
    reference = StyleNet(StyleNetConfig(width=8, student_width=0.25), model.encoder).eval()
    reference.load_state_dict({k: v.half().float() for k, v in state.model.items()})
    style, photo = torch.rand(1, 3, 32, 24), torch.rand(1, 3, 40, 56)
    model.set_style(style)
    reference.set_style(style)
    with torch.no_grad():
        assert torch.equal(model(photo), reference(photo))


def test_no_adaptation_subset_nor_meta_training_moves_the_student(student_file, tmp_path):
    model, meta = checkpoint.load_generator(student_file)
    assert all(not n.startswith("student.") for subset in ADAPT_SUBSETS
               for n in adapt_parameter_names(model, subset))
    assert any(n.startswith("decoder.") for n in adapt_parameter_names(model, "all"))
    with pytest.raises(UserError, match="distilled model .* cannot be meta- or joint-trained"):
        build_model(Config(), student_file, meta)
    # nor does a distilled model teach another
    with pytest.raises(UserError, match="teacher must encode with the frozen encoder"):
        Teacher(student_file, model.encoder, load_config(None, [
            "generator.width=8", "generator.student_width=0.25", "data.style_size=32"],
            root=StageConfig))


def test_a_file_with_a_bad_student_width_is_refused_by_name(student_file, tmp_path):
    tensors, meta = checkpoint.read(student_file)
    bad = tmp_path / "bad.safetensors"
    checkpoint.write(bad, tensors, {**meta, "generator": {**meta["generator"],
                                                          "student_width": 1e9}})
    with pytest.raises(UserError, match="bad.safetensors: .*student_width"):
        checkpoint.load_generator(bad)


def test_a_student_file_stylizes_adapts_and_exports_as_any_encoder_decoder(
        student_file, tiny_corpus, tmp_path, monkeypatch):
    style, photo = tiny_corpus / "style/style1.png", tiny_corpus / "content/content0.png"
    _ok(runner.invoke(app, ["stylize", "--style", str(style), "--base", str(student_file),
                            str(photo), "-o", str(tmp_path / "out")]))
    (written,) = (tmp_path / "out").glob("*.jpg")
    assert Image.open(written).size == (48, 40)
    # zero-shot: the code is the student's own statistics of the painting
    model = zero_shot(style, student_file).model
    painting = load_tensor(style, 32)
    want = model.style_code_of(painting)
    assert all(torch.equal(model.code.mean[n], want[n][0]) for n in want)
    frozen = model.encoder(painting, list(want))
    assert not any(torch.allclose(want[n][0], frozen[n].mean((0, 2, 3))) for n in want)

    losses = []
    build_loss = adapt_file.perceptual_loss
    monkeypatch.setattr(adapt_file, "perceptual_loss",
                        lambda config: losses.append(build_loss(config)) or losses[-1])
    adapted = tmp_path / "adapted.safetensors"
    _ok(runner.invoke(app, ["adapt", str(style), "--base", str(student_file), "--content",
                            str(tiny_corpus / "content"), "-k", "1", "-o", str(adapted),
                            "--no-progress"]))
    # adaptation's loss network is the frozen encoder; the student only encodes
    (loss_fn,) = losses
    assert isinstance(loss_fn.encoder, Encoder) and loss_fn.encoder.name == "random"
    tensors, meta = checkpoint.read(adapted)
    assert meta["encoder"] == "random" and not any(k.startswith("student.") for k in tensors)
    assert load_stylizer(adapted).model.student is not None

    pytest.importorskip("onnxruntime")
    import onnxruntime as ort

    from metastyle.export import export_generator

    path = tmp_path / "s.onnx"
    export_generator(model, path, "onnx")
    image = torch.rand(1, 3, 40, 56, generator=torch.Generator().manual_seed(2))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {session.get_inputs()[0].name: image.numpy()})
    with torch.no_grad():
        assert (torch.from_numpy(got) - model(image)).abs().max() < 1e-4


def _random_student_model() -> StyleNet:
    """A student model whose lifts, decoder and style code are all random, none near identity:
    the fold has every term to get right."""
    torch.manual_seed(0)
    model = StyleNet(StyleNetConfig(width=16, student_width=0.25), load_encoder("random", seed=0))
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for module in [*model.student.lifts.values(), *model.decoder.modules()]:
            if isinstance(module, nn.Conv2d):
                fan_in = module.weight[0].numel()
                module.weight.copy_(torch.randn(module.weight.shape, generator=gen)
                                   * (3 / fan_in) ** 0.5)
                module.bias.copy_(torch.randn(module.bias.shape, generator=gen) * 0.1)
            elif isinstance(module, Affine):
                module.weight.copy_(torch.rand(module.weight.shape, generator=gen) + 0.5)
                module.bias.copy_(torch.randn(module.bias.shape, generator=gen) * 0.1)
        model.set_style(torch.rand(1, 3, 32, 24, generator=gen))
        for name in model.config.layers:
            model.code.mean[name].add_(torch.randn(model.code.mean[name].shape, generator=gen))
            model.code.std[name].mul_(torch.rand(model.code.std[name].shape, generator=gen) + 0.5)
    return model.eval()


def _folded_and_plain(model: StyleNet, run) -> tuple[torch.Tensor, torch.Tensor]:
    """``run()`` without gradients, which folds the lifts (and never runs them), and with."""
    calls = []
    hooks = [lift.register_forward_hook(lambda *_: calls.append(1))
             for lift in model.student.lifts.values()]
    with torch.no_grad():
        folded = run()
    assert not calls
    with torch.enable_grad():
        plain = run()
    assert calls
    for hook in hooks:
        hook.remove()
    return folded, plain.detach()


@pytest.mark.parametrize("strength", [1.0, 0.6])
def test_inference_folds_the_lifts_and_adain_into_the_decoder_exactly(strength):
    model = _random_student_model().at_strength(strength)
    gen = torch.Generator().manual_seed(2)
    photo = torch.rand(1, 3, 40, 56, generator=gen)
    folded, plain = _folded_and_plain(model, lambda: model(photo))
    assert (folded - plain).abs().max() < 1e-4
    assert plain.std() > 0.05  # not a flat image that any fold would match
    # a batch with a code per image
    photos = torch.rand(2, 3, 40, 56, generator=gen)
    codes = {n: (torch.randn(2, c, generator=gen), torch.rand(2, c, generator=gen) + 0.5)
             for n, c in LAYERS.items()}
    folded, plain = _folded_and_plain(model, lambda: model.stylize(photos, codes))
    assert (folded - plain).abs().max() < 1e-4
    alone = _folded_and_plain(model, lambda: model.stylize(
        photos[1:], {n: (m[1], s[1]) for n, (m, s) in codes.items()}))[0]
    assert (folded[1:] - alone).abs().max() < 1e-4


def test_tiles_fold_with_the_whole_photos_statistics_exactly():
    model = _random_student_model().at_strength(0.6)
    photo = torch.rand(1, 3, 40, 56, generator=torch.Generator().manual_seed(3))
    tiled = model.for_tiles(photo, [((0, 40, 0, 32), (0, 40, 0, 24)),
                                    ((0, 40, 24, 56), (0, 40, 24, 56))])
    assert tiled.content_stats and tiled.output_palette is not None
    tile = photo[..., 24:56]
    folded, plain = _folded_and_plain(tiled, lambda: tiled(tile))
    assert (folded - plain).abs().max() < 1e-4
    # the whole photo's statistics, not the tile's own
    assert (plain - model(tile).detach()).abs().max() > 1e-3


def test_training_keeps_the_lifts_and_their_gradients():
    model = _random_student_model().train()
    photos = torch.rand(2, 3, 24, 32, generator=torch.Generator().manual_seed(4))
    out, lifted = model.stylize_with_features(photos, model.code.as_dict())
    assert {n: f.shape[1] for n, f in lifted.items()} == LAYERS
    (out.mean() + sum(f.mean() for f in lifted.values())).backward()
    for lift in model.student.lifts.values():
        assert lift.weight.grad is not None and lift.weight.grad.abs().sum() > 0
    model.zero_grad()
    model(photos).mean().backward()
    assert all(lift.weight.grad.abs().sum() > 0 for lift in model.student.lifts.values())


def test_a_frozen_encoder_model_never_folds():
    model = StyleNet(StyleNetConfig(width=8), load_encoder("random", seed=0)).eval()
    model.set_style(torch.rand(1, 3, 24, 32))
    photo = torch.rand(1, 3, 40, 56)
    with torch.no_grad():
        without = model(photo)
    with torch.enable_grad():
        assert torch.equal(without, model(photo).detach())
