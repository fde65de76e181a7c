"""The encoder-decoder generator: frozen VGG16 trunk -> style transform -> trainable decoder.

The frozen encoder is the image prior that a generator trained from scratch cannot learn on a CPU
budget. A photo's features at ``depth`` are re-normalized to a style's channel statistics (AdaIN,
Huang & Belongie 2017), so a new style is stylized in one forward pass (k = 0); adaptation then
refines the style code and the decoder's per-channel affines by gradient steps. The decoded
colours then move part way to the style image's own palette (``palette``, colour.py), and the
photo's own fine luminance detail, which the decoder blurs away, can be added back (``detail``,
detail.py).

Parameter names follow the Johnson generator's convention so the same subsets work: every
per-channel affine lives in a module called ``norm``; the style code is ``code.mean.<layer>`` /
``code.std.<layer>``. The encoder is shared, never copied and never stored in a model file: it
is not a registered submodule, so ``state_dict()`` holds the decoder, the code and the palette.
A fast model encodes with a small trainable student instead (``student_width``, student.py): a
submodule, stored in the model file. The frozen encoder stays the one the file was made for: its
loss network, and where the student's input normalization comes from.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from .colour import match_palette, palette_of
from .detail import fine_detail
from .encoders import Encoder
from .fold import folded_conv, lifted_affine, lifted_stats, per_image_conv
from .limits import STUDENT_WIDTH
from .student import StudentEncoder

# Channels of the VGG16 activations the generator reads, and how many 2x poolings lie before them.
LAYERS = {"relu1_1": (64, 0), "relu2_1": (128, 1), "relu3_1": (256, 2), "relu4_1": (512, 3)}
STYLE_EPS = 1e-5
# Reflected pixels around every input, cropped off the output. VGG's zero padding makes the
# features along an image's edge unlike any interior ones, and the decoder painted them as a
# bright frame; with a 16 px margin the frame is gone (experiments/LOG.md, 2026-12-01). A
# multiple of 8, so the crop stays on the decoder's grid.
BORDER = 16
# How far outputs move to the style image's palette by default (colour.match_palette): the
# decoder's own colours drift warm. Selected on train styles, confirmed on held-out ones: +0.076
# embedding gain, +0.010 Gram gain, -0.019 SSIM on 12 x 4 held-out pairs (experiments/LOG.md,
# 2026-12-01, "the palette").
PALETTE = 0.5
# How much of the photo's fine luminance detail (detail.fine_detail) outputs get back by default,
# and the scale in pixels below which the detail is the photo's (the Gaussian blur's sigma).
# Selected with the file's strength (1.0) on train styles and confirmed on 48 held-out pairs:
# +0.085 SSIM, +0.026 embedding gain, -0.007 Gram gain against strength 0.9 without it
# (experiments/LOG.md, 2026-12-02, "the photo's fine detail"). The blur's radius (3 sigma, 3 px)
# stays under the smallest image side (limits.MIN_IMAGE_SIDE, 16 px: the blur reflects that
# many pixels) and under the 16 px each tile's blend weight discards at its inner edges
# (inference._tile_weight), so tiles get the single pass's detail.
DETAIL = 0.5
DETAIL_SIGMA = 1.0


@dataclass(frozen=True)
class StyleNetConfig:
    """``depth``: the deepest features, where the decoder starts; ``skips``: shallower layers
    whose (style-transformed) features join the decoder at their own scale. A decoder from
    relu4_1 alone still reconstructed photos as brown blurs after 750 autoencoder steps
    (experiments/LOG.md, 2026-12-01); the relu3_1 skip carries the detail, relu4_1 the larger
    structures of a style.
    ``width``: channels of the decoder's first conv; each upsampling halves it.
    ``student_width``: 0 encodes with the frozen encoder; a fraction of VGG16's channels gives
    the generator a student encoder of that width (student.py), trained by the distill stage."""

    depth: str = "relu4_1"
    skips: list[str] = field(default_factory=lambda: ["relu3_1"])
    width: int = 128
    student_width: float = 0.0

    def to_dict(self) -> dict:
        """What a file records; without a student it is the record of the files from before
        students existed, so those and new ones compare equal."""
        record = {"kind": "stylenet", **asdict(self)}
        if not self.student_width:
            del record["student_width"]
        return record

    @property
    def layers(self) -> tuple[str, ...]:
        """Every encoder layer the generator transforms, deepest first."""
        return (self.depth, *self.skips)


def channel_stats(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image, per-channel mean and standard deviation, each (B, C)."""
    mean = features.mean((2, 3))
    std = features.var((2, 3), unbiased=False).add(STYLE_EPS).sqrt()
    return mean, std


