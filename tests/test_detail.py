"""The photo's fine luminance detail (metastyle.detail): luma less its Gaussian blur."""

import torch
from torch import nn

from metastyle.detail import blur_radius, fine_detail
from metastyle.limits import MIN_IMAGE_SIDE, TILE_OVERLAP
from metastyle.stylenet import DETAIL_SIGMA


def _reference(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """Luma less its blur, computed another way: the BT.601 weights written out and one 2-D
    kernel, a float64 Gaussian of the distance from its centre."""
    luma = 0.299 * image[:, :1] + 0.587 * image[:, 1:2] + 0.114 * image[:, 2:]
    radius = int(3 * sigma)
    d = torch.arange(-radius, radius + 1, dtype=torch.float64)
    yy, xx = torch.meshgrid(d, d, indexing="ij")
    kernel = torch.exp(-(yy ** 2 + xx ** 2) / (2 * sigma ** 2))
    kernel = (kernel / kernel.sum()).to(image.dtype)[None, None]
    padded = nn.ReflectionPad2d(radius)(luma)
    return luma - nn.functional.conv2d(padded, kernel)


def test_a_flat_image_has_no_detail_up_to_its_edges():
    """Reflected edges: zero padding would darken the blur there, a bright frame of detail."""
    flat = torch.full((2, 3, 20, 24), 0.3) * torch.tensor([1.0, 2.0, 3.0])[:, None, None]
    assert fine_detail(flat, DETAIL_SIGMA).abs().max() < 1e-6


def test_detail_is_luma_less_its_blur_and_averages_zero():
    image = torch.rand(2, 3, 40, 56, generator=torch.Generator().manual_seed(0))
    detail = fine_detail(image, DETAIL_SIGMA)
    assert detail.shape == (2, 1, 40, 56)
    assert torch.allclose(detail, _reference(image, DETAIL_SIGMA), atol=1e-6)
    # the blur keeps the mean up to the reflected edges; noise's detail spreads about 0.19
    assert detail.mean((2, 3)).abs().max() < 2e-3 and detail.std() > 0.1


def test_the_blur_fits_the_smallest_image_and_the_tiles_discarded_edges():
    """The blur reflects ``radius`` pixels, which needs an image side above it; tiles get the
    single pass's detail where the blend weighs them (inference._tile_weight drops the outer
    quarter of every overlap)."""
    radius = blur_radius(DETAIL_SIGMA)
    assert radius < MIN_IMAGE_SIDE and radius <= TILE_OVERLAP // 4
    smallest = torch.rand(1, 3, MIN_IMAGE_SIDE, MIN_IMAGE_SIDE)
    assert fine_detail(smallest, DETAIL_SIGMA).shape == (1, 1, MIN_IMAGE_SIDE, MIN_IMAGE_SIDE)
