"""Colour control: the photo's own colours, or the painting's palette.

Style transfer repaints a photo in the style image's palette, which users often do not want (a
portrait in a blue-and-orange mosaic). The luminance-only recipe of Gatys et al. (2016,
"Preserving colour in neural artistic style transfer") fixes that after the fact: take the
stylized image's luminance (where the strokes and textures live) and the photo's chroma.
YCbCr (BT.601, full range, as in JPEG) separates the two with a fixed linear map, so this is
exact, cheap and needs no extra network pass.
"""

from __future__ import annotations

import torch

# Rows: Y, Cb, Cr from R, G, B; Cb and Cr are then offset by 0.5 so everything is in [0, 1].
_RGB_TO_YCBCR = torch.tensor([[0.299, 0.587, 0.114],
                              [-0.168736, -0.331264, 0.5],
                              [0.5, -0.418688, -0.081312]])
_CHROMA_OFFSET = torch.tensor([0.0, 0.5, 0.5])


def rgb_to_ycbcr(image: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) RGB in [0, 1] -> Y, Cb, Cr channels in [0, 1]."""
    matrix = _RGB_TO_YCBCR.to(image)
    return torch.einsum("ij,bjhw->bihw", matrix, image) + _CHROMA_OFFSET.to(image)[:, None, None]


def ycbcr_to_rgb(image: torch.Tensor) -> torch.Tensor:
    """Inverse of `rgb_to_ycbcr` (not clamped: out-of-gamut colours stay visible to callers)."""
    matrix = torch.linalg.inv(_RGB_TO_YCBCR.double()).to(image)
    centred = image - _CHROMA_OFFSET.to(image)[:, None, None]
    return torch.einsum("ij,bjhw->bihw", matrix, centred)


def keep_photo_colour(stylized: torch.Tensor, photo: torch.Tensor) -> torch.Tensor:
    """Stylized luminance + the photo's chroma, clamped to [0, 1] RGB; same shape as the inputs."""
    if stylized.shape != photo.shape:
        raise ValueError(f"shapes differ: stylized {tuple(stylized.shape)}, "
                         f"photo {tuple(photo.shape)}")
    mixed = torch.cat([rgb_to_ycbcr(stylized)[:, :1], rgb_to_ycbcr(photo)[:, 1:]], dim=1)
    return ycbcr_to_rgb(mixed).clamp(0, 1)


# Palette transfer: the encoder-decoder's decoder paints every style in roughly the average
# palette of the paintings it was trained on (warm for a cool painting), because the features it
# decodes carry little colour. Moving the output's RGB distribution towards the style image's
# fixes that after the fact. Both are summarized as Gaussians (mean and covariance), and the
# linear map between them that moves colours least is the Monge-Kantorovich one (Pitie &
# Kokaram 2007): T = A^-1/2 (A^1/2 C A^1/2)^1/2 A^-1/2 for the output's covariance A and the
# style's C. The matrix square roots come from the coupled Newton-Schulz iteration: matmuls
# only, so the map differentiates (adaptation steps through it) and exports to ONNX.
PALETTE_EPS = 1e-4  # added to every covariance's diagonal: a flat image is not singular
SQRT_ITERATIONS = 30  # Newton-Schulz steps: converged for condition numbers up to ~1e4


def palette_of(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image, the RGB mean (B, 3) and covariance (B, 3, 3) over all pixels."""
    flat = image.flatten(2).double()
    mean = flat.mean(2)
    centred = flat - mean[..., None]
    cov = centred @ centred.transpose(1, 2) / flat.shape[2]
    return mean, cov + PALETTE_EPS * torch.eye(3, dtype=cov.dtype, device=cov.device)


def sqrt_and_inverse(matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The square root of symmetric positive definite (..., n, n) matrices, and its inverse."""
    norm = matrix.flatten(-2).norm(dim=-1)[..., None, None]
    eye = torch.eye(matrix.shape[-1], dtype=matrix.dtype, device=matrix.device)
    root, inverse = matrix / norm, eye.expand_as(matrix)  # scaled so the iteration converges
    for _ in range(SQRT_ITERATIONS):
        step = 0.5 * (3 * eye - inverse @ root)
        root, inverse = root @ step, step @ inverse
    return root * norm.sqrt(), inverse / norm.sqrt()


def match_palette(image: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor,
                  strength: torch.Tensor | float = 1.0,
                  source: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """``image`` (B, 3, H, W) moved ``strength`` of the way (0 = unchanged) to the palette
    ``mean`` (3,) / ``cov`` (3, 3), clamped to [0, 1]. ``source``: the (mean, cov) to map from
    instead of the image's own (tiles of one photo pass the whole photo's)."""
    own_mean, own_cov = palette_of(image) if source is None else source
    root, inverse = sqrt_and_inverse(own_cov)
    middle, _ = sqrt_and_inverse(root @ cov.double() @ root)
    transform = inverse @ middle @ inverse
    flat = image.flatten(2).double()
    mapped = transform @ (flat - own_mean[..., None]) + mean.double()[..., None]
    matched = mapped.to(image.dtype).reshape(image.shape).clamp(0, 1)
    return torch.lerp(image, matched, strength)
