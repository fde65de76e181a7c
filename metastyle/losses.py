"""Perceptual losses: Gram-matrix style, feature content, total variation, colour moments.

Every feature term is *relative* (squared error divided by the target's squared norm), so the same
loss weights work for any encoder: HED's caffe-scale activations are ~255x larger than
torchvision-normalized ones, and raw 1e5-style weights would not transfer between them. The
colour term lives in pixel space, so it is encoder-independent as it stands.
"""

from __future__ import annotations

import torch
from torch import nn

from .config import LossConfig
from .encoders import Encoder, shared_encoder
from .errors import UserError
from .stylenet import channel_stats

_EPS = 1e-8


def gram(features: torch.Tensor) -> torch.Tensor:
    """Gram matrix normalized by C*H*W, shape (B, C, C)."""
    b, c, h, w = features.shape
    flat = features.reshape(b, c, h * w)
    return flat @ flat.transpose(1, 2) / (c * h * w)


def moments(features: torch.Tensor) -> torch.Tensor:
    """Per-channel means and standard deviations, concatenated, shape (B, 2C)."""
    return torch.cat(channel_stats(features), dim=1)


# A style image's statistic at each style layer, matched by the style term.
STYLE_STATISTICS = {"gram": gram, "moments": moments}


def relative_error(value: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample ||value - target||^2 / ||target||^2, averaged over the batch."""
    dims = tuple(range(1, value.dim()))
    err = (value - target).pow(2).sum(dims)
    norm = target.pow(2).sum(dims).clamp_min(_EPS)
    return (err / norm).mean()


def total_variation(images: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between neighbouring pixels (anisotropic TV)."""
    dx = (images[..., :, 1:] - images[..., :, :-1]).abs().mean()
    dy = (images[..., 1:, :] - images[..., :-1, :]).abs().mean()
    return dx + dy


def colour_moments(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image, per-channel mean and standard deviation of the RGB pixels, each (B, 3).

    The epsilon keeps the gradient finite on a flat image (d std / dx is 0/0 there)."""
    return images.mean((2, 3)), images.var((2, 3), unbiased=False).add(_EPS).sqrt()


def colour_error(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Squared error of the images' RGB means and spreads against targets (1, 3), in [0,1] units.

    Why: Gram terms barely steer global brightness and contrast (Risser et al. 2017 add histogram
    losses for the same reason). Without it, adapting to a dark painting leaves the photo bright
    and pastel, even though the Gram terms are lower for a dark output (experiments/LOG.md,
    2026-11-30, "a colour term for the painting's tone"). Absolute, not relative: a relative
    error would explode for a near-black style.
    """
    got_mean, got_std = colour_moments(images)
    return ((got_mean - mean).pow(2) + (got_std - std).pow(2)).mean()


class PerceptualLoss(nn.Module):
    """Johnson/Gatys loss over a frozen encoder; returns a dict of named terms plus ``total``.

    ``style`` is the mean of the per-layer terms (so adding a layer doesn't rescale it), then
    weighted; ``total = content_w * content + style_w * style + tv_w * tv + colour_w * colour``.
    ``config`` gives the weights and layers; its encoder and precision are what `perceptual_loss`
    builds ``encoder`` from.
    """

    def __init__(self, encoder: Encoder, config: LossConfig | None = None):
        super().__init__()
        self.encoder = encoder
        self.config = config if config is not None else LossConfig()
        if self.config.style_statistic not in STYLE_STATISTICS:
            raise UserError(f"loss style_statistic {self.config.style_statistic!r}: choose one "
                            f"of {', '.join(STYLE_STATISTICS)}")
        self.statistic = STYLE_STATISTICS[self.config.style_statistic]
        self.layers = tuple(dict.fromkeys([*self.config.content_layers,
                                           *self.config.style_layers]))

    @torch.no_grad()
    def style_targets(self, style: torch.Tensor) -> dict[str, torch.Tensor]:
        """Gram matrices (by layer name) and RGB moments (``rgb/mean``, ``rgb/std``) of one style
        image (1,3,H,W); computed once per style and reused."""
        feats = self.encoder(style, self.config.style_layers)
        mean, std = colour_moments(style)
        return ({name: self.statistic(f) for name, f in feats.items()}
                | {"rgb/mean": mean, "rgb/std": std})

    @torch.no_grad()
    def content_targets(self, content: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.encoder(content, self.config.content_layers)

    def forward(self, output: torch.Tensor, content: torch.Tensor | dict,
                style_targets: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``content`` is the photo batch or its precomputed ``content_targets``."""
        content_feats = content if isinstance(content, dict) else self.content_targets(content)
        feats = self.encoder(output, self.layers)
        w = self.config
        terms: dict[str, torch.Tensor] = {}
        content_loss = sum(relative_error(feats[n], content_feats[n]) for n in w.content_layers)
        terms["content"] = content_loss / len(w.content_layers)
        for name in w.style_layers:
            got = self.statistic(feats[name])
            target = style_targets[name].expand_as(got)
            terms[f"style/{name}"] = relative_error(got, target)
        terms["style"] = sum(terms[f"style/{n}"] for n in w.style_layers) / len(w.style_layers)
        terms["tv"] = total_variation(output)
        terms["colour"] = colour_error(output, style_targets["rgb/mean"], style_targets["rgb/std"])
        terms["total"] = (w.content_weight * terms["content"] + w.style_weight * terms["style"]
                          + w.tv_weight * terms["tv"] + w.colour_weight * terms["colour"])
        return terms


def perceptual_loss(config: LossConfig, seed: int = 0) -> PerceptualLoss:
    """The loss a config (or a model file's recorded loss) describes: encoder, precision,
    weights."""
    return PerceptualLoss(shared_encoder(config.encoder, seed, config.precision), config)
