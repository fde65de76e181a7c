"""Shared fixtures: tiny synthetic images, a tiny manifest corpus, the seeded random encoder,
a tiny base generator file."""

import os

os.environ.setdefault("WANDB_MODE", "disabled")

import numpy as np
import pytest
import torch
from PIL import Image

torch.set_num_threads(1)  # the suite shares 2 cores; spinning threads slow everything


def _noise_image(path, seed, size=(48, 40)):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (size[1] // 8 + 1, size[0] // 8 + 1, 3), dtype=np.uint8)
    img = Image.fromarray(base).resize(size, Image.BILINEAR)
    img.save(path)
    return path


def build_tiny_corpus(root):
    """A manifest with 4 train / 2 heldout styles and 6 train / 6 heldout photos (48x40 px)."""
    rows = ["file\tkind\tsplit"]
    for kind, n_train, n_held in (("style", 4, 2), ("content", 6, 6)):
        (root / kind).mkdir()
        for i in range(n_train + n_held):
            split = "train" if i < n_train else "heldout"
            name = f"{kind}/{kind}{i}.png"
            # a fixed seed per image: hash() of a str changes with every process
            _noise_image(root / name, seed=(0 if kind == "style" else 100) + i)
            rows.append(f"{name}\t{kind}\t{split}")
    (root / "manifest.tsv").write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture
def tiny_corpus(tmp_path):
    """The tiny corpus of `build_tiny_corpus` in the test's own folder."""
    return build_tiny_corpus(tmp_path)


@pytest.fixture
def photo(tmp_path):
    return _noise_image(tmp_path / "photo.png", seed=7, size=(40, 32))


@pytest.fixture(scope="session")
def random_loss():
    from metastyle.encoders import load_encoder
    from metastyle.losses import PerceptualLoss

    return PerceptualLoss(load_encoder("random", seed=0))


def tiny_config_overrides(corpus) -> list[str]:
    """A config small enough for a test: tiny generator, 16 px crops, random encoder, a random
    start (the shipped recipe's warm start is a full-size generator), a one-step inner loop
    without the anchor, style weight 5 (tests check totals against it, as in TINY_LOSS) and
    float32 (so a test can switch the precision)."""
    return [f'data.manifest="{corpus / "manifest.tsv"}"', "data.crop=16", "data.style_size=32",
            "data.eval_styles=1", "generator.width=4", "generator.res_blocks=1",
            'loss.encoder="random"', "loss.style_weight=5", 'loss.precision="float32"',
            'meta.init=""', "meta.inner_steps=1", "meta.anchor=0", "adapt.steps=2", "adapt.batch=1",
            "train.log_every=1", "train.eval_every=2", "train.sample_every=2",
            "train.checkpoint_every=2"]


TINY_LOSS = {"encoder": "random", "content_weight": 1.0, "style_weight": 5.0, "tv_weight": 0.1,
             "content_layers": ["relu2_2"], "style_layers": ["relu1_2", "relu2_2"]}


@pytest.fixture
def base_model(tmp_path):
    """A width-4 generator file set up like the shipped init, but with the random encoder."""
    from metastyle import checkpoint
    from metastyle.generator import Generator, GeneratorConfig

    torch.manual_seed(0)
    path = tmp_path / "base.safetensors"
    checkpoint.save_generator(path, Generator(GeneratorConfig(width=4, res_blocks=1)), {
        "loss": TINY_LOSS, "adapt_subset": "norm",
        "config": {"data": {"crop": 16, "style_size": 32}}})
    return path


@pytest.fixture
def stylenet_base(tiny_corpus, tmp_path):
    """An encoder-decoder generator file (random encoder, width 8) as `export-init` writes it
    from a two-step autoencoder run."""
    from metastyle.config import load_config
    from metastyle.stages import StageConfig, export_stage, train_stage

    config = load_config(None, [f'data.manifest="{tiny_corpus / "manifest.tsv"}"', "data.crop=16",
                                "data.style_size=32", "generator.width=8", 'loss.encoder="random"',
                                "batch=2", "train.steps=2", "lr=0.01"], root=StageConfig)
    train_stage(config, tmp_path / "ae-run", progress=False)
    path = tmp_path / "stylenet.safetensors"
    export_stage(tmp_path / "ae-run", path, {"steps": 2, "lr": 0.01})
    return path
