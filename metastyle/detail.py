"""The photo's fine detail: its luminance less a Gaussian blur of it.

The encoder-decoder's decoder paints from features 4-8x coarser than the photo, so its output
loses the photo's detail below a fixed pixel scale: even its reconstruction of a photo (no style
at all) comes back with blurred textures and thin edges. Adding back the photo's own high
frequencies restores that structure. They are taken from the luminance only and added to
R, G and B alike, so they brighten and darken pixels without changing the painted colours, and
at a scale of a few pixels they lie below the brush marks the decoder paints, which stay.
"""

from __future__ import annotations

import torch
from torch import nn

from .colour import rgb_to_ycbcr


def blur_radius(sigma: float) -> int:
    """Pixels on each side of the Gaussian kernel: three standard deviations hold 99.7% of its
    weight. The blur reflects this many pixels at an image's edges, so it must stay below the
    smallest image side."""
    return int(3 * sigma)


def gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """``image`` (B, 1, H, W) blurred with a normalized Gaussian of ``sigma`` pixels, as a row
    pass then a column pass (the 2-D Gaussian is their product: 2k instead of k^2 taps).

    The image is reflected at its edges rather than zero-padded: zeros would darken the blur
    along the edges, and the detail (image - blur) would show a bright frame."""
    radius = blur_radius(sigma)
    offsets = torch.arange(-radius, radius + 1, dtype=image.dtype, device=image.device)
    weights = torch.exp(-0.5 * (offsets / sigma) ** 2)
    weights = weights / weights.sum()  # a flat image stays flat
    padded = nn.functional.pad(image, (radius, radius, radius, radius), mode="reflect")
    rows = nn.functional.conv2d(padded, weights.view(1, 1, 1, -1))
    return nn.functional.conv2d(rows, weights.view(1, 1, -1, 1))


def fine_detail(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """The fine luminance detail (B, 1, H, W) of an RGB ``image`` (B, 3, H, W) in [0, 1]: its
    BT.601 luma less that luma blurred at ``sigma`` pixels. It averages about zero, so adding it
    moves no region's brightness, only its texture."""
    luma = rgb_to_ycbcr(image)[:, :1]
    return luma - gaussian_blur(luma, sigma)
