"""MAML / first-order MAML / Meta-SGD as plain functions over ``torch.func.functional_call``.

Why not learn2learn: it does not build on Python 3.11 (``longintrepr.h``, upstream issue #413)
and drags in gym and gsutil; torch.func gives the same meta-gradients and is maintained.

The one inner-loop formula covers every variant:
    theta' = theta - rate * u,  u = g (SGD) or Adam's bias-corrected m / (sqrt(v) + eps),
    g = clip(d L_support / d theta)
second-order keeps g in the graph (``create_graph``); first-order detaches it, which still lets
the outer loss reach the Meta-SGD rates through ``rate * u``. The Adam direction is exactly
``torch.optim.Adam``'s with default betas, so an init meta-trained with it is trained for the very
updates `metastyle adapt` makes (a test checks the two agree step for step).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import torch
from torch import nn
from torch.func import functional_call

if TYPE_CHECKING:  # config imports INNER_OPTIMIZERS from here, so only for the type checker
    from .config import MetaConfig

# (params) -> scalar loss; built by the caller around a batch and a style's targets
LossOf = Callable[[dict[str, torch.Tensor]], torch.Tensor]

INNER_OPTIMIZERS = ("sgd", "adam")
ADAM_BETAS, ADAM_EPS = (0.9, 0.999), 1e-8  # torch.optim.Adam's defaults, as adapt() uses


def clip_by_norm(grads: list[torch.Tensor], max_norm: float) -> list[torch.Tensor]:
    """Scale a gradient list so its global norm is at most ``max_norm`` (0 = no clipping)."""
    if max_norm <= 0:
        return grads
    norm = torch.sqrt(sum(g.pow(2).sum() for g in grads))
    scale = torch.clamp(max_norm / (norm + 1e-12), max=1.0)
    return [g * scale for g in grads]


class AdamDirection:
    """Adam's update direction, as plain tensor maths so it can sit inside a meta-gradient."""

    def __init__(self):
        self.m: dict[str, torch.Tensor] = {}
        self.v: dict[str, torch.Tensor] = {}
        self.t = 0

    def __call__(self, names: list[str], grads: list[torch.Tensor]) -> list[torch.Tensor]:
        (b1, b2), self.t = ADAM_BETAS, self.t + 1
        out = []
        for name, g in zip(names, grads):
            first = self.t == 1  # moments start at zero, so step 1 is just the new term
            self.m[name] = (1 - b1) * g + (0 if first else b1 * self.m[name])
            self.v[name] = (1 - b2) * g * g + (0 if first else b2 * self.v[name])
            m_hat = self.m[name] / (1 - b1 ** self.t)
            v_hat = self.v[name] / (1 - b2 ** self.t)
            out.append(m_hat / (v_hat.sqrt() + ADAM_EPS))
        return out


@dataclass(frozen=True)
class InnerLoop:
    """How the inner loop adapts: ``steps`` updates (0 = no adaptation) in the ``optimizer``'s
    direction (one of ``INNER_OPTIMIZERS``), ``first_order`` to drop the second-order term of
    the meta-gradient, and ``grad_clip`` the norm clip of each inner gradient (0 = off)."""

    steps: int
    optimizer: str = "sgd"
    first_order: bool = True
    grad_clip: float = 0.0

    def __post_init__(self):
        if self.optimizer not in INNER_OPTIMIZERS:
            raise ValueError(f"unknown inner optimizer {self.optimizer!r}; "
                             f"choose one of {INNER_OPTIMIZERS}")

    @classmethod
    def of(cls, config: MetaConfig) -> InnerLoop:
        """The inner loop a [meta] table asks for (any object with its ``inner_*`` fields)."""
        return cls(steps=config.inner_steps, optimizer=config.inner_optimizer,
                   first_order=config.first_order, grad_clip=config.inner_grad_clip)


def inner_loop(params: dict[str, torch.Tensor], adapt_names: list[str], loss_of: LossOf,
               rates: dict[str, torch.Tensor],
               loop: InnerLoop) -> tuple[dict[str, torch.Tensor], list[float]]:
    """``loop.steps`` SGD or Adam steps on ``adapt_names`` with per-tensor ``rates``; returns
    fast weights + the support loss before each step.

    ``params`` may require grad (meta-training) or not (plain adaptation); untouched tensors
    are passed through unchanged, so the outer gradient reaches them directly.
    """
    direction = AdamDirection() if loop.optimizer == "adam" else (lambda _names, grads: grads)
    fast = dict(params)
    for name in adapt_names:  # plain adaptation: make leaves we can differentiate against
        if not fast[name].requires_grad:
            fast[name] = fast[name].detach().requires_grad_()
    losses = []
    for _ in range(loop.steps):
        with torch.enable_grad():
            loss = loss_of(fast)
            inputs = [fast[n] for n in adapt_names]
            grads = torch.autograd.grad(loss, inputs, create_graph=not loop.first_order)
        if loop.first_order:
            grads = [g.detach() for g in grads]
        updates = direction(adapt_names, clip_by_norm(list(grads), loop.grad_clip))
        for name, update in zip(adapt_names, updates):
            fast[name] = fast[name] - rates[name] * update
        losses.append(loss.item())
    return fast, losses


