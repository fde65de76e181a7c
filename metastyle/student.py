"""A small trainable encoder that stands in for the frozen VGG16 trunk of the encoder-decoder.

The frozen vgg16-hed trunk to relu4_1 is ~54 GMAC of a 512 px stylization, the decoder ~18: a
fast model needs its own, narrower trunk. The student keeps VGG16's layout (same convolutions,
poolings and layer names) at ``width`` times the channels, reads its input exactly as the encoder
it replaces does, and lifts each activation the generator reads to that encoder's channel count
with a 1x1 convolution: AdaIN, the style code's sizes and the decoder's input stay as they are
with the frozen encoder. The distill stage (stages.py) trains it, with a decoder, on a teacher
model's outputs; at inference the decoder absorbs the lifts (fold.py).

A student is part of its generator's weights, not a loss network: everything that judges an
image (training losses, adaptation, the judges) keeps using the frozen encoder.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from .encoders import VGG16_CFG, Encoder, trunk_activations, vgg_layer_names, vgg_trunk

# Fewest channels of any student convolution, so that a small ``width`` still leaves every layer
# a few features to pass on (at 0.25 every layer has more).
MIN_CHANNELS = 8


def student_cfg(width: float, deepest: str) -> list:
    """VGG16's trunk configuration up to the convolution of ``deepest``, every convolution at
    ``width`` times its channels (at least `MIN_CHANNELS`)."""
    end = next(end for end in range(1, len(VGG16_CFG) + 1)
               if deepest in vgg_layer_names(VGG16_CFG[:end]))
    return [item if item == "M" else max(MIN_CHANNELS, round(item * width))
            for item in VGG16_CFG[:end]]


class StudentEncoder(nn.Module):
    """A trainable VGG16-shaped trunk; ``forward(x, layers)`` returns ``{layer: activation}``
    as `Encoder` does, each activation lifted to the channels ``channels`` gives for its layer.

    ``encoder``: the frozen encoder it replaces, whose input normalization it copies.
    """

    def __init__(self, encoder: Encoder, width: float, channels: dict[str, int]):
        super().__init__()
        names = vgg_layer_names(VGG16_CFG)
        cfg = student_cfg(width, max(channels, key=names.index))
        self.preprocess = copy.deepcopy(encoder.preprocess)
        self.features = vgg_trunk(cfg)
        self.layer_names = vgg_layer_names(cfg)
        # a ReLU's channels are those of the convolution just before it
        own = {n: self.features[self.layer_names.index(n) - 1].out_channels for n in channels}
        self.lifts = nn.ModuleDict({n: nn.Conv2d(own[n], c, 1) for n, c in channels.items()})

    def activations(self, x: torch.Tensor, layers) -> dict[str, torch.Tensor]:
        """``{layer: activation}`` at the student's own width, before the lifts: what inference
        reads when the decoder absorbs the lifts (fold.py)."""
        unknown = set(layers) - set(self.lifts)
        if unknown:
            raise ValueError(f"the student encoder lifts only {sorted(self.lifts)}, "
                             f"not {sorted(unknown)}")
        return trunk_activations(self.features, self.layer_names, self.preprocess(x), layers)

    def forward(self, x: torch.Tensor, layers) -> dict[str, torch.Tensor]:
        return {name: self.lifts[name](f) for name, f in self.activations(x, layers).items()}
