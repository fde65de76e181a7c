"""Few-shot adaptation: a few Adam steps on a subset of a generator's parameters.

The same loop serves `metastyle adapt`, the periodic held-out check during meta-training, the
benchmark (every init x every regime) and the per-style baseline (random init, all parameters,
many steps), so they can be compared like for like.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from .checkpoint import load_generator, save_delta
from .config import BenchConfig, LossConfig
from .corpus import random_crops
from .encoders import load_encoder
from .errors import UserError
from .generator import adapt_parameter_names
from .images import check_output_suffix, load_image, pil_to_tensor, resize_long_side, save_image
from .losses import LossWeights, PerceptualLoss
from .stylize import stylize_tensor


# The fixed crops `metastyle adapt` reports its loss before/after on (adaptation itself streams
# new crops): the benchmark's support-set size.
SUPPORT_CROPS = BenchConfig().support_crops
# Decoded photos a crop stream keeps in memory (a few MB each at typical photo sizes).
DECODED_PHOTOS = 8


@dataclass
class AdaptResult:
    model: nn.Module
    names: list[str]  # the parameters that changed
    losses: list[float] = field(default_factory=list)  # support loss before each step
    seconds: float = 0.0


def cycle_batches(support: torch.Tensor, batch: int) -> Callable[[int], torch.Tensor]:
    """Step i gets ``batch`` crops taken cyclically from ``support`` (K*batch >= N sees all)."""

    def batch_for(step: int) -> torch.Tensor:
        return support[[(step * batch + j) % len(support) for j in range(min(batch, len(support)))]]

    return batch_for


def fresh_crops(contents: list, batch: int, crop: int, seed: int) -> Callable[[int], torch.Tensor]:
    """Every step gets ``batch`` new random crops (scale, position, flip) of ``contents``.

    Why: a fixed support set is what K steps overfit (session 5: all-parameter adaptation got
    worse on unseen photos past k=50); crops are free, so a stream shows the style on every part
    of the photos. Deterministic given ``seed``, so every method in a benchmark sees the same crops.
    The last few decoded photos are kept: adapt's handful of photos is decoded once, not per step.
    """
    gen = torch.Generator().manual_seed(seed)
    count = min(batch, len(contents))
    load = functools.lru_cache(maxsize=DECODED_PHOTOS)(load_image)
    return lambda _step: random_crops(contents, count, crop, gen, load=load)[0]


def adapt(base: nn.Module, loss_fn: PerceptualLoss, style_targets: dict,
          batches: Callable[[int], torch.Tensor], steps: int, lr: float, subset: str = "norm",
          on_step: Callable[[int, float], None] | None = None,
          probe: Callable[[int, nn.Module], None] | None = None) -> AdaptResult:
    """Copy ``base`` and fit ``subset`` of its parameters to a style with Adam.

    ``batches(i)`` gives step i's content batch (``cycle_batches`` for a fixed support set,
    ``fresh_crops`` for a stream); ``on_step(i, loss)`` drives progress bars;
    ``probe(k, model)`` sees the model after k steps (k = 0 first), outside the timed region,
    so a benchmark can score an adaptation curve in one run.
    """
    model = copy.deepcopy(base).train()
    names = adapt_parameter_names(model, subset)
    chosen = set(names)
    for name, param in model.named_parameters():
        param.requires_grad_(name in chosen)
    optimizer = torch.optim.Adam([model.get_parameter(n) for n in names], lr=lr)
    result = AdaptResult(model, names)
    if probe:
        probe(0, model)
    for step in range(steps):
        start = time.perf_counter()
        content = batches(step)
        loss = loss_fn(model(content), content, style_targets)["total"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        result.seconds += time.perf_counter() - start
        result.losses.append(loss.item())
        if on_step:
            on_step(step, loss.item())
        if probe:
            probe(step + 1, model)
    model.requires_grad_(False)
    return result


@torch.no_grad()
def evaluate_terms(model: nn.Module, loss_fn: PerceptualLoss, style_targets: dict,
                   images: torch.Tensor, batch: int = 4) -> dict[str, float]:
    """Mean loss terms of ``model`` on held-out ``images`` (batched to bound memory)."""
    sums: dict[str, float] = {}
    for i in range(0, len(images), batch):
        chunk = images[i:i + batch]
        terms = loss_fn(model(chunk), chunk, style_targets)
        for key, value in terms.items():
            sums[key] = sums.get(key, 0.0) + value.item() * len(chunk)
    return {k: v / len(images) for k, v in sums.items()}


def loss_weights(loss_cfg: LossConfig) -> LossWeights:
    return LossWeights(loss_cfg.content_weight, loss_cfg.style_weight, loss_cfg.tv_weight,
                       loss_cfg.colour_weight, tuple(loss_cfg.content_layers),
                       tuple(loss_cfg.style_layers))


def perceptual_loss(loss_cfg: LossConfig, seed: int = 0) -> PerceptualLoss:
    """The loss a config (or a model file's recorded loss) describes: encoder, precision, weights."""
    return PerceptualLoss(load_encoder(loss_cfg.encoder, seed, loss_cfg.precision),
                          loss_weights(loss_cfg))


def adaptation_crops(contents: list, count: int, crop: int, gen: torch.Generator) -> torch.Tensor:
    """A fixed support set of ``count`` random crops (cycled through by the K steps); crops may
    share a photo, so a handful of photos is enough."""
    return torch.cat([random_crops(contents, 1, crop, gen)[0] for _ in range(count)])


@dataclass(frozen=True)
class AdaptSettings:
    steps: int
    lr: float
    subset: str
    batch: int
    colour_weight: float


# Named starting points for `metastyle adapt --preset`; explicit options override them.
# fast: the base's own recommendation (what its benchmark chose; norm-only, ~8 KB files).
# quality: every parameter, 400 steps of 4 fresh crops: painting-like texture in minutes on a
# CPU, ~1.1 MB files (experiments/results/quality; experiments/LOG.md, session 7).
PRESETS = {"fast": {}, "quality": {"steps": 400, "lr": 0.001, "subset": "all", "batch": 4}}
DEFAULT_BATCH = 2
# The colour term's weight in every preset's adaptation objective (losses.colour_error). Off:
# chosen on train styles, it cost the init's own objective 2.2% (weight 3) / 2.8% (weight 10),
# over the 2% the selection rule allowed (experiments/bench-select-colour.toml). Ask for it
# (`--colour-weight 10`) when the painting's tone is far from the photo's: without it a dark
# painting gives a bright, pastel photo (experiments/results/colour; LOG, session 8).
DEFAULT_COLOUR_WEIGHT = 0.0


def recommended(meta: dict, steps: int | None = None, lr: float | None = None,
                subset: str | None = None, batch: int | None = None,
                preset: str = "fast", colour_weight: float | None = None) -> AdaptSettings:
    """Adaptation settings: explicit values, else the preset's, else the base's metadata."""
    if preset not in PRESETS:
        raise UserError(f"adapt preset {preset!r}: expected one of {', '.join(PRESETS)}")
    if colour_weight is not None and not colour_weight >= 0:
        raise UserError(f"colour weight {colour_weight}: must be zero or positive")
    chosen = {"steps": meta.get("adapt_steps", 10), "lr": meta.get("adapt_lr", 0.01),
              "subset": meta.get("adapt_subset", "norm"), "batch": DEFAULT_BATCH,
              "colour_weight": DEFAULT_COLOUR_WEIGHT}
    given = {"steps": steps, "lr": lr, "subset": subset, "batch": batch,
             "colour_weight": colour_weight}
    return AdaptSettings(**(chosen | PRESETS[preset]
                            | {k: v for k, v in given.items() if v is not None}))


def adapt_style_file(style_path, base_path, contents: list, steps: int | None = None,
                     lr: float | None = None, batch: int | None = None, seed: int = 0,
                     on_step: Callable[[int, float], None] | None = None,
                     subset: str | None = None, style_weight: float | None = None,
                     preset: str = "fast", colour_weight: float | None = None):
    """Adapt the generator at ``base_path`` to the image at ``style_path``.

    Uses the base's own loss, encoder and training resolution (read from its metadata), so
    adaptation matches what the init was meta-trained for; unset steps / lr / subset / batch /
    colour weight come from ``preset`` (see `PRESETS`), then the base's recommendation.
    ``style_weight`` overrides the base's (more style, less photo).
    Returns ``(AdaptResult, base_meta, provenance)``.
    """
    if style_weight is not None and not style_weight > 0:
        raise UserError(f"style weight {style_weight}: must be positive")
    style_img = load_image(style_path)  # validate the user's file before any heavy work
    base, meta = load_generator(base_path)
    settings = recommended(meta, steps, lr, subset, batch, preset, colour_weight)
    steps, lr, subset, batch = settings.steps, settings.lr, settings.subset, settings.batch
    train_cfg = meta.get("config", {})
    data = train_cfg.get("data", {})
    loss_cfg = replace(LossConfig(**meta.get("loss", train_cfg.get("loss", {}))),
                       colour_weight=settings.colour_weight)
    if style_weight is not None:
        loss_cfg = replace(loss_cfg, style_weight=style_weight)
    loss_fn = perceptual_loss(loss_cfg)
    style = pil_to_tensor(resize_long_side(style_img, data.get("style_size", 192)))
    crop = data.get("crop", 96)
    # adaptation streams new crops (see fresh_crops); a fixed set reports the loss before/after
    support = adaptation_crops(contents, max(batch * 2, SUPPORT_CROPS), crop,
                               torch.Generator().manual_seed(seed))
    targets = loss_fn.style_targets(style)
    before = evaluate_terms(base, loss_fn, targets, support)["total"]
    result = adapt(base, loss_fn, targets, fresh_crops(contents, batch, crop, seed), steps, lr,
                   subset, on_step=on_step)
    style_hash = hashlib.sha256(Path(style_path).read_bytes()).hexdigest()
    provenance = {"adapted_by": "metastyle adapt", "preset": preset, "steps": steps, "lr": lr,
                  "batch": batch, "subset": subset, "crops": "fresh",
                  "style_file": Path(style_path).name, "style_sha256": style_hash,
                  "seconds": round(result.seconds, 3), "support_loss_before": before,
                  "support_loss_after": evaluate_terms(result.model, loss_fn, targets, support)["total"],
                  "encoder": loss_fn.encoder.name,
                  "encoder_sha256": loss_fn.encoder.weights_sha256,
                  "loss": asdict(loss_cfg), "config": train_cfg}
    return result, meta, provenance


def adapt_and_save(style_path: Path, base_path: Path, contents: list, output: Path,
                   preview: Path | None, steps: int | None, lr: float | None,
                   batch: int | None, seed: int = 0,
                   on_step: Callable[[int, float], None] | None = None,
                   subset: str | None = None, style_weight: float | None = None,
                   preset: str = "fast", colour_weight: float | None = None) -> dict:
    """`metastyle adapt`: adapt, then write the delta model and a preview; returns a summary."""
    if Path(output).suffix != ".safetensors":
        raise UserError(f"{output}: model files must end in .safetensors")
    if preview is not None:
        check_output_suffix(preview)
    result, _, provenance = adapt_style_file(style_path, base_path, contents, steps, lr, batch,
                                             seed, on_step, subset, style_weight, preset,
                                             colour_weight)
    save_delta(output, result.model, base_path, result.names, provenance)
    if preview is not None:
        photo = pil_to_tensor(resize_long_side(load_image(contents[0]), 384))
        save_image(stylize_tensor(result.model, photo), preview)
    return {"seconds": result.seconds, "steps": provenance["steps"], "subset": provenance["subset"],
            "bytes": Path(output).stat().st_size,
            "loss_before": provenance["support_loss_before"],
            "loss_after": provenance["support_loss_after"]}
