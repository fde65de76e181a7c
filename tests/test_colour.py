"""Palette transfer: matrix square roots by Newton-Schulz, and the Monge-Kantorovich colour map."""

import torch

from metastyle.colour import match_palette, palette_of, sqrt_and_inverse


def _spd(eigenvalues, seed=0):
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64, generator=gen))
    return q @ torch.diag(torch.tensor(eigenvalues, dtype=torch.float64)) @ q.T


def test_newton_schulz_square_root_matches_the_eigendecomposition_up_to_condition_1e4():
    for eigenvalues in ([0.1, 0.05, 0.02], [0.2, 1e-3, 2e-5]):
        a = _spd(eigenvalues)
        root, inverse = sqrt_and_inverse(a)
        values, vectors = torch.linalg.eigh(a)
        want = vectors @ torch.diag(values.sqrt()) @ vectors.T
        assert torch.allclose(root, want, atol=1e-9)
        assert torch.allclose(root @ inverse, torch.eye(3, dtype=a.dtype), atol=1e-8)


def test_full_strength_gives_the_palette_and_zero_strength_leaves_the_image():
    gen = torch.Generator().manual_seed(0)
    image = 0.3 + 0.2 * torch.rand(1, 3, 32, 32, generator=gen)  # mapped colours stay in gamut
    target = 0.2 + 0.5 * torch.rand(1, 3, 24, 24, generator=gen)
    mean, cov = palette_of(target)
    moved = match_palette(image, mean[0], cov[0], 1.0)
    got_mean, got_cov = palette_of(moved)
    # the covariance is off by the PALETTE_EPS regularization, scaled by the map
    assert torch.allclose(got_mean, mean, atol=1e-4) and torch.allclose(got_cov, cov, atol=1e-3)
    assert torch.equal(match_palette(image, mean[0], cov[0], 0.0), image)
    half = match_palette(image, mean[0], cov[0], 0.5)
    assert torch.allclose(half, (image + moved) / 2, atol=1e-6)


def test_the_map_keeps_the_order_of_colours_and_survives_a_flat_image():
    """The Monge-Kantorovich map is the gradient of a convex function: moving towards a
    palette never swaps which of two pixels is brighter along a channel of a diagonal map."""
    ramp = torch.linspace(0.2, 0.6, 64).view(1, 1, 1, 64).expand(1, 3, 8, 64).contiguous()
    mean, cov = torch.tensor([0.5, 0.4, 0.3]), torch.diag(torch.tensor([0.04, 0.01, 0.02]))
    moved = match_palette(ramp, mean, cov, 1.0)
    assert (moved[0, :, 0].diff(dim=-1) >= 0).all()
    flat = torch.full((1, 3, 8, 8), 0.4)
    assert match_palette(flat, mean, cov, 1.0).isfinite().all()


def test_gradients_flow_through_the_map():
    image = torch.rand(2, 3, 16, 16, requires_grad=True)
    mean, cov = palette_of(torch.rand(1, 3, 16, 16))
    match_palette(image * 0.5 + 0.25, mean[0], cov[0], 0.5).sum().backward()
    assert image.grad is not None and image.grad.isfinite().all() and image.grad.abs().sum() > 0
