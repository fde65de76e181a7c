"""The encoder-decoder generator: frozen VGG16 trunk -> style transform -> trainable decoder.

The frozen encoder is the image prior that a generator trained from scratch cannot learn on a CPU
budget. A photo's features at ``depth`` are re-normalized to a style's channel statistics (AdaIN,
Huang & Belongie 2017), so a new style is stylized in one forward pass (k = 0); adaptation then
refines the style code and the decoder's per-channel affines by gradient steps.

Parameter names follow the Johnson generator's convention so the same subsets work: every
per-channel affine lives in a module called ``norm``; the style code is ``code.mean`` /
``code.std``. The encoder is shared, never copied and never stored in a model file: it is not a
registered submodule, so ``state_dict()`` holds the decoder and the code only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from .encoders import Encoder

# Channels of the VGG16 activations a decoder can start from, and how many 2x upsamplings
# take them back to the input resolution.
DEPTHS = {"relu3_1": (256, 2), "relu4_1": (512, 3)}
STYLE_EPS = 1e-5


@dataclass(frozen=True)
class StyleNetConfig:
    """``width`` = channels of the decoder's first conv; each upsampling halves it."""

    depth: str = "relu4_1"
    width: int = 128

    def to_dict(self) -> dict:
        return {"kind": "stylenet", **asdict(self)}


def channel_stats(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image, per-channel mean and standard deviation, each (B, C)."""
    mean = features.mean((2, 3))
    std = features.var((2, 3), unbiased=False).add(STYLE_EPS).sqrt()
    return mean, std


def adain(features: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Give ``features`` (B,C,H,W) the channel statistics ``mean`` / ``std`` ((C,) or (B,C))."""
    own_mean, own_std = channel_stats(features)
    normalized = (features - own_mean[..., None, None]) / own_std[..., None, None]
    return normalized * std.view(-1, features.shape[1], 1, 1) + mean.view(-1, features.shape[1], 1, 1)


class Affine(nn.Module):
    """Per-channel scale and shift: the small set of decoder parameters adaptation changes."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x):
        return x * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


class ConvBlock(nn.Module):
    """Reflection pad -> 3x3 conv -> per-channel affine -> ReLU. No normalization layer: it
    would wash out the statistics the transform just set."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.pad = nn.ReflectionPad2d(1)
        self.conv = nn.Conv2d(c_in, c_out, 3)
        self.norm = Affine(c_out)
        self.act = nn.ReLU()

    def forward(self, x):
        return self.act(self.norm(self.conv(self.pad(x))))


class StyleCode(nn.Module):
    """The style's channel statistics at the encoder depth; adaptable like any parameter."""

    def __init__(self, channels: int):
        super().__init__()
        self.mean = nn.Parameter(torch.zeros(channels))
        self.std = nn.Parameter(torch.ones(channels))


def build_decoder(channels_in: int, upsamplings: int, width: int) -> nn.Sequential:
    """Mirror of the VGG trunk: nearest 2x upsample + convs, halving channels at each scale."""
    layers: list[nn.Module] = [ConvBlock(channels_in, width)]
    c = width
    for _ in range(upsamplings):
        layers += [nn.Upsample(scale_factor=2, mode="nearest"), ConvBlock(c, c),
                   ConvBlock(c, max(c // 2, 16))]
        c = max(c // 2, 16)
    layers += [nn.ReflectionPad2d(1), nn.Conv2d(c, 3, 3)]
    return nn.Sequential(*layers)


class StyleNet(nn.Module):
    """RGB [0,1] -> RGB [0,1] in the style held by ``code`` (set it with ``set_style``).

    ``forward(x)`` stylizes with the stored code; ``reconstruct(x)`` skips the transform (the
    autoencoder stage); ``stylize(x, mean, std)`` takes per-image codes (joint training).
    The output goes through a sigmoid: bounded outputs keep inner-loop SGD stable.
    """

    def __init__(self, config: StyleNetConfig, encoder: Encoder):
        super().__init__()
        if config.depth not in DEPTHS:
            raise ValueError(f"stylenet depth {config.depth!r}: choose one of {', '.join(DEPTHS)}")
        self.config = config
        channels, self.upsamplings = DEPTHS[config.depth]
        # Not a submodule: shared between copies, left out of state_dict and parameters().
        self.__dict__["encoder"] = encoder
        self.code = StyleCode(channels)
        self.decoder = build_decoder(channels, self.upsamplings, config.width)

    def __deepcopy__(self, memo):
        """Copies share the frozen encoder (59 MB) instead of duplicating it."""
        import copy

        clone = self.__class__.__new__(self.__class__)
        memo[id(self)] = clone
        memo[id(self.encoder)] = self.encoder
        for key, value in self.__dict__.items():
            clone.__dict__[key] = copy.deepcopy(value, memo)
        return clone

    def _apply(self, fn, recurse=True):
        self.encoder._apply(fn, recurse)
        return super()._apply(fn, recurse)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x, [self.config.depth])[self.config.depth]

    @torch.no_grad()
    def style_code_of(self, style: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The (C,) code of one style image (1,3,H,W)."""
        mean, std = channel_stats(self.encode(style))
        return mean[0], std[0]

    @torch.no_grad()
    def set_style(self, style: torch.Tensor) -> None:
        mean, std = self.style_code_of(style)
        self.code.mean.copy_(mean)
        self.code.std.copy_(std)

    def decode(self, features: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decoder(features))

    def _padded(self, x: torch.Tensor) -> torch.Tensor:
        # The trunk halves the size at each pool: work on a multiple of 2**upsamplings. Padding
        # unconditionally keeps size-dependent branches out of traced / exported graphs.
        m = 2 ** self.upsamplings
        h, w = x.shape[-2:]
        return nn.functional.pad(x, (0, (-w) % m, 0, (-h) % m), mode="reflect")

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        return self.decode(self.encode(self._padded(x)))[..., :h, :w]

    def stylize(self, x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        return self.decode(adain(self.encode(self._padded(x)), mean, std))[..., :h, :w]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stylize(x, self.code.mean, self.code.std)
