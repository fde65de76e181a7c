"""Tests for metastyle.losses: Gram normalization, relative errors, TV, the perceptual loss."""

import pytest
import torch

from metastyle.config import LossConfig
from metastyle.losses import (PerceptualLoss, colour_error, colour_moments, gram,
                              relative_error, total_variation)


def test_gram_hand_computed():
    """Channels [1,2] and [3,4] on a 1x2 map: F F^T = [[5,11],[11,25]], divided by C*H*W = 4."""
    features = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 2, 1, 2)
    expected = torch.tensor([[[1.25, 2.75], [2.75, 6.25]]])
    assert torch.allclose(gram(features), expected)


def test_gram_is_per_sample_and_size_normalized():
    f = torch.randn(3, 4, 5, 6)
    g = gram(f)
    assert g.shape == (3, 4, 4)
    assert torch.allclose(g[1], gram(f[1:2])[0])
    # Tiling the map 2x2 keeps the normalized Gram unchanged (independent of image size).
    assert torch.allclose(gram(f.repeat(1, 1, 2, 2)), g, atol=1e-6)


def test_relative_error_zero_for_identical_and_one_for_double():
    t = torch.randn(2, 3, 4, 4)
    assert relative_error(t, t) == 0
    assert torch.isclose(relative_error(2 * t, t), torch.tensor(1.0))
    assert torch.isclose(relative_error(torch.zeros_like(t), t), torch.tensor(1.0))


def test_relative_error_is_scale_invariant():
    """Caffe-scale features are ~255x torchvision's; the loss value must not change with that."""
    a, b = torch.randn(2, 8, 5, 5), torch.randn(2, 8, 5, 5)
    assert torch.isclose(relative_error(a * 255, b * 255), relative_error(a, b), rtol=1e-5)
    assert not torch.isclose((a * 255 - b * 255).pow(2).mean(), (a - b).pow(2).mean())


def test_relative_error_averages_per_sample_ratios():
    """Sample 0 exact, sample 1 off by its own norm -> 0.5, whatever the samples' scales."""
    target = torch.stack([torch.full((3,), 1000.0), torch.full((3,), 0.001)])
    value = torch.stack([target[0], 2 * target[1]])
    assert torch.isclose(relative_error(value, target), torch.tensor(0.5))


def test_total_variation_constant_and_checkerboard():
    assert total_variation(torch.full((2, 3, 8, 8), 0.3)) == 0
    yy, xx = torch.meshgrid(torch.arange(8), torch.arange(8), indexing="ij")
    board = ((yy + xx) % 2).float().expand(1, 3, 8, 8)
    assert torch.isclose(total_variation(board), torch.tensor(2.0))  # dx mean 1 + dy mean 1
    stripes = (xx % 2).float().expand(1, 3, 8, 8)  # only horizontal neighbours differ
    assert torch.isclose(total_variation(stripes), torch.tensor(1.0))


# --- PerceptualLoss ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def images():
    gen = torch.Generator().manual_seed(0)
    content = torch.rand(2, 3, 32, 32, generator=gen)
    style = torch.rand(1, 3, 32, 32, generator=gen)
    output = torch.rand(2, 3, 32, 32, generator=gen)
    return content, style, output


def test_loss_terms_and_weighted_total(random_loss, images):
    content, style, output = images
    weights = LossConfig(content_weight=2.0, style_weight=3.0, tv_weight=0.5,
                         colour_weight=1.5)
    loss = PerceptualLoss(random_loss.encoder, weights)
    terms = loss(output, content, loss.style_targets(style))
    layers = weights.style_layers
    assert set(terms) == ({"content", "style", "tv", "colour", "total"}
                          | {f"style/{n}" for n in layers})
    for name, value in terms.items():
        assert value.dim() == 0 and torch.isfinite(value) and value > 0, name
    assert torch.isclose(terms["style"], sum(terms[f"style/{n}"] for n in layers) / len(layers))
    expected = (2.0 * terms["content"] + 3.0 * terms["style"] + 0.5 * terms["tv"]
                + 1.5 * terms["colour"])
    assert torch.isclose(terms["total"], expected)
    assert torch.isclose(terms["tv"], total_variation(output))


def test_precomputed_content_targets_give_the_same_loss(random_loss, images):
    content, style, output = images
    targets = random_loss.style_targets(style)
    direct = random_loss(output, content, targets)
    cached = random_loss(output, random_loss.content_targets(content), targets)
    for name in direct:
        assert torch.equal(direct[name], cached[name]), name


def test_content_term_zero_when_output_is_content(random_loss, images):
    content, style, output = images
    terms = random_loss(content, content, random_loss.style_targets(style))
    assert terms["content"] < 1e-10
    assert random_loss(output, content, random_loss.style_targets(style))["content"] > 1e-3


def test_style_term_zero_when_output_is_the_style_image(random_loss, images):
    content, style, _ = images
    terms = random_loss(style, content[:1], random_loss.style_targets(style))
    assert terms["style"] < 1e-10
    assert all(terms[f"style/{n}"] < 1e-10 for n in random_loss.config.style_layers)
    assert random_loss(content[:1], content[:1], random_loss.style_targets(style))["style"] > 1e-3


def test_gradients_reach_the_output(random_loss, images):
    content, style, output = images
    output = output.clone().requires_grad_(True)
    random_loss(output, content, random_loss.style_targets(style))["total"].backward()
    assert output.grad is not None and output.grad.abs().sum() > 0
    assert torch.isfinite(output.grad).all()
    assert not any(p.requires_grad for p in random_loss.encoder.parameters())


def test_colour_error_matches_a_hand_computation():
    flat = torch.tensor([0.2, 0.5, 0.9]).view(1, 3, 1, 1).expand(2, 3, 4, 4)  # std 0
    mean, std = torch.tensor([[0.1, 0.5, 0.3]]), torch.tensor([[0.2, 0.0, 0.1]])
    expected = ((0.1 ** 2 + 0.2 ** 2) + 0.0 + (0.6 ** 2 + 0.1 ** 2)) / 3
    assert torch.isclose(colour_error(flat, mean, std), torch.tensor(expected), atol=1e-4)
    image = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    assert colour_error(image, *colour_moments(image)) < 1e-12


def test_the_colour_term_pulls_a_bright_output_towards_a_dark_style(random_loss):
    dark = torch.full((1, 3, 16, 16), 0.1)
    noise = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    bright = (0.7 + 0.1 * noise).requires_grad_(True)
    loss = PerceptualLoss(random_loss.encoder, LossConfig(content_weight=0.0, style_weight=0.0,
                                                          tv_weight=0.0, colour_weight=1.0))
    loss(bright, bright.detach(), loss.style_targets(dark))["total"].backward()
    assert bright.grad.sum() > 0 and (bright.grad.mean((2, 3)) > 0).all()  # descent darkens


def test_the_moments_statistic_matches_channel_means_and_spreads(random_loss, images):
    """AdaIN's style loss: zero for the style image itself, positive for a photo; an unknown
    statistic is a one-line error."""
    from metastyle.errors import UserError

    content, style, _ = images
    loss = PerceptualLoss(random_loss.encoder, LossConfig(style_statistic="moments"))
    targets = loss.style_targets(style)
    assert loss(style, content[:1], targets)["style"].item() < 1e-6
    assert loss(content[:1], content[:1], targets)["style"].item() > 1e-3
    with pytest.raises(UserError, match="style_statistic 'histogram'"):
        PerceptualLoss(random_loss.encoder, LossConfig(style_statistic="histogram"))
