"""Few-shot adaptation: a few Adam steps on a subset of a generator's parameters.

The same loop serves `metastyle adapt`, the periodic held-out check during meta-training, the
benchmark (every init x every regime) and the per-style baseline (random init, all parameters,
many steps), so they can be compared like for like. Here: the loop, the content-batch streams it
draws from, and the held-out scoring. Settings and presets are in `presets`; the file-level
command (style image in, model file out) is in `adapt_file`.
"""

from __future__ import annotations

import copy
import functools
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from .corpus import random_crops
from .generator import adapt_parameter_names
from .images import load_image
from .losses import PerceptualLoss
from .meta import AdamDirection
from .runtime import seeded_generator

# Decoded photos a crop stream keeps in memory (a few MB each at typical photo sizes).
DECODED_PHOTOS = 8


@dataclass
class AdaptResult:
    model: nn.Module
    names: list[str]  # the parameters that changed
    losses: list[float] = field(default_factory=list)  # support loss before each step
    seconds: float = 0.0

    @property
    def saved_names(self) -> list[str]:
        """What a style file stores: the changed parameters, the style's own (the
        encoder-decoder's code, whether adapted or not), and the buffers, which the style sets
        and adaptation leaves (the encoder-decoder's palette; the Johnson network has none).
        Constant buffers that no model file holds (a student encoder's input normalization)
        are not the style's."""
        stored = self.model.state_dict()
        return list(dict.fromkeys([*self.names, *self.model.style_parameter_names(),
                                   *(n for n, _ in self.model.named_buffers() if n in stored)]))


def cycle_batches(support: torch.Tensor, batch: int) -> Callable[[int], torch.Tensor]:
    """Step i gets ``batch`` crops taken cyclically from ``support`` (K*batch >= N sees all)."""

    def batch_for(step: int) -> torch.Tensor:
        return support[[(step * batch + j) % len(support) for j in range(min(batch, len(support)))]]

    return batch_for


def fresh_crops(contents: list, batch: int, crop: int, seed: int) -> Callable[[int], torch.Tensor]:
    """Every step gets ``batch`` new random crops (scale, position, flip) of ``contents``.

    Why: a fixed support set is what K steps overfit (all-parameter adaptation on 8 fixed crops
    gets worse on unseen photos past k=50; experiments/LOG.md, 2026-11-30, "which parameters
    adapt changes"); crops are free, so a stream shows the style on every part of the photos.
    Deterministic given ``seed``, so every method in a benchmark sees the same crops. The last
    few decoded photos are kept: adapt's handful of photos is decoded once, not per step.
    """
    gen = seeded_generator(seed)
    count = min(batch, len(contents))
    load = functools.lru_cache(maxsize=DECODED_PHOTOS)(load_image)
    return lambda _step: random_crops(contents, count, crop, gen, load=load)[0]


def adapt(base: nn.Module, loss_fn: PerceptualLoss, style_targets: dict,
          batches: Callable[[int], torch.Tensor], steps: int, lr: float, *, subset: str = "norm",
          on_step: Callable[[int, float], None] | None = None,
          probe: Callable[[int, nn.Module], None] | None = None) -> AdaptResult:
    """Copy ``base`` and fit ``subset`` of its parameters to a style with Adam.

    ``batches(i)`` gives step i's content batch (``cycle_batches`` for a fixed support set,
    ``fresh_crops`` for a stream); ``on_step(i, loss)`` drives progress bars;
    ``probe(k, model)`` sees the model after k steps (k = 0 first), outside the timed region,
    so a benchmark can score an adaptation curve in one run.
    """
    model = copy.deepcopy(base).train()
    anchor = frozen_copy(base) if loss_fn.config.anchor else None
    names = adapt_parameter_names(model, subset)
    chosen = set(names)
    for name, param in model.named_parameters():
        param.requires_grad_(name in chosen)
    params = [model.get_parameter(n) for n in names]
    # The meta-training inner loop's Adam (torch.optim.Adam's update, tested equal): the init
    # is meta-trained for exactly these steps, and building a torch.optim optimizer imports
    # torch._dynamo, 3.6 s of a 2-core CPU's `metastyle adapt` (experiments/LOG.md, 2026-12-01).
    direction = AdamDirection()
    result = AdaptResult(model, names)
    if probe:
        probe(0, model)
    for step in range(steps):
        start = time.perf_counter()
        content = batches(step)
        loss = loss_fn(model(content), content_reference(loss_fn, anchor, content),
                       style_targets)["total"]
        grads = torch.autograd.grad(loss, params)
        with torch.no_grad():
            for param, update in zip(params, direction(names, grads)):
                param.sub_(lr * update)
        result.seconds += time.perf_counter() - start
        result.losses.append(loss.item())
        if on_step:
            on_step(step, loss.item())
        if probe:
            probe(step + 1, model)
    model.requires_grad_(False)
    return result


def frozen_copy(model: nn.Module) -> nn.Module:
    """``model`` as it stands, in training mode (what adaptation optimizes), never to change:
    the reference of an anchored objective (``LossConfig.anchor``)."""
    return copy.deepcopy(model).train().requires_grad_(False)


@torch.no_grad()
def content_reference(loss_fn: PerceptualLoss, anchor: nn.Module | None,
                      content: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
    """What the content term compares an output with: the photos, or with an ``anchor`` the
    features of its output on them."""
    return content if anchor is None else loss_fn.content_targets(anchor(content))


@torch.no_grad()
def evaluate_terms(model: nn.Module, loss_fn: PerceptualLoss, style_targets: dict,
                   images: torch.Tensor, batch: int = 4,
                   anchor: nn.Module | None = None) -> dict[str, float]:
    """Mean loss terms of ``model`` on held-out ``images`` (batched to bound memory); with an
    anchored objective, ``anchor`` is the un-adapted model (`frozen_copy`), which may be
    ``model`` itself (the loss before any step: its own output is the reference)."""
    sums: dict[str, float] = {}
    for i in range(0, len(images), batch):
        chunk = images[i:i + batch]
        output = model(chunk)
        reference = (loss_fn.content_targets(output) if anchor is model
                     else content_reference(loss_fn, anchor, chunk))
        terms = loss_fn(output, reference, style_targets)
        for key, value in terms.items():
            sums[key] = sums.get(key, 0.0) + value.item() * len(chunk)
    return {k: v / len(images) for k, v in sums.items()}


def adaptation_crops(contents: list, count: int, crop: int, gen: torch.Generator) -> torch.Tensor:
    """A fixed support set of ``count`` random crops (cycled through by the K steps); crops may
    share a photo, so a handful of photos is enough."""
    return torch.cat([random_crops(contents, 1, crop, gen)[0] for _ in range(count)])


def start_task(model: nn.Module, style: torch.Tensor) -> nn.Module:
    """``model`` as a task on ``style`` starts: a copy holding the style's own starting values
    (the encoder-decoder's code and palette), or the model itself when the style sets none."""
    values = model.style_values(style)
    if not values:
        return model
    started = copy.deepcopy(model)
    started.load_state_dict(values, strict=False)
    return started
