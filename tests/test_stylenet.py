"""The encoder-decoder generator: AdaIN statistics, shapes, the shared encoder, parameter names."""

import copy

import pytest
import torch
from torch import nn

from metastyle import stylenet
from metastyle.colour import palette_of
from metastyle.detail import fine_detail
from metastyle.encoders import load_encoder
from metastyle.generator import adapt_parameter_names
from metastyle.limits import MIN_IMAGE_SIDE
from metastyle.stylenet import DETAIL_SIGMA, StyleNet, StyleNetConfig, adain, channel_stats


@pytest.fixture(scope="module")
def encoder():
    return load_encoder("random", seed=0)


def test_adain_gives_features_the_target_statistics():
    gen = torch.Generator().manual_seed(0)
    features = torch.randn(2, 5, 6, 7, generator=gen) * 3 + 1
    mean, std = torch.rand(5, generator=gen), torch.rand(5, generator=gen) + 0.5
    got_mean, got_std = channel_stats(adain(features, mean, std))
    assert torch.allclose(got_mean, mean.expand(2, 5), atol=1e-5)
    assert torch.allclose(got_std, std.expand(2, 5), atol=1e-3)


@pytest.mark.parametrize("depth, skips", [("relu3_1", []), ("relu4_1", ["relu3_1"]),
                                          ("relu4_1", ["relu3_1", "relu1_1"])])
def test_any_size_in_same_size_out_in_range(encoder, depth, skips):
    model = StyleNet(StyleNetConfig(depth=depth, skips=skips, width=8), encoder)
    model.set_style(torch.rand(1, 3, 24, 32))
    for h, w in ((16, 16), (19, 27)):
        x = torch.rand(1, 3, h, w)
        for y in (model(x), model.reconstruct(x)):
            assert y.shape == x.shape
            assert 0 <= y.min() and y.max() <= 1


def test_the_style_code_changes_the_output(encoder):
    model = StyleNet(StyleNetConfig(width=8), encoder)
    x = torch.rand(1, 3, 24, 24)
    model.set_style(torch.rand(1, 3, 24, 24))
    a = model(x)
    model.set_style(torch.rand(1, 3, 24, 24) * 0.2)
    assert not torch.allclose(a, model(x))


def test_encoder_is_shared_and_never_in_the_weights(encoder):
    model = StyleNet(StyleNetConfig(width=8), encoder)
    clone = copy.deepcopy(model)
    assert clone.encoder is model.encoder
    assert all(n.startswith(("decoder.", "code.", "palette.")) for n in model.state_dict())
    assert clone.code.mean["relu4_1"] is not model.code.mean["relu4_1"]


def test_a_skip_must_be_shallower_than_the_depth(encoder):
    with pytest.raises(ValueError, match="shallower"):
        StyleNet(StyleNetConfig(depth="relu3_1", skips=["relu4_1"]), encoder)


def test_the_code_holds_every_transformed_layer(encoder):
    model = StyleNet(StyleNetConfig(width=8), encoder)
    model.set_style(torch.rand(1, 3, 32, 32))
    features = model.encode(torch.rand(1, 3, 32, 32))
    for name, (mean, std) in model.code.as_dict().items():
        assert mean.shape == std.shape == (features[name].shape[1],)
        assert (std > 0).all()
    assert set(model.code.as_dict()) == {"relu4_1", "relu3_1"}


def test_norm_subset_is_the_affines_and_the_code(encoder):
    model = StyleNet(StyleNetConfig(width=8), encoder)
    names = adapt_parameter_names(model, "norm")
    assert names and all(".norm." in n or n.startswith("code.") for n in names)
    assert {"code.mean.relu4_1", "code.std.relu3_1"} <= set(names)
    assert not any(n.endswith("conv.weight") for n in names)


def test_each_meta_episode_starts_from_its_style_code(encoder, random_loss):
    from metastyle.corpus import Episode
    from metastyle.generator import adapt_parameter_names
    from metastyle.meta import InnerLoop, MetaLearner, meta_loss

    torch.manual_seed(0)
    model = StyleNet(StyleNetConfig(width=8), encoder)
    learner = MetaLearner(model, adapt_parameter_names(model, "norm"), 0.01, meta_sgd=True)
    gen = torch.Generator().manual_seed(0)
    style = torch.rand(1, 3, 32, 32, generator=gen)
    ep = Episode("s.png", style, torch.rand(2, 3, 16, 16, generator=gen),
                 torch.rand(2, 3, 16, 16, generator=gen))
    loss, stats = meta_loss(learner, random_loss, [ep], InnerLoop(1, "adam"), anchor=1.0)
    zero_shot = copy.deepcopy(model)
    zero_shot.set_style(style)
    with torch.no_grad():
        want = random_loss(zero_shot(ep.query), ep.query, random_loss.style_targets(style))
    assert stats["query_before"] == pytest.approx(want["total"].item(), rel=1e-5)
    loss.backward()
    assert model.decoder.head.conv.weight.grad is not None  # the init learns
    assert model.code.mean["relu4_1"].grad is None  # the code comes from the task, not the init
    assert learner.log_rates["code/mean/relu4_1"].grad is not None  # its inner rate is learned


