"""The Johnson et al. (2016) transformation network, sized by a small config.

Parameters are named so subsets are easy to pick for the inner loop: every instance-norm affine
parameter lives in a module called ``norm``; the upsampling half is under ``decoder``. Plain
``nn.Module`` code, so ``torch.func.functional_call`` can run it with fast weights.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

ADAPT_SUBSETS = ("norm", "affines", "decoder", "all")


@dataclass(frozen=True)
class GeneratorConfig:
    """``width`` = channels of the first conv (Johnson: 32 -> 1.68M params with 5 res blocks)."""

    width: int = 16
    res_blocks: int = 3

    def to_dict(self) -> dict:
        return asdict(self)


class ConvNormAct(nn.Module):
    """Reflection pad -> conv -> instance norm (affine) -> optional ReLU."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, act: bool = True):
        super().__init__()
        self.pad = nn.ReflectionPad2d(kernel // 2)
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride)
        self.norm = nn.InstanceNorm2d(c_out, affine=True)
        self.act = nn.ReLU() if act else nn.Identity()

    def forward(self, x):
        return self.act(self.norm(self.conv(self.pad(x))))


class ResidualBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.a = ConvNormAct(channels, channels, 3)
        self.b = ConvNormAct(channels, channels, 3, act=False)

    def forward(self, x):
        return x + self.b(self.a(x))


class Upsample(nn.Module):
    """Nearest 2x upsample then conv: avoids the checkerboard of transposed convs."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.block = ConvNormAct(c_in, c_out, 3)

    def forward(self, x):
        return self.block(nn.functional.interpolate(x, scale_factor=2, mode="nearest"))


class Generator(nn.Module):
    """RGB [0,1] -> RGB [0,1]. Output goes through a sigmoid: an unbounded output lets SGD on the
    perceptual loss push pixels far outside [0, 1], and the inner loop diverges."""

    def __init__(self, config: GeneratorConfig = GeneratorConfig()):
        super().__init__()
        self.config = config
        w = config.width
        self.encoder = nn.Sequential(ConvNormAct(3, w, 9), ConvNormAct(w, 2 * w, 3, 2),
                                     ConvNormAct(2 * w, 4 * w, 3, 2))
        self.residual = nn.Sequential(*[ResidualBlock(4 * w) for _ in range(config.res_blocks)])
        self.decoder = nn.Sequential(Upsample(4 * w, 2 * w), Upsample(2 * w, w),
                                     nn.ReflectionPad2d(4), nn.Conv2d(w, 3, 9))

    def style_values(self, style: torch.Tensor) -> dict[str, torch.Tensor]:
        """Values a style sets before adaptation: none, every task starts at the init."""
        return {}

    def style_parameter_names(self) -> list[str]:
        """Parameters a style sets, which a style file stores whatever adaptation changed:
        none."""
        return []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        # Two stride-2 convs: work on a multiple of 4. Padding unconditionally (by 0 when the
        # size already is one) keeps size-dependent branches out of the graph, so a traced or
        # ONNX-exported generator is right at every size, not only the one it was traced at.
        x = nn.functional.pad(x, (0, (-w) % 4, 0, (-h) % 4), mode="reflect")
        y = torch.sigmoid(self.decoder(self.residual(self.encoder(x))))
        return y[..., :h, :w]


def adapt_parameter_names(model: nn.Module, subset: str) -> list[str]:
    """Names of the parameters the inner loop may change for a subset of ``ADAPT_SUBSETS``.

    ``decoder`` = all norm affines plus every decoder parameter: the middle ground between
    MetaStyle's norm-only and full fine-tuning. The encoder-decoder generator's style code
    (``code.*``, stylenet.py) belongs to every subset but ``affines``: it is the style itself.
    ``affines`` = the norm affines alone: the code stays the painting's own statistics, so
    steps only change how the decoder paints them (the Johnson network has no code: there it
    is ``norm``). A distilled model's student encoder (``student.*``) belongs to none: it stands
    for the frozen encoder, which no subset changes either.
    """
    names = [n for n, _ in model.named_parameters() if not n.startswith("student.")]
    if subset == "all":
        return names
    if subset == "norm":
        return [n for n in names if ".norm." in n or n.startswith("code.")]
    if subset == "affines":
        return [n for n in names if ".norm." in n]
    if subset == "decoder":
        return [n for n in names if ".norm." in n or n.startswith(("decoder.", "code."))]
    raise ValueError(f"unknown adaptation subset {subset!r}; choose one of {ADAPT_SUBSETS}")


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