def model_loss(model: nn.Module, loss_fn: Callable, batch: torch.Tensor,
               style_targets: dict) -> Callable[[dict], dict]:
    """Perceptual-loss terms of ``model`` run with the given weights on ``batch``."""
    content = loss_fn.content_targets(batch)

    def terms(params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return loss_fn(functional_call(model, params, (batch,)), content, style_targets)

    return terms


class MetaLearner(nn.Module):
    """The meta-trained state: generator init plus (for Meta-SGD) log inner rates per tensor."""

    def __init__(self, model: nn.Module, adapt_names: list[str], inner_lr: float, meta_sgd: bool):
        super().__init__()
        self.model = model
        self.adapt_names = adapt_names
        self.log_rates = nn.ParameterDict()
        self.fixed_rate = inner_lr
        if meta_sgd:
            for name in adapt_names:
                self.log_rates[name.replace(".", "/")] = nn.Parameter(
                    torch.tensor(float(inner_lr)).log())

    def rates(self) -> dict[str, torch.Tensor]:
        if not self.log_rates:
            return {n: torch.tensor(self.fixed_rate) for n in self.adapt_names}
        return {n: self.log_rates[n.replace(".", "/")].exp() for n in self.adapt_names}


def meta_loss(learner: MetaLearner, loss_fn, episodes, loop: InnerLoop,
              anchor: float = 0.0) -> tuple[torch.Tensor, dict[str, float]]:
    """Mean query loss after adaptation by ``loop`` over a meta-batch of episodes
    (differentiable).

    Each episode starts from the init plus ``model.style_values(style)`` (for the
    encoder-decoder, the style's code and palette: its k = 0 is the zero-shot stylization).
    ``anchor`` > 0 also scores the un-adapted start on the query batch:
    ``(after + anchor * before) / (1 + anchor)``, the step-0 part of MAML++'s multi-step loss.
    Without it a strong inner loop lets the init drift to outputs far from any style
    (experiments/LOG.md, 2026-11-30, "the shipped init: style weight 3, ...").
    """
    params = dict(learner.model.named_parameters())
    rates = learner.rates()
    anchored = bool(loop.steps) and anchor > 0
    total = 0.0
    stats = dict.fromkeys(["support_before"] * bool(loop.steps) + ["query_before"] * anchored +
                          ["query_after", "query_style", "query_content"], 0.0)
    for ep in episodes:
        targets = loss_fn.style_targets(ep.style)
        # the task's own starting values (the encoder-decoder's style code and palette)
        # replace the init's
        start = {**params, **learner.model.style_values(ep.style)}
        fast, inner = start, []  # loop.steps == 0: plain multi-style ("joint") training
        if loop.steps:
            support = model_loss(learner.model, loss_fn, ep.support, targets)
            fast, inner = inner_loop(start, learner.adapt_names, lambda p: support(p)["total"],
                                     rates, loop)
        query = model_loss(learner.model, loss_fn, ep.query, targets)
        terms = query(fast)
        total = total + terms["total"]
        if anchored:
            before = query(start)["total"]
            total = total + anchor * before
            stats["query_before"] += before.item()
        if inner:
            stats["support_before"] += inner[0]
        stats["query_after"] += terms["total"].item()
        stats["query_style"] += terms["style"].item()
        stats["query_content"] += terms["content"].item()
    n = len(episodes) * (1 + anchor if anchored else 1)
    return total / n, {k: v / len(episodes) for k, v in stats.items()}


# (learner, loss, stats) -> (loss, stats), run between backward and clipping; may change the
# gradients in place (distributed.Ranks.average averages them over data-parallel ranks)
GradientHook = Callable[[MetaLearner, float, dict[str, float]], tuple[float, dict[str, float]]]


def meta_step(learner: MetaLearner, optimizer: torch.optim.Optimizer, loss_fn, episodes,
              settings: MetaConfig, gradient_hook: GradientHook | None = None) -> dict[str, float]:
    """One outer update of the init (and rates); returns logged statistics.

    ``settings`` is the [meta] table: its inner-loop fields (`InnerLoop.of`), ``anchor`` (see
    `meta_loss`) and ``grad_clip``, the norm clip of the meta-gradient (0 = off).
    ``gradient_hook`` sees the meta-gradients after backward (a non-finite loss skips backward,
    so they may be None) and before clipping and the optimizer step.
    """
    optimizer.zero_grad(set_to_none=True)
    loss, stats = meta_loss(learner, loss_fn, episodes, InnerLoop.of(settings), settings.anchor)
    loss_value = loss.item()
    if math.isfinite(loss_value):
        loss.backward()
    if gradient_hook is not None:
        loss_value, stats = gradient_hook(learner, loss_value, stats)
    if not math.isfinite(loss_value):
        return {**stats, "loss": float("nan"), "grad_norm": float("nan")}
    grad_norm = torch.nn.utils.clip_grad_norm_(learner.parameters(),
                                               settings.grad_clip or float("inf"))
    optimizer.step()
    rates = [r.item() for r in learner.rates().values()]
    return {**stats, "loss": loss_value, "grad_norm": grad_norm.item(),
            "rate_mean": sum(rates) / len(rates)}
