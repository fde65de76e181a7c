"""The exact inference fold of a student's lifts and AdaIN into the decoder's first convolutions.

A student (student.py) lifts its own ``c``-channel activation ``s`` to VGG's ``C`` channels with
a 1x1 convolution (weight W (C x c), bias b); AdaIN at strength ``a`` then maps the lifted
``L = W s + b`` to ``(1 - a) L + a (D (L - mu_L) + mean)``, with ``D = diag(std / sigma_L)``
from the style code (mean, std) and the lifted features' own channel statistics (mu_L,
sigma_L). Both steps are affine per pixel with per-image coefficients, so together they are one
affine map ``M s + v`` per image (`lifted_affine`). A per-pixel affine map commutes with
reflection padding, so the 3x3 convolution that reads the layer absorbs it exactly
(`folded_conv`): the decoder then reads the student's ``c`` channels instead of ``C`` and the
lifts never run. For the fast model (student width 0.25, decoder width 64) that cuts a 512 px
stylization from about 12.1 to about 8.6 GMAC, the fold's own statistics included.

Only inference folds (`StyleNet.stylize` says when): training keeps the lifts.
"""

from __future__ import annotations

import torch
from torch import nn


def lifted_stats(own: torch.Tensor, lift: nn.Conv2d,
                 eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image channel mean and std, each (B, C), of ``lift(own)`` without lifting: with the
    population mean mu_s and covariance Sigma_s of ``own`` (B, c, H, W), mu_L = W mu_s + b and
    sigma_L = sqrt(diag(W Sigma_s W^T) + eps), as `stylenet.channel_stats` of the lifted
    features (with ``eps`` its STYLE_EPS)."""
    weight = lift.weight.flatten(1)  # (C, c)
    flat = own.flatten(2)
    mean = flat.mean(2)  # (B, c)
    centred = flat - mean[..., None]
    cov = centred @ centred.transpose(1, 2) / flat.shape[2]  # (B, c, c)
    var = ((weight @ cov) * weight).sum(2)  # (B, C): diag(W Sigma W^T)
    return mean @ weight.T + lift.bias, var.add(eps).sqrt()


def lifted_affine(lift: nn.Conv2d, stats: tuple[torch.Tensor, torch.Tensor],
                  code: tuple[torch.Tensor, torch.Tensor],
                  strength: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(M, v)``, (B, C, c) and (B, C): per image, AdaIN at ``strength`` to ``code`` (mean,
    std; (C,) or (B, C)) of ``lift``'s output, normalized by ``stats`` (mu_L, sigma_L; (B, C)),
    is ``M s + v`` of the student's own ``s``. With A = (1 - a) I + a D:
    (1 - a) L + a (D (L - mu_L) + mean) = A (W s + b) + a (mean - D mu_L), so M = A W and
    v = A b + a (mean - D mu_L)."""
    mean_l, std_l = stats
    mean, std = code
    d = std / std_l
    diag = (1 - strength) + strength * d  # of A
    return (diag[..., None] * lift.weight.flatten(1),
            diag * lift.bias + strength * (mean - d * mean_l))


def folded_conv(conv: nn.Conv2d, m: torch.Tensor,
                v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image weight (B, O, I', kh, kw) and bias (B, O) of ``conv`` (weight K (O, I, kh, kw),
    bias k) for an input whose trailing C channels, ``M s + v`` per image, are replaced by the
    ``c`` channels of ``s`` (``m``: (B, C, c), ``v``: (B, C); I' = I - C + c): the trailing part
    of K becomes einsum(K, M), and k gains that part's taps times v. Exact with reflection (not
    zero) padding, which pads M s + v as M pad(s) + v."""
    batch, channels = v.shape
    kept, part = conv.weight[:, :-channels], conv.weight[:, -channels:]
    folded = torch.einsum("oCyx,bCc->bocyx", part, m)
    weight = torch.cat([kept.expand(batch, *kept.shape), folded], dim=2)
    return weight, conv.bias + torch.einsum("oCyx,bC->bo", part, v)


def per_image_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``x`` (B, I, H, W) convolved per image with its own ``weight`` (B, O, I, kh, kw) and
    ``bias`` (B, O), unpadded. One grouped convolution (the batch as groups), not a loop over
    images: at batch 1, the common case, both are the same single convolution (timed alike on
    the CPU, at the fast model's 512 px sizes), and at batch 2 the grouped one took about 0.6x
    the loop's time."""
    batch = x.shape[0]
    out = nn.functional.conv2d(x.reshape(1, -1, *x.shape[2:]), weight.flatten(0, 1),
                               bias.flatten(), groups=batch)
    return out.view(batch, -1, *out.shape[2:])