def instance_normalized(features: torch.Tensor,
                        own: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """``features`` less their per-image, per-channel mean, over their std (or ``own``'s
    mean and std: the whole photo's, for a tile)."""
    own_mean, own_std = channel_stats(features) if own is None else own
    return (features - own_mean[..., None, None]) / own_std[..., None, None]


def adain(features: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
          own: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """Give ``features`` (B,C,H,W) the channel statistics ``mean`` / ``std`` ((C,) or (B,C)).

    ``own``: the (mean, std), each (B,C), that the features are normalized by; by default their
    own. Tiles of one photo pass the whole photo's, so that every tile is normalized alike."""
    shape = (-1, features.shape[1], 1, 1)
    return instance_normalized(features, own) * std.view(shape) + mean.view(shape)


def _owned_cells(start: int, stop: int, tile_start: int, size: int, scale: int) -> slice:
    """The cells, along one axis of a tile's feature map at ``scale`` pixels per cell, of the
    image pixels [start, stop) that the tile starting at pixel ``tile_start`` owns. A side on
    the image's edge also takes the margin beyond it, as the single pass's statistics do.
    Boundaries round to the nearest cell: tiles on the feature grid split it exactly."""

    def cell(pixel: int) -> int:
        return (pixel - tile_start + BORDER + scale // 2) // scale

    return slice(0 if start == 0 else cell(start), None if stop == size else cell(stop))


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

    def forward(self, x: torch.Tensor,
                folded: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """``folded``: a per-image (weight, bias) that replaces the conv's (fold.folded_conv)."""
        x = self.pad(x)
        x = self.conv(x) if folded is None else per_image_conv(x, *folded)
        return self.act(self.norm(x))


class StyleCode(nn.Module):
    """The style's channel statistics at each transformed layer (parameters
    ``code.mean.<layer>`` / ``code.std.<layer>``); adaptable like any parameter."""

    def __init__(self, layers: tuple[str, ...]):
        super().__init__()
        self.mean = nn.ParameterDict({n: nn.Parameter(torch.zeros(LAYERS[n][0])) for n in layers})
        self.std = nn.ParameterDict({n: nn.Parameter(torch.ones(LAYERS[n][0])) for n in layers})

    def as_dict(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        return {n: (self.mean[n], self.std[n]) for n in self.mean}


class Palette(nn.Module):
    """The style image's RGB mean and covariance (buffers: set by a style, never adapted), and
    whether a style has set them; forward moves an image towards them (colour.match_palette).

    Model files written before the palette existed load with it unset: their outputs keep the
    decoder's colours."""

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.zeros(3))
        self.register_buffer("cov", torch.eye(3))
        self.register_buffer("active", torch.zeros(()))  # 1 once a style set the palette

    def values_of(self, style: torch.Tensor) -> dict[str, torch.Tensor]:
        """The buffers' values for one style image (1,3,H,W)."""
        mean, cov = palette_of(style)
        dtype = self.mean.dtype
        return {"mean": mean[0].to(dtype), "cov": cov[0].to(dtype),
                "active": torch.ones((), dtype=dtype, device=self.mean.device)}

    def forward(self, image: torch.Tensor, strength: float,
                source: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        # no branch on whether a style set it: traced and exported graphs stay one graph
        return match_palette(image, self.mean, self.cov, self.active * strength, source)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        if not any(key.startswith(prefix) for key in state_dict):
            return  # a file from before the palette: leave it unset
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)


class Decoder(nn.Module):
    """Mirror of the VGG trunk: nearest 2x upsample + two convs per scale, halving channels;
    a skip's features are concatenated right after the upsampling that reaches their scale."""

    def __init__(self, config: StyleNetConfig):
        super().__init__()
        channels, scale = LAYERS[config.depth]
        self.skip_at = {scale - LAYERS[n][1] - 1: n for n in config.skips}
        self.head = ConvBlock(channels, config.width)
        self.levels = nn.ModuleList()
        c = config.width
        for level in range(scale):
            extra = LAYERS[self.skip_at[level]][0] if level in self.skip_at else 0
            out = max(c // 2, 16)
            self.levels.append(nn.Sequential(ConvBlock(c + extra, c), ConvBlock(c, out)))
            c = out
        self.out = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(c, 3, 3))

    def forward(self, features: dict[str, torch.Tensor], depth: str,
                affines: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None
                ) -> torch.Tensor:
        """``affines``: for each layer whose ``features`` are a student's own activations, the
        per-image affine map (M, v) that its lift and the transform apply (fold.lifted_affine);
        the conv that reads the layer absorbs it (fold.folded_conv)."""
        affines = affines or {}

        def read(block: ConvBlock, h: torch.Tensor | None, layer: str) -> torch.Tensor:
            """``block`` on ``layer``'s features, after ``h`` where it is given."""
            x = features[layer] if h is None else torch.cat([h, features[layer]], dim=1)
            return block(x, folded_conv(block.conv, *affines[layer]) if layer in affines
                         else None)

        h = read(self.head, None, depth)
        for level, (first, second) in enumerate(self.levels):
            h = nn.functional.interpolate(h, scale_factor=2, mode="nearest")
            h = read(first, h, self.skip_at[level]) if level in self.skip_at else first(h)
            h = second(h)
        return self.out(h)


def grown_weights(weights: dict[str, torch.Tensor], old: StyleNetConfig,
                  new: StyleNetConfig) -> dict[str, torch.Tensor]:
    """The state of a generator with ``old``'s config as the state of one with ``new``'s, which
    adds skips (same depth, width and student): the conv that reads a new skip gets zero weights
    on its channels, so the grown generator decodes exactly as the old one did until training
    moves them, and a new layer's code starts as AdaIN's identity (mean 0, std 1) until a style
    sets it. A finer skip brings the style's statistics at that scale into the decoder."""
    added = [n for n in new.skips if n not in old.skips]
    if (old.depth, old.width, old.student_width) != (new.depth, new.width, new.student_width) \
            or not added or any(n not in new.skips for n in old.skips):
        raise ValueError(f"stylenet {old.to_dict()} does not grow into {new.to_dict()}: same "
                         f"depth, width and student, and only skips added")
    grown = dict(weights)
    levels = Decoder(new).skip_at
    for level, name in levels.items():
        if name not in added:
            continue
        key = f"decoder.levels.{level}.0.conv.weight"
        extra = torch.zeros_like(grown[key][:, :1]).expand(-1, LAYERS[name][0], -1, -1)
        grown[key] = torch.cat([grown[key], extra], dim=1)  # the skip is concatenated last
        grown[f"code.mean.{name}"] = torch.zeros(LAYERS[name][0], dtype=grown[key].dtype)
        grown[f"code.std.{name}"] = torch.ones(LAYERS[name][0], dtype=grown[key].dtype)
    return grown


class StyleNet(nn.Module):
    """RGB [0,1] -> RGB [0,1] in the style held by ``code`` (set it with ``set_style``).

    ``forward(x)`` stylizes with the stored code, moves the colours ``palette_strength`` x
    ``strength`` of the way to the stored palette and, in eval mode, adds ``detail_strength`` x
    the photo's fine luminance detail; ``reconstruct(x)`` skips the transform (the autoencoder
    stage); ``stylize(x, codes)`` takes per-image codes and keeps the decoder's colours (joint
    training). The decoder's output goes through a sigmoid: bounded outputs keep inner-loop
    SGD stable.
    """

    def __init__(self, config: StyleNetConfig, encoder: Encoder):
        super().__init__()
        bad = [n for n in config.layers if n not in LAYERS]
        if bad or any(LAYERS[n][1] >= LAYERS[config.depth][1] for n in config.skips):
            raise ValueError(f"stylenet layers {config.layers}: the depth is one of "
                             f"{', '.join(LAYERS)} and every skip is shallower")
        if not STUDENT_WIDTH.ok(config.student_width):
            raise ValueError(f"stylenet student_width {config.student_width!r}: must be "
                             f"{STUDENT_WIDTH.describe()}")
        self.config = config
        self.upsamplings = LAYERS[config.depth][1]
        # Not a submodule: shared between copies, left out of state_dict and parameters().
        self.__dict__["encoder"] = encoder
        self.code = StyleCode(config.layers)
        self.palette = Palette()
        self.decoder = Decoder(config)
        self.student = (StudentEncoder(encoder, config.student_width,
                                       {n: LAYERS[n][0] for n in config.layers})
                        if config.student_width else None)
        self.strength = 1.0  # AdaIN's content-style trade-off: 0 decodes the photo's own features
        self.palette_strength = PALETTE
        self.detail_strength = DETAIL
        # Set on the copy that stylizes the tiles of one photo (for_tiles): per layer, the photo
        # statistics AdaIN normalizes by instead of each input's own, and the whole output's
        # palette that the colour map starts from instead of each tile's.
        self.content_stats: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None
        self.output_palette: tuple[torch.Tensor, torch.Tensor] | None = None

    def __deepcopy__(self, memo):
        """Copies share the frozen encoder (59 MB) instead of duplicating it."""
        clone = self.__class__.__new__(self.__class__)
        memo[id(self)] = clone
        memo[id(self.encoder)] = self.encoder
        for key, value in self.__dict__.items():
            clone.__dict__[key] = copy.deepcopy(value, memo)
        return clone

    def _apply(self, fn, recurse=True):
        self.encoder._apply(fn, recurse)
        return super()._apply(fn, recurse)

    @property
    def trunk(self) -> nn.Module:
        """What encodes photos and styles: the student, else the frozen encoder."""
        return self.encoder if self.student is None else self.student

    def encode(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.trunk(x, self.config.layers)

    @torch.no_grad()
    def style_code_of(self, style: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """The code of one style image (1,3,H,W): per layer, (C,) mean and std."""
        stats = {n: channel_stats(f) for n, f in self.encode(style).items()}
        return {n: (mean[0], std[0]) for n, (mean, std) in stats.items()}

    @torch.no_grad()
    def style_values(self, style: torch.Tensor) -> dict[str, torch.Tensor]:
        """What a style sets before adaptation, by state_dict name: its code (k = 0 =
        zero-shot), which adaptation refines, and its palette, which it leaves."""
        code = self.style_code_of(style)
        return ({f"code.mean.{n}": m for n, (m, _) in code.items()}
                | {f"code.std.{n}": s for n, (_, s) in code.items()}
                | {f"palette.{n}": v for n, v in self.palette.values_of(style).items()})

    def style_parameter_names(self) -> list[str]:
        """Parameters a style sets (its code), which a style file stores whatever adaptation
        changed: an ``affines`` refinement leaves the code at the painting's statistics."""
        return [f"code.{kind}.{n}" for n in self.config.layers for kind in ("mean", "std")]

    @torch.no_grad()
    def set_style(self, style: torch.Tensor) -> None:
        self.load_state_dict(self.style_values(style), strict=False)

    def decode(self, features: dict[str, torch.Tensor],
               affines: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None
               ) -> torch.Tensor:
        return torch.sigmoid(self.decoder(features, self.config.depth, affines))

    def _padded(self, x: torch.Tensor) -> torch.Tensor:
        # The trunk halves the size at each pool: work on a multiple of 2**upsamplings. Padding
        # unconditionally keeps size-dependent branches out of traced / exported graphs.
        # Two half-margin reflections: a reflection must be narrower than the image, and the
        # smallest image taken (16 px, images.MIN_SIDE) is not wider than the whole margin.
        m = 2 ** self.upsamplings
        h, w = x.shape[-2:]
        half = BORDER // 2
        x = nn.functional.pad(x, (half, half, half, half), mode="reflect")
        return nn.functional.pad(x, (half, half + (-w) % m, half, half + (-h) % m),
                                 mode="reflect")

    def _cropped(self, x: torch.Tensor, generate) -> torch.Tensor:
        """``generate`` on the padded ``x``, cropped to ``x``'s size."""
        h, w = x.shape[-2:]
        return generate(self._padded(x))[..., BORDER:BORDER + h, BORDER:BORDER + w]

    def _generate(self, x: torch.Tensor, transform,
                  features: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Encode the padded ``x`` (or take its ``features``, `encoded`), ``transform`` them,
        decode, crop to ``x``'s size."""
        return self._cropped(x, lambda padded: self.decode(transform(
            self.encode(padded) if features is None else features)))

    @torch.no_grad()
    def encoded(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The trunk's features of ``x`` as `forward` pads it. No adaptation subset changes the
        trunk, so adaptation encodes a batch once for all its steps, its anchor and its loss
        reports (adaptation.FixedInputs) and passes them to `forward`."""
        return self.encode(self._padded(x))

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self._generate(x, lambda features: features)

    def transform(self, features: dict[str, torch.Tensor],
                  codes: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """AdaIN at every layer, blended with the photo's own features below full strength."""
        content = self.content_stats or {}
        out = {}
        for name, f in features.items():
            target = adain(f, *codes[name], content.get(name))
            out[name] = target if self.strength == 1.0 else torch.lerp(f, target, self.strength)
        return out

    def stylize(self, x: torch.Tensor,
                codes: dict[str, tuple[torch.Tensor, torch.Tensor]],
                features: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        # A student's stylization without gradients folds its lifts and the transform into the
        # decoder's first convolutions (fold.py): the same output for about 70% of the work.
        # With gradients (the distill stage, adaptation) the lifts run: the distill stage holds
        # the lifted features themselves to the frozen encoder's, and the plain path is the
        # reference the fold is tested against. A traced graph (export) keeps the lifts too:
        # the TorchScript-based ONNX exporter refuses a convolution whose weight's shape comes
        # from the batch size, and a grouped convolution would fix the batch at the traced one.
        # Given ``features`` (`encoded`), the trunk has already run: the plain path decodes them.
        if (self.student is None or features is not None or torch.is_grad_enabled()
                or torch.jit.is_tracing()):
            return self._generate(x, lambda encoded: self.transform(encoded, codes), features)
        return self._cropped(x, lambda padded: self._folded(padded, codes))

    def _folded(self, padded: torch.Tensor,
                codes: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """`decode` of `transform` of the student's features of ``padded``, with the lifts and
        the transform folded into the decoder (fold.py)."""
        own = self.student.activations(padded, self.config.layers)
        content = self.content_stats or {}
        affines = {}
        for name, s in own.items():
            lift = self.student.lifts[name]
            stats = content[name] if name in content else lifted_stats(s, lift, STYLE_EPS)
            affines[name] = lifted_affine(lift, stats, codes[name], self.strength)
        return self.decode(own, affines)

    def stylize_with_features(self, x: torch.Tensor,
                              codes: dict[str, tuple[torch.Tensor, torch.Tensor]]
                              ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """`stylize`, and the trunk's features of the padded ``x`` that it transformed: the
        distill stage holds a student's features to the frozen encoder's without a second
        pass of either."""
        features = {}

        def transform(encoded):
            features.update(encoded)
            return self.transform(encoded, codes)

        return self._generate(x, transform), features

    def _copy_with(self, **attributes) -> "StyleNet":
        variant = copy.deepcopy(self)
        for name, value in attributes.items():
            setattr(variant, name, value)
        return variant

    def at_strength(self, strength: float) -> "StyleNet":
        """A copy that blends the photo's features with the stylized ones (Huang & Belongie's
        alpha) instead of blending weights: the base's style code is no style at all."""
        return self._copy_with(strength=strength)

    def with_palette(self, palette_strength: float) -> "StyleNet":
        """A copy whose outputs move ``palette_strength`` of the way to the style's palette."""
        return self._copy_with(palette_strength=palette_strength)

    def with_detail(self, detail_strength: float) -> "StyleNet":
        """A copy that adds ``detail_strength`` x the photo's fine luminance detail to its
        outputs (0 = the decoder's own detail)."""
        return self._copy_with(detail_strength=detail_strength)

    @torch.no_grad()
    def for_tiles(self, image: torch.Tensor,
                  tiles: list[tuple[tuple[int, int, int, int], tuple[int, int, int, int]]]
                  ) -> "StyleNet":
        """A copy that stylizes tiles of ``image`` (1,3,H,W) with the whole image's statistics.

        Each tile's own statistics would stylize a tile of sky and a tile of meadow as two
        different photos: a patchwork. ``tiles``: per tile, its box and the box it owns, each
        (top, bottom, left, right) in image pixels; the owned boxes partition the image, each
        lying in the middle of its tile, away from the inner edges whose features see the tile's
        padding. Every tile is encoded once and adds its owned features' per-channel sums and
        sums of squares, so memory stays bounded by a tile.
        """
        device = self.code.mean[self.config.depth].device
        height, width = image.shape[-2:]
        sums = {}
        for (top, bottom, left, right), (o_top, o_bottom, o_left, o_right) in tiles:
            features = self.encode(self._padded(image[..., top:bottom, left:right].to(device)))
            for name, f in features.items():
                scale = 2 ** LAYERS[name][1]
                owned = f[..., _owned_cells(o_top, o_bottom, top, height, scale),
                          _owned_cells(o_left, o_right, left, width, scale)]
                # The running sums are float64, on the CPU as MPS has none: over hundreds of
                # tiles, float32 sums of squares would lose the variance to cancellation.
                count, total, squares = sums.get(name, (0, 0.0, 0.0))
                sums[name] = (count + owned[0, 0].numel(),
                              total + owned.sum((2, 3)).cpu().double(),
                              squares + owned.square().sum((2, 3)).cpu().double())
        stats = {}
        for name, (count, total, squares) in sums.items():
            mean = total / count
            std = (squares / count - mean.square()).clamp_min(0).add(STYLE_EPS).sqrt()
            dtype = self.code.mean[name].dtype
            stats[name] = (mean.to(device, dtype), std.to(device, dtype))
        tiled = self._copy_with(content_stats=stats)
        if not (self.palette.active and self.palette_strength and self.strength):
            return tiled  # no colour map to apply
        # The colour map needs the whole output's palette before any tile is painted: the
        # photo shrunk to one tile gives it, with the whole photo's statistics (colour
        # statistics hardly change with scale).
        (top, bottom, left, right), _ = tiles[0]
        scale = min(1.0, (bottom - top) / height, (right - left) / width)
        small = nn.functional.interpolate(image, scale_factor=scale, mode="area",
                                          recompute_scale_factor=True) if scale < 1 else image
        tiled.output_palette = palette_of(tiled.stylize(small.to(device), self.code.as_dict()))
        return tiled

    def forward(self, x: torch.Tensor,
                features: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """The stylization of ``x``; ``features``: the trunk's of ``x`` (`encoded`), if known."""
        out = self.stylize(x, self.code.as_dict(), features)
        # scaled by the strength too: at strength 0 no part of the style is left
        out = self.palette(out, self.palette_strength * self.strength, self.output_palette)
        # The photo's detail is part of a stylization, not of what adaptation and training
        # optimize (train mode): it does not depend on the weights, so in a loss it would only
        # shift the style statistics the steps aim at, and its clamp would block their
        # gradients. A Python float and the mode, fixed per model, not tensors: traced and
        # exported graphs stay one graph, and at 0 the output is exactly the palette's. The
        # same amount goes to R, G and B, so the detail changes brightness, not the colours.
        if self.detail_strength and not self.training:
            out = (out + self.detail_strength * fine_detail(x, DETAIL_SIGMA)).clamp(0, 1)
        return out
