"""The references meta-learning is judged against.

- Gatys et al. 2016: optimize one image's pixels (L-BFGS or Adam): slow, the quality reference.
- Per-style network (Johnson et al. 2016): a generator trained from a random init on one style.
(The joint multi-style init lives with the benchmark, since it shares the meta-training data.)
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Callable

import torch

from .adaptation import AdaptResult, adapt, fresh_crops
from .checkpoint import check_model_suffix, save_generator
from .corpus import readable_images
from .generator import Generator, GeneratorConfig
from .images import list_images, load_tensor
from .losses import PerceptualLoss, perceptual_loss


def gatys(content: torch.Tensor, style_targets: dict, loss_fn: PerceptualLoss, steps: int,
          method: str = "lbfgs", lr: float = 0.02, *,
          on_step: Callable[[int, float], None] | None = None) -> tuple[torch.Tensor, list[float]]:
    """Optimize an image, starting from the photo, to minimize the perceptual loss.

    The loss sees ``pixels.clamp(0, 1)``. L-BFGS runs as one call of ``steps`` iterations:
    stepping it one iteration per call (or through a sigmoid parametrization) stalled after
    the first line search on some images (experiments/LOG.md). Returns the image and the loss
    at each function evaluation (L-BFGS) or step (Adam).
    """
    content_feats = loss_fn.content_targets(content)
    pixels = content.clone(memory_format=torch.contiguous_format).requires_grad_(True)
    losses: list[float] = []

    def evaluate() -> torch.Tensor:
        loss = loss_fn(pixels.clamp(0.0, 1.0), content_feats, style_targets)["total"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        losses.append(loss.item())
        if on_step:
            on_step(min(len(losses), steps) - 1, loss.item())
        return loss

    if method == "lbfgs":
        optimizer = torch.optim.LBFGS([pixels], lr=1.0, max_iter=steps, history_size=50,
                                      tolerance_grad=0.0, tolerance_change=0.0,
                                      line_search_fn="strong_wolfe")
        optimizer.step(evaluate)
    elif method == "adam":
        optimizer = torch.optim.Adam([pixels], lr=lr)
        for _ in range(steps):
            optimizer.step(evaluate)
    else:
        raise ValueError(f"unknown Gatys method {method!r} (lbfgs or adam)")
    return pixels.detach().clamp(0.0, 1.0), losses


def train_per_style(style_targets: dict, loss_fn: PerceptualLoss, contents: list[Path],
                    config: GeneratorConfig, steps: int, lr: float, *, batch: int, crop: int,
                    seed: int, on_step: Callable[[int, float], None] | None = None) -> AdaptResult:
    """A randomly initialized generator, all parameters trained on one style (Johnson)."""
    torch.manual_seed(seed)
    model = Generator(config)
    return adapt(model, loss_fn, style_targets, fresh_crops(contents, batch, crop, seed), steps, lr,
                 subset="all", on_step=on_step)


def per_style_model_file(style_path: Path, content_dir: Path, output: Path, config, steps: int,
                         lr: float, *, batch: int, on_step=None) -> AdaptResult:
    """`metastyle train-style`: train a per-style network and save it with its provenance."""
    check_model_suffix(output)
    style = load_tensor(style_path, config.data.style_size)
    contents = readable_images(list_images(content_dir), f"content ({content_dir})")
    loss_fn = perceptual_loss(config.loss)
    result = train_per_style(loss_fn.style_targets(style), loss_fn, contents, config.generator,
                             steps, lr, batch=batch, crop=config.data.crop,
                             seed=config.train.seed, on_step=on_step)
    save_generator(output, result.model, {
        "trained_by": "metastyle train-style", "steps": steps, "lr": lr, "batch": batch,
        "seconds": round(result.seconds, 3), "style_file": Path(style_path).name,
        "encoder": loss_fn.encoder.name, "encoder_sha256": loss_fn.encoder.weights_sha256,
        "loss": asdict(config.loss), "final_loss": result.losses[-1] if result.losses else None})
    return result
