"""With the real offline encoder, the shipped init and (when present) the shared data set."""

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from metastyle import checkpoint
from metastyle.baselines import gatys
from metastyle.cli import app
from metastyle.config import DataConfig
from metastyle.corpus import read_manifest
from metastyle.encoders import HED_WHEEL, cache_dir, load_encoder
from metastyle.images import load_tensor
from metastyle.losses import PerceptualLoss

REPO = Path(__file__).resolve().parents[1]
SHARED_MANIFEST = REPO / DataConfig().manifest

needs_hed = pytest.mark.skipif(not (cache_dir() / HED_WHEEL).exists(),
                               reason="vgg16-hed weights not fetched (run `metastyle fetch-weights`)")


@needs_hed
def test_gatys_with_vgg16_hed_cuts_the_style_loss(tmp_path):
    loss_fn = PerceptualLoss(load_encoder("vgg16-hed"))
    photo = load_tensor(REPO / "styles/ink_wash.png", 64)
    style = loss_fn.style_targets(load_tensor(REPO / "styles/mosaic.png", 64))
    before = loss_fn(photo, photo, style)
    image, losses = gatys(photo, style, loss_fn, steps=40)
    after = loss_fn(image, photo, style)
    assert after["style"] < 0.3 * before["style"]
    assert losses[-1] < 0.5 * losses[0]


@needs_hed
def test_adapt_the_shipped_init_with_defaults_then_stylize(tmp_path):
    runner = CliRunner()
    out = tmp_path / "mosaic.safetensors"
    # the shipped file's recommendation: two refine steps on the decoder's affines
    result = runner.invoke(app, ["adapt", str(REPO / "styles/mosaic.png"), "-o", str(out),
                                 "--no-progress"])
    assert result.exit_code == 0, result.stderr
    assert out.stat().st_size <= 16 * 1024
    _, meta = checkpoint.read(out)
    assert meta["kind"] == "delta" and meta["base_path"] == "shipped:stylenet.safetensors"
    assert meta["steps"] == 2 and meta["objective"] == "refine"
    assert meta["support_loss_after"] < meta["support_loss_before"]
    assert (tmp_path / "mosaic_preview.jpg").is_file()
    model, _ = checkpoint.load_generator(out)
    base, _ = checkpoint.load_generator(checkpoint.SHIPPED_INIT)
    x = torch.rand(1, 3, 32, 32)
    assert not torch.equal(model(x), base(x))  # the delta really changed the generator


@pytest.mark.skipif(not SHARED_MANIFEST.exists(), reason="../shared/data is not on this machine")
def test_shared_manifest_splits_are_disjoint():
    train = set(read_manifest(SHARED_MANIFEST, "style", "train"))
    heldout = set(read_manifest(SHARED_MANIFEST, "style", "heldout"))
    assert len(train) == 900 and len(heldout) == 60 and not train & heldout
