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
from torch.utils.weak import WeakIdKeyDictionary

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
          probe: Callable[[int, nn.Module], None] | None = None,
          inputs: FixedInputs | None = None) -> AdaptResult:
    """Copy ``base`` and fit ``subset`` of its parameters to a style with Adam.

    ``batches(i)`` gives step i's content batch (``cycle_batches`` for a fixed support set,
    ``fresh_crops`` for a stream); ``on_step(i, loss)`` drives progress bars;
    ``probe(k, model)`` sees the model after k steps (k = 0 first), outside the timed region,
    so a benchmark can score an adaptation curve in one run; ``inputs``: the `FixedInputs` of
    ``base`` under ``loss_fn`` when the caller has prepared batches already (a loss report
    on the batches the steps start with).
    """
    model = copy.deepcopy(base).train()
    # unanchored, the start only lends its trunk, which adaptation never changes
    inputs = inputs or FixedInputs(loss_fn, frozen_copy(base) if loss_fn.config.anchor else base)
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
        features, reference = inputs(content)
        loss = loss_fn(inputs.run(model, content, features), reference, style_targets)["total"]
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


class FixedInputs:
    """Per content batch, what stays fixed while adaptation changes a model: the frozen trunk's
    features of the photos (an encoder-decoder's trunk is in no adaptation subset, and every
    copy of a model shares it) and what the content term compares with: the photos, or under
    an anchored objective the features of the un-adapted model's output on them.

    ``start``: the model as adaptation starts (`frozen_copy`), the anchor. Each batch is
    prepared on first use and kept while the batch tensor lives (keyed by identity), so the
    model and its anchor share one trunk pass where an anchored step used to run it twice,
    and a batch that a loss report and the steps share is prepared once (experiments/LOG.md,
    2026-12-02). The Johnson network has no trunk: its features are None.
    """

    def __init__(self, loss_fn: PerceptualLoss, start: nn.Module):
        self.loss_fn, self.start = loss_fn, start
        self._kept = WeakIdKeyDictionary()

    @torch.no_grad()
    def __call__(self, content: torch.Tensor
                 ) -> tuple[dict[str, torch.Tensor] | None, torch.Tensor | dict[str, torch.Tensor]]:
        """(features, reference) of ``content``."""
        if content not in self._kept:
            encode = getattr(self.start, "encoded", None)
            features = encode(content) if encode else None
            start = self.run(self.start, content, features) if self.loss_fn.config.anchor else None
            reference = content if start is None else self.loss_fn.content_targets(start)
            self._kept[content] = (features, reference, start)
        return self._kept[content][:2]

    @torch.no_grad()
    def output(self, model: nn.Module, content: torch.Tensor) -> torch.Tensor:
        """``model``'s output on ``content``; the start's is the one its reference came from."""
        features, _ = self(content)
        start = self._kept[content][2]
        return start if model is self.start and start is not None else self.run(
            model, content, features)

    @staticmethod
    def run(model: nn.Module, content: torch.Tensor,
            features: dict[str, torch.Tensor] | None) -> torch.Tensor:
        """``model``'s output on ``content``, from the trunk's ``features`` when known."""
        return model(content) if features is None else model(content, features=features)


@torch.no_grad()
def evaluate_terms(model: nn.Module, loss_fn: PerceptualLoss, style_targets: dict,
                   images: torch.Tensor | list[torch.Tensor], batch: int = 4,
                   inputs: FixedInputs | None = None) -> dict[str, float]:
    """Mean loss terms of ``model`` on held-out ``images``: a tensor, taken ``batch`` at a time
    to bound memory, or a list of batches. ``inputs``: the `FixedInputs` of the adaptation
    ``model`` comes from (required by an anchored objective); reports before and after the
    steps that pass the same ``inputs`` and list of batches encode the photos and compute the
    reference once."""
    if inputs is None:
        if loss_fn.config.anchor:
            raise ValueError("an anchored objective needs the adaptation's FixedInputs")
        inputs = FixedInputs(loss_fn, model)
    chunks = images.split(batch) if isinstance(images, torch.Tensor) else images
    sums: dict[str, float] = {}
    for chunk in chunks:
        terms = loss_fn(inputs.output(model, chunk), inputs(chunk)[1], style_targets)
        for key, value in terms.items():
            sums[key] = sums.get(key, 0.0) + value.item() * len(chunk)
    count = sum(len(chunk) for chunk in chunks)
    return {k: v / count for k, v in sums.items()}


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
