"""Tests for metastyle.inference: tiled inference, output naming, and the file-level driver."""

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from metastyle.encoders import load_encoder
from metastyle.errors import UserError
from metastyle.generator import Generator, GeneratorConfig
from metastyle.inference import (
    collect_inputs,
    output_path,
    stylize_files,
    stylize_tensor,
)
from metastyle.stylenet import StyleNet, StyleNetConfig

torch.set_num_threads(1)  # the suite shares a small machine with training jobs


class LocalConv(nn.Module):
    """3x3 conv + sigmoid: every output pixel depends only on its neighbourhood, so a correctly
    blended tiling must reproduce the single pass exactly (up to float rounding)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1, padding_mode="reflect")

    def forward(self, x):
        return torch.sigmoid(self.conv(x))


class ShapeRecorder(nn.Module):
    """Wraps a model and records the spatial size of every input it is given; it hides the
    model's ``for_tiles``, so a wrapped encoder-decoder tiles with per-tile statistics."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.shapes = inner, []

    def forward(self, x):
        self.shapes.append(tuple(x.shape[-2:]))
        return self.inner(x)


def smooth_image(h, w, seed=0):
    """Gradients plus a ripple and a little noise: structure, but no edges of its own."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    img = torch.stack([xx, yy, 0.5 + 0.3 * torch.sin(10 * xx + 6 * yy)])[None]
    return (img + 0.05 * torch.rand(img.shape, generator=g)).clamp(0, 1)


def seam_ratio(out):
    """Largest mean |step| between adjacent rows or columns, over the median step.

    A seam is a row or column step well above the typical one; taking the max over every
    interior position (not only tile edges) also catches a seam inside a blend zone.
    """
    ratios = []
    for dim in (-1, -2):
        steps = out.diff(dim=dim).abs().movedim(dim, 0).flatten(1).mean(1)
        ratios.append((steps[1:-1].max() / steps.median()).item())
    return max(ratios)


def write_image(path, w, h, seed=0):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
    return path


# --- stylize_tensor ------------------------------------------------------------------------


def test_tiled_equals_single_pass_for_a_local_model():
    torch.manual_seed(0)
    model = LocalConv()
    img = torch.rand(1, 3, 100, 150)
    with torch.inference_mode():
        whole = model(img)
    tiled = stylize_tensor(model, img, tile=48, overlap=16)
    assert tiled.shape == img.shape
    assert (tiled - whole).abs().max().item() < 1e-5


def test_small_image_is_one_pass_and_identical():
    torch.manual_seed(0)
    model = ShapeRecorder(LocalConv())
    img = torch.rand(1, 3, 40, 30)
    out = stylize_tensor(model, img, tile=48, overlap=16)
    assert model.shapes == [(40, 30)]
    with torch.inference_mode():
        assert torch.equal(out, model.inner(img))


def test_generator_tiling_has_no_visible_seams():
    torch.manual_seed(0)
    model = Generator(GeneratorConfig(width=4, res_blocks=1))
    img = smooth_image(130, 170)
    out = stylize_tensor(model, img, tile=64, overlap=24)
    assert out.shape == img.shape
    assert out.min() >= 0 and out.max() <= 1
    # Instance norm makes tiles disagree; without blending that shows as a step at every
    # boundary (the control proves the metric sees it), with blending the step is gone.
    assert seam_ratio(stylize_tensor(model, img, tile=64, overlap=0)) > 2
    assert seam_ratio(out) < 1.5


@pytest.mark.parametrize("detail", [0.0, 0.5])
def test_encoder_decoder_tiles_share_the_whole_images_statistics(detail):
    """A bright smooth sky over a dark textured ground: with per-tile AdaIN statistics each
    tile is stylized as a photo of its own, with the whole image's it matches the single pass
    up to the cross-faded tile edges; with the photo's detail added back too."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    model = StyleNet(StyleNetConfig(width=8), load_encoder("random", seed=0)).eval()
    model = model.with_detail(detail)
    model.set_style(torch.rand(1, 3, 32, 32, generator=gen))
    img = smooth_image(96, 80) * 0.2 + 0.7
    img[..., 48:, :] = 0.1 + 0.5 * torch.rand(1, 3, 48, 80, generator=gen)
    with torch.inference_mode():
        whole = model(img)
    shared = stylize_tensor(model, img, tile=48, overlap=16)
    per_tile = stylize_tensor(ShapeRecorder(model), img, tile=48, overlap=16)
    assert model.content_stats is None  # the tiles ran on a copy
    assert (shared - whole).abs().mean() < (per_tile - whole).abs().mean() / 3