def test_the_reflected_margin_keeps_the_encoders_zero_padding_off_the_edges(encoder, monkeypatch):
    """A flat photo gives a flat output except where VGG's zero padding reaches (the decoder's
    own padding reflects); the margin moves that off the image, so the edges stay close to
    the centre."""
    model = StyleNet(StyleNetConfig(width=8), encoder)
    model.set_style(torch.rand(1, 3, 32, 32))
    flat = torch.full((1, 3, 48, 48), 0.5)

    def edge_deviation() -> float:
        with torch.no_grad():
            y = model(flat)
        return (y - y[..., 24:25, 24:25]).abs().amax().item()

    with_margin = edge_deviation()
    monkeypatch.setattr(stylenet, "BORDER", 0)
    assert with_margin < 0.5 * edge_deviation()


class BlockEncoder(nn.Module):
    """Each feature depends on its own block of pixels only (a mean and a fixed channel mix),
    so a tile on the feature grid has exactly the whole image's features wherever it reaches."""

    def __init__(self):
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.mix = {n: torch.randn(c, 3, generator=gen) for n, (c, _) in stylenet.LAYERS.items()}

    def forward(self, x, layers):
        return {n: torch.einsum("oc,bchw->bohw", self.mix[n],
                                nn.functional.avg_pool2d(x, 2 ** stylenet.LAYERS[n][1])).relu()
                for n in layers}


def test_tiles_gather_the_whole_images_statistics():
    """Tiles on the feature grid whose owned boxes partition the image add up to the single
    pass's statistics, the reflected margin included."""
    model = StyleNet(StyleNetConfig(width=8), BlockEncoder())
    img = torch.rand(1, 3, 96, 80, generator=torch.Generator().manual_seed(0))
    rows = [((0, 56), (0, 48)), ((40, 96), (48, 96))]
    cols = [((0, 48), (0, 40)), ((32, 80), (40, 80))]
    tiles = [((top, bottom, left, right), (o_top, o_bottom, o_left, o_right))
             for (top, bottom), (o_top, o_bottom) in rows
             for (left, right), (o_left, o_right) in cols]
    model.set_style(torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1)))
    tiled = model.for_tiles(img, tiles)
    got = tiled.content_stats
    with torch.no_grad():
        features = model.encode(model._padded(img))
        decoded = model.stylize(img, model.code.as_dict())
    assert set(got) == set(features)
    for name, f in features.items():
        mean, std = channel_stats(f)
        assert torch.allclose(got[name][0], mean, atol=1e-5)
        assert torch.allclose(got[name][1], std, atol=1e-5)
    # every tile's colours are mapped from the whole output's palette, estimated on the photo
    # shrunk to one tile
    assert torch.allclose(tiled.output_palette[0], palette_of(decoded)[0], atol=0.01)


def test_one_tile_with_its_own_statistics_is_the_single_pass(encoder):
    model = StyleNet(StyleNetConfig(width=8), encoder).at_strength(0.7)
    model.set_style(torch.rand(1, 3, 32, 32))
    img = torch.rand(1, 3, 40, 48)
    tiled = model.for_tiles(img, [((0, 40, 0, 48), (0, 40, 0, 48))])
    assert model.content_stats is None and tiled.strength == 0.7
    with torch.no_grad():
        assert torch.allclose(tiled(img), model(img), atol=1e-5)


def test_detail_adds_the_photos_fine_luminance_to_every_channel(encoder):
    model = StyleNet(StyleNetConfig(width=8), encoder).eval()
    model.set_style(torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0)))
    assert model.detail_strength == stylenet.DETAIL
    photo = 0.25 + 0.5 * torch.rand(1, 3, 24, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        plain = model.with_detail(0.0)(photo)
        # off, the output is the palette's, bit for bit
        assert torch.equal(plain, model.palette(model.stylize(photo, model.code.as_dict()),
                                                model.palette_strength))
        added = model.with_detail(0.3)(photo) - plain
    assert 0 < plain.min() and plain.max() < 1  # no clamping in the way
    want = 0.3 * fine_detail(photo, DETAIL_SIGMA)
    assert want.abs().max() > 0.01 and torch.allclose(added, want.expand_as(added), atol=1e-6)
    assert model.detail_strength == stylenet.DETAIL  # with_detail made copies
    # what adaptation and training optimize (train mode) is the decoder's output, without it
    with torch.no_grad():
        assert torch.equal(model.with_detail(0.3).train()(photo), plain)


def test_full_detail_stays_in_range_down_to_the_smallest_image(encoder):
    gen = torch.Generator().manual_seed(0)
    model = StyleNet(StyleNetConfig(width=8), encoder).eval()
    model.set_style(torch.rand(1, 3, 32, 32, generator=gen))
    for side in (MIN_IMAGE_SIDE, 40):
        # black and white pixels: a detail of about +-0.5, more than the output has room for
        photo = (torch.rand(1, 3, side, side, generator=gen) > 0.5).float()
        with torch.no_grad():
            unclamped = model.with_detail(0.0)(photo) + fine_detail(photo, DETAIL_SIGMA)
            out = model.with_detail(1.0)(photo)
        assert unclamped.min() < 0 and unclamped.max() > 1
        assert out.shape == photo.shape and 0 <= out.min() and out.max() <= 1
