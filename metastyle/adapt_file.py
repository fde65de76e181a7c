"""Adapt a base generator file to a style image file: what `metastyle adapt`,
`metastyle.adapt(...)` and the service run, given settings already resolved (see `presets`).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, replace
from pathlib import Path
from typing import Callable

from .adaptation import (AdaptResult, FixedInputs, adapt, evaluate_terms, fresh_crops,
                         frozen_copy, start_task)
from .checkpoint import check_model_suffix, encode_delta, file_style_size, load_generator
from .config import LossConfig
from .errors import UserError
from .images import (check_output_suffix, check_outputs, encode_image, load_image, load_tensor,
                     pil_to_tensor, resize_long_side, write_files)
from .inference import stylize_tensor
from .losses import perceptual_loss
from .presets import OBJECTIVES, AdaptSettings

# The crops `metastyle adapt` reports its loss before/after on: the first batches its steps
# draw. Four, not the benchmark's eight: at eight the two reports took a third of a 10-step
# adapt of the encoder-decoder on 2 cores (experiments/LOG.md, 2026-12-01).
REPORT_CROPS = 4
PREVIEW_SIZE = 384  # long side of the preview image


def adapt_style_file(style_path, base_path, contents: list, settings: AdaptSettings, *,
                     on_step: Callable[[int, float], None] | None = None
                     ) -> tuple[AdaptResult, dict]:
    """Adapt the generator at ``base_path`` to the image at ``style_path`` with ``settings``.

    Uses the base's own loss, encoder and training resolution (read from its metadata), so
    adaptation matches what the init was meta-trained for; the settings' style and colour
    weights replace the base's. Returns the result and the provenance a model file records.
    """
    style_img = load_image(style_path)  # validate the user's file before any heavy work
    base, meta = load_generator(base_path)
    train_cfg = meta.get("config", {})
    data = train_cfg.get("data", {})
    try:
        loss_cfg = replace(LossConfig(**meta.get("loss", train_cfg.get("loss", {}))),
                           **OBJECTIVES[settings.objective],
                           colour_weight=settings.colour_weight)
    except TypeError as exc:
        raise UserError(f"{base_path}: bad metadata: its loss settings do not fit "
                        f"({str(exc)[:80]})") from None
    if settings.style_weight is not None:
        loss_cfg = replace(loss_cfg, style_weight=settings.style_weight)
    loss_fn = perceptual_loss(loss_cfg)
    style = pil_to_tensor(resize_long_side(style_img, file_style_size(meta)))
    crop = settings.crop or data.get("crop", 96)
    stream = fresh_crops(contents, settings.batch, crop, settings.seed)
    # The loss before and after is reported on the steps' first batches (the support set) and
    # is the one the steps minimize (a training-mode model). Report and steps share one
    # FixedInputs: those batches are encoded, and their anchored reference computed, once.
    first = [stream(i) for i in range(math.ceil(REPORT_CROPS / settings.batch))]
    base = start_task(base, style)  # the encoder-decoder's k = 0: the zero-shot stylization
    targets = loss_fn.style_targets(style)
    start = frozen_copy(base)
    inputs = FixedInputs(loss_fn, start)
    before = evaluate_terms(start, loss_fn, targets, first, inputs=inputs)["total"]
    result = adapt(base, loss_fn, targets,
                   lambda step: first[step] if step < len(first) else stream(step),
                   settings.steps, settings.lr, subset=settings.subset,
                   on_step=_stop_if_not_finite(on_step, settings), inputs=inputs)
    # with no steps the model is the base, so its loss is the one just measured
    after = (evaluate_terms(result.model, loss_fn, targets, first, inputs=inputs)["total"]
             if settings.steps else before)
    if not math.isfinite(after) or not all(
            p.isfinite().all() for p in result.model.parameters()):
        raise AdaptationDiverged(f"adaptation diverged (support loss {after}, or weights not "
                                 f"finite after {settings.steps} steps at lr {settings.lr}); "
                                 "nothing was saved: try a lower --lr or fewer --steps")
    style_hash = hashlib.sha256(Path(style_path).read_bytes()).hexdigest()
    provenance = {"adapted_by": "metastyle adapt", "preset": settings.preset,
                  "steps": settings.steps, "lr": settings.lr, "batch": settings.batch,
                  "subset": settings.subset, "objective": settings.objective,
                  "crops": "fresh", "crop": crop,
                  "style_file": Path(style_path).name, "style_sha256": style_hash,
                  "seconds": round(result.seconds, 3), "support_loss_before": before,
                  "support_loss_after": after,
                  "encoder": loss_fn.encoder.name,
                  "encoder_sha256": loss_fn.encoder.weights_sha256,
                  "loss": asdict(loss_cfg), "config": train_cfg}
    return result, provenance


class AdaptationDiverged(UserError):
    """The adaptation loss or weights stopped being finite (too high a learning rate or
    weight): a clear one-line error, and no model file."""


def _stop_if_not_finite(on_step, settings: AdaptSettings):
    """An ``on_step`` that stops adaptation at the first non-finite loss, then calls ``on_step``."""

    def check(step: int, loss: float) -> None:
        if not math.isfinite(loss):
            raise AdaptationDiverged(
                f"adaptation diverged: the loss is {loss} at step {step + 1} of "
                f"{settings.steps} (lr {settings.lr}, colour weight {settings.colour_weight}); "
                "nothing was saved: try a lower --lr")
        if on_step is not None:
            on_step(step, loss)

    return check


def check_adapt_files(style_path: Path, base_path: Path, contents: list, output: Path,
                      preview: Path | None) -> None:
    """What `adapt_and_save` checks before any work: the style image decodes, the outputs have
    known suffixes, differ from every input (style, base, content photos) and from each other,
    and can be written."""
    check_model_suffix(output)
    if preview is not None:
        check_output_suffix(preview)
    load_image(style_path)
    inputs = {"style image": style_path, "base model": base_path}
    inputs |= {f"content photo {Path(p).name}": p for p in contents}
    check_outputs({"model file": output, "preview": preview}, inputs)


def adapt_and_save(style_path: Path, base_path: Path, contents: list, output: Path,
                   preview: Path | None, settings: AdaptSettings, *,
                   on_step: Callable[[int, float], None] | None = None) -> dict:
    """`metastyle adapt`: adapt, then write the delta model and a preview; returns a summary.

    Before any work: the outputs must differ from every input (the style image, the base, the
    content photos) and from each other, and be writable. Both are written or neither.
    """
    check_adapt_files(style_path, base_path, contents, output, preview)
    result, provenance = adapt_style_file(style_path, base_path, contents, settings,
                                          on_step=on_step)
    files = {Path(output): encode_delta(result.model, base_path, result.saved_names, provenance)}
    if preview is not None:
        photo = load_tensor(contents[0], PREVIEW_SIZE)
        files[Path(preview)] = encode_image(stylize_tensor(result.model, photo), preview)
    write_files(files)
    return {"seconds": result.seconds, "steps": provenance["steps"], "subset": provenance["subset"],
            "bytes": len(files[Path(output)]),
            "loss_before": provenance["support_loss_before"],
            "loss_after": provenance["support_loss_after"]}