def test_network_never_sees_more_than_one_tile():
    model = ShapeRecorder(LocalConv())
    out = stylize_tensor(model, torch.rand(1, 3, 300, 300), tile=64, overlap=16)
    assert out.shape == (1, 3, 300, 300)
    assert len(model.shapes) > 1
    assert all(h <= 64 and w <= 64 for h, w in model.shapes)


def test_bad_overlap_is_rejected():
    with pytest.raises(ValueError, match="overlap"):
        stylize_tensor(LocalConv(), torch.rand(1, 3, 100, 100), tile=32, overlap=32)


# --- naming and input collection -------------------------------------------------------------


def test_output_path_never_overwrites_an_input(tmp_path):
    x = write_image(tmp_path / "x.png", 20, 20)
    x_out = write_image(tmp_path / "x_stylized.jpg", 20, 20)
    assert output_path(x, None, "stylized") == x_out  # plain name when nothing is in the way
    taken = {x, x_out}
    target = output_path(x, None, "stylized", taken)
    assert target == tmp_path / "x_stylized_1.jpg"
    assert output_path(x, None, "stylized", taken | {target}) == tmp_path / "x_stylized_2.jpg"
    assert output_path(x, tmp_path / "out", "s") == tmp_path / "out" / "x_s.jpg"


def test_collect_inputs_expands_folders_and_dedupes(tmp_path):
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    a = write_image(folder / "a.jpg", 20, 20)
    b = write_image(folder / "sub" / "b.png", 20, 20)
    (folder / "notes.txt").write_text("not an image")
    c = write_image(tmp_path / "c.jpg", 20, 20)
    assert collect_inputs([folder, c, a]) == [a, b, c]


def test_collect_inputs_errors_name_the_path(tmp_path):
    missing = tmp_path / "nope.jpg"
    with pytest.raises(UserError, match="nope.jpg"):
        collect_inputs([missing])
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no images"):
        collect_inputs([tmp_path / "empty"])


# --- stylize_files -------------------------------------------------------------------------


def test_stylize_files_writes_jpegs_of_the_right_size(tmp_path):
    torch.manual_seed(0)
    big = write_image(tmp_path / "big.png", 120, 80, seed=1)
    small = write_image(tmp_path / "small.jpg", 40, 30, seed=2)
    out_dir = tmp_path / "out"
    written = stylize_files(LocalConv(), [big, small], out_dir=out_dir, max_size=60, tile=32,
                            overlap=8)
    assert written == [out_dir / "big_stylized.jpg", out_dir / "small_stylized.jpg"]
    sizes = []
    for path in written:
        with Image.open(path) as img:
            assert img.format == "JPEG" and img.mode == "RGB"
            sizes.append(img.size)
    assert sizes == [(60, 40), (40, 30)]  # downscaled to max_size, never upscaled
    assert sorted(p.name for p in out_dir.iterdir()) == ["big_stylized.jpg", "small_stylized.jpg"]


def test_stylize_files_beside_inputs_keeps_inputs_intact(tmp_path):
    write_image(tmp_path / "x.png", 24, 24, seed=3)
    x_out = write_image(tmp_path / "x_stylized.jpg", 24, 24, seed=4)
    before = x_out.read_bytes()
    written = stylize_files(LocalConv(), [tmp_path])
    assert written == [tmp_path / "x_stylized_1.jpg", tmp_path / "x_stylized_stylized.jpg"]
    assert x_out.read_bytes() == before


def test_stylize_files_validates_everything_before_writing(tmp_path):
    good = write_image(tmp_path / "good.jpg", 24, 24)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg at all")
    out_dir = tmp_path / "out"
    with pytest.raises(UserError, match="bad.jpg"):
        stylize_files(LocalConv(), [good, bad], out_dir=out_dir)
    with pytest.raises(UserError, match="tag"):
        stylize_files(LocalConv(), [good], out_dir=out_dir, tag="../escape")
    assert not out_dir.exists()
