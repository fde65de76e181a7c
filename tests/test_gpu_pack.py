"""experiments/gpu_pack.py: the folder a GPU run carries must hold the same data and loss network."""

import csv
import importlib.util
from pathlib import Path

import torch
from PIL import Image
from safetensors.torch import save_file

from metastyle.encoders import VGG16_CFG, Encoder, load_encoder

SCRIPT = Path(__file__).resolve().parent.parent / "experiments" / "gpu_pack.py"


def load_script():
    spec = importlib.util.spec_from_file_location("gpu_pack", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_images_are_stored_at_the_resolution_the_recipe_reads(tmp_path):
    pack = load_script()
    src = tmp_path / "data"
    rows = [("styles/big.jpg", "style", "train", (900, 600)),
            ("content/wide.jpg", "content", "train", (1000, 500)),
            ("content/small.jpg", "content", "heldout", (150, 120))]
    for name, _, _, size in rows:
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", size, (200, 40, 90)).save(src / name)
    with open(src / "manifest.tsv", "w", newline="") as f:
        writer = csv.writer(f, delimiter="\t")
        writer.writerow(["file", "kind", "split", "title"])
        writer.writerows([(name, kind, split, "t") for name, kind, split, _ in rows])

    pack.pack_images(src / "manifest.tsv", tmp_path / "pack")

    out = tmp_path / "pack" / "data"
    assert Image.open(out / "styles/big.jpg").size == (pack.STYLE_SIDE, 128)
    assert Image.open(out / "content/wide.jpg").size == (2 * pack.PHOTO_SHORT, pack.PHOTO_SHORT)
    assert Image.open(out / "content/small.jpg").size == (150, 120)  # never upscaled
    assert (out / "manifest.tsv").read_text() == (src / "manifest.tsv").read_text()


def test_unpacked_encoder_gives_the_original_features_up_to_relu4_3(tmp_path, monkeypatch):
    pack = load_script()
    original = Encoder("vgg16-hed", VGG16_CFG, "caffe", "test")
    gen = torch.Generator().manual_seed(0)
    for param in original.features.parameters():
        param.copy_(torch.randn(param.shape, generator=gen) * 0.05)
    here, there = tmp_path / "here", tmp_path / "there"
    here.mkdir()
    save_file(original.features.state_dict(), str(here / "vgg16-hed.safetensors"))

    monkeypatch.setenv("METASTYLE_CACHE", str(here))
    pack.pack_encoder(tmp_path)
    monkeypatch.setenv("METASTYLE_CACHE", str(there))
    pack.unpack_encoder(tmp_path)
    rebuilt = load_encoder("vgg16-hed")

    image = torch.rand(1, 3, 64, 64, generator=gen)
    layers = ["relu1_2", "relu3_3", "relu4_3"]
    want, got = original(image, layers), rebuilt(image, layers)
    for name in layers:
        err = (got[name] - want[name]).norm() / want[name].norm()
        assert err < 5e-3, (name, err)
    conv5 = rebuilt.features[24].weight
    assert conv5.abs().sum() == 0  # dropped from the pack: the trunk never runs that deep
