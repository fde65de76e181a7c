"""Colour preservation: the style's brushwork with the photo's own colours.

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
