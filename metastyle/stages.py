"""Training stages of the encoder-decoder generator (stylenet.py), before meta-training.

- ``autoencoder``: the decoder learns to invert the frozen encoder (pixel + feature terms). In
  the probe that started this design (2026-12-01), a decoder trained with style losses from its
  first step gave one texture for every style; one that could already reconstruct photos
  learned to follow the style code.
- ``joint``: every step draws a train style per crop and trains the decoder so that its AdaIN
  output matches the style's statistics and the re-normalized content features (Huang &
  Belongie 2017). The result is the zero-shot model and the joint control for meta-training.

A run folder holds ``config.json``, ``metrics.jsonl``, ``samples/`` and
``checkpoint.safetensors`` (weights, Adam, data RNG, step), so a killed stage resumes exactly.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import checkpoint
from .config import DataConfig, TrainConfig, config_to_dict
from .corpus import image_paths, random_crops
from .encoders import load_encoder
from .errors import UserError
from .images import load_tensor, save_image
from .losses import relative_error
from .progress import StepBar
from .runtime import environment, seeded_generator, set_threads, write_json
from .stylenet import StyleNet, StyleNetConfig, channel_stats, instance_normalized
from .tracking import Tracker

STAGES = ("autoencoder", "joint")
CHECKPOINT = "checkpoint.safetensors"


@dataclass
class StageLoss:
    encoder: str = "vgg16-hed"
    precision: str = "float32"  # bfloat16 pays only on CPUs with AVX-512 bf16 (see encoders.py)
    pixel_weight: float = 1.0  # autoencoder: mean squared pixel error
    feature_weight: float = 1.0  # autoencoder: relative feature error, mean over the layers
    content_weight: float = 1.0  # joint: relative error to the AdaIN target at the depth
    style_weight: float = 10.0  # joint: relative mean/std errors, mean over the layers
    # joint: relative error between the instance-normalized features of the output and of the
    # photo (the photo's layout with every style statistic removed), mean over structure_layers.
    # The AdaIN content term sits at relu4_1 only, and without this term the photo's edges fade
    # as training goes on (experiments/LOG.md, 2026-12-02).
    structure_weight: float = 0.5
    structure_layers: list[str] = field(default_factory=lambda: ["relu2_1", "relu3_1"])
    layers: list[str] = field(default_factory=lambda: ["relu1_1", "relu2_1", "relu3_1", "relu4_1"])


@dataclass
class StageConfig:
    stage: str = "autoencoder"
    init: str = ""  # a stage checkpoint to start from (the previous stage); "" = random decoder
    lr: float = 5e-4
    batch: int = 4
    generator: StyleNetConfig = field(default_factory=StyleNetConfig)
    loss: StageLoss = field(default_factory=StageLoss)
    data: DataConfig = field(default_factory=lambda: DataConfig(crop=128, style_size=256))
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        steps=3000, log_every=10, checkpoint_every=50, sample_every=250))


class StyleTargets:
    """Per-layer channel statistics of train styles, computed once per style and kept, so a
    step decodes and encodes no style image it has seen before (a few KB per style)."""

    def __init__(self, encoder, layers: list[str], style_size: int):
        self.encoder, self.layers, self.style_size = encoder, layers, style_size
        self.cache: dict[Path, dict[str, tuple[torch.Tensor, torch.Tensor]]] = {}

    @torch.no_grad()
    def __call__(self, path: Path) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        if path not in self.cache:
            feats = self.encoder(load_tensor(path, self.style_size), self.layers)
            self.cache[path] = {n: channel_stats(f) for n, f in feats.items()}
        return self.cache[path]


def stage_losses(model: StyleNet, config: StageConfig, photos: torch.Tensor,
                 styles: list[dict] | None) -> dict[str, torch.Tensor]:
    """Named loss terms plus ``total`` for one batch (``styles``: per photo, the per-layer
    ``(mean, std)`` of its style, from ``StyleTargets``; joint stage only)."""
    w = config.loss
    enc = model.encoder
    if config.stage == "autoencoder":
        out = model.reconstruct(photos)
        target = enc(photos, w.layers)
        got = enc(out, w.layers)
        terms = {f"feature/{n}": relative_error(got[n], target[n]) for n in w.layers}
        terms["feature"] = sum(terms.values()) / len(w.layers)
        terms["pixel"] = (out - photos).pow(2).mean()
        terms["total"] = w.pixel_weight * terms["pixel"] + w.feature_weight * terms["feature"]
        return terms
    depth = model.config.depth

    def stacked(name: str) -> tuple[torch.Tensor, torch.Tensor]:
        return (torch.cat([s[name][0] for s in styles]), torch.cat([s[name][1] for s in styles]))

    structure = w.structure_layers if w.structure_weight else []
    with torch.no_grad():
        photo = enc(photos, {*model.config.layers, *structure})
        target = model.transform({n: photo[n] for n in model.config.layers},
                                 {n: stacked(n) for n in model.config.layers})
    out = model.decode(target)
    got = enc(out, {*w.layers, *structure})
    terms = {"content": relative_error(got[depth], target[depth])}
    for name in w.layers:
        want_mean, want_std = stacked(name)
        got_mean, got_std = channel_stats(got[name])
        terms[f"style/{name}"] = (relative_error(got_mean, want_mean)
                                  + relative_error(got_std, want_std))
    terms["style"] = sum(terms[f"style/{n}"] for n in w.layers) / len(w.layers)
    terms["total"] = w.content_weight * terms["content"] + w.style_weight * terms["style"]
    if structure:
        terms["structure"] = sum(relative_error(instance_normalized(got[n]),
                                                instance_normalized(photo[n]))
                                 for n in structure) / len(structure)
        terms["total"] = terms["total"] + w.structure_weight * terms["structure"]
    return terms


class StageRun:
    """Model, optimizer, data RNG and step: everything a checkpoint restores."""

    def __init__(self, config: StageConfig):
        if config.stage not in STAGES:
            raise UserError(f"config key stage: {config.stage!r} is not one of {', '.join(STAGES)}")
        self.config = config
        torch.manual_seed(config.train.seed)
        encoder = load_encoder(config.loss.encoder, config.train.seed, config.loss.precision)
        self.model = StyleNet(config.generator, encoder)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr)
        self.data_rng = seeded_generator(config.train.seed)
        self.step = 0

    def save(self, path: Path, extra: dict) -> None:
        checkpoint.write_training(path, self.model.state_dict(), {},
                                  self.optimizer.state_dict(), self.data_rng.get_state(), {
            "stage": self.config.stage, "step": self.step,
            "config": config_to_dict(self.config), "generator": self.config.generator.to_dict(),
            "encoder": self.model.encoder.name, "encoder_sha256": self.model.encoder.weights_sha256,
            **extra})

    def load_weights(self, path: Path) -> None:
        """Start from a stage checkpoint or an exported generator file of the same shape."""
        tensors, meta = checkpoint.read(path)
        if meta.get("generator") != self.config.generator.to_dict():
            raise UserError(f"{path}: generator {meta.get('generator')} does not match the "
                            f"config's {self.config.generator.to_dict()}")
        self.model.load_state_dict(checkpoint.generator_weights(tensors))

    def resume(self, path: Path) -> float:
        """Restore a killed run; returns its wall seconds so far."""
        state = checkpoint.read_training(path)
        self.load_weights(path)
        self.optimizer.load_state_dict(state.optimizer)
        self.data_rng.set_state(state.rng)
        self.step = state.meta["step"]
        return state.meta.get("wall_seconds", 0.0)


def train_stage(config: StageConfig, run_dir: Path, resume: bool = False,
                progress: bool = True) -> Path:
    """Run (or resume) one stage into ``run_dir``; returns the checkpoint path."""
    run_dir = Path(run_dir)
    ckpt = run_dir / CHECKPOINT
    if not resume and ckpt.exists():
        raise UserError(f"{run_dir}: run folder already has a checkpoint; use --resume")
    set_threads(config.train.threads)
    contents = image_paths(config.data, "content", "train")
    styles = image_paths(config.data, "style", "train") if config.stage == "joint" else []
    run = StageRun(config)
    wall = 0.0
    if resume:
        if not ckpt.exists():
            raise UserError(f"{ckpt}: nothing to resume")
        wall = run.resume(ckpt)
    elif config.init:
        run.load_weights(Path(config.init))
    (run_dir / "samples").mkdir(parents=True, exist_ok=True)
    write_json(run_dir / "config.json", config_to_dict(config))
    write_json(run_dir / "environment.json", environment())
    tracker = Tracker(run_dir, config.train.wandb, config_to_dict(config))
    tracker.jsonl.truncate_after(run.step)
    style_targets = StyleTargets(run.model.encoder,
                                 sorted({*config.loss.layers, *config.generator.layers}),
                                 config.data.style_size)
    watch = load_tensor(image_paths(config.data, "content", "heldout")[0], 256)
    watch_style = (load_tensor(image_paths(config.data, "style", "heldout")[0],
                               config.data.style_size) if styles else None)
    t = config.train
    start = time.perf_counter() - wall
    bar = StepBar(f"stage {config.stage}", t.steps, run.step, enabled=progress)
    try:
        while run.step < t.steps:
            step_start = time.perf_counter()
            photos, _ = random_crops(contents, config.batch, config.data.crop, run.data_rng)
            batch_styles = None
            if styles:
                picks = torch.randint(len(styles), (config.batch,), generator=run.data_rng)
                batch_styles = [style_targets(styles[i]) for i in picks.tolist()]
            terms = stage_losses(run.model, config, photos, batch_styles)
            run.optimizer.zero_grad(set_to_none=True)
            terms["total"].backward()
            run.optimizer.step()
            run.step += 1
            loss = terms["total"].item()
            if not torch.isfinite(terms["total"]):
                raise UserError(f"stage {config.stage}: loss became non-finite at step {run.step}")
            if run.step % t.log_every == 0:
                tracker.log({"step": run.step, **{k: v.item() for k, v in terms.items()},
                             "seconds_per_step": time.perf_counter() - step_start})
            if run.step % t.sample_every == 0 or run.step == t.steps:
                with torch.no_grad():
                    shown = (run.model.reconstruct(watch) if watch_style is None else
                             run.model.stylize(watch, run.model.style_code_of(watch_style)))
                save_image(torch.cat([watch[0], shown[0]], dim=-1),
                           run_dir / "samples" / f"step{run.step:06d}.jpg")
            if run.step % t.checkpoint_every == 0 or run.step == t.steps:
                run.save(ckpt, {"wall_seconds": time.perf_counter() - start})
            bar.update(run.step, loss)
    finally:
        bar.close()
        tracker.close()
    return ckpt



def export_stage(run_dir: Path, out: Path, recommend: dict | None = None,
                 strength: float | None = None, style_size: int | None = None) -> None:
    """Turn a stage checkpoint into a generator file that `metastyle adapt` and `stylize
    --style` start from. Adaptation refines it under the perceptual loss of ``LossConfig``
    (the stage's own loss is kept as ``stage_loss``); ``recommend``, ``strength`` and
    ``style_size`` as in `train.export_init`.
    Weights are stored in float16: half the file of a model that ships in git, outputs within
    0.001 of float32 (max over a 256 px photo, measured 2026-12-01)."""
    from .config import LossConfig
    from .presets import recommendation_metadata

    state = checkpoint.read_training(Path(run_dir) / CHECKPOINT)
    meta, config = state.meta, state.meta["config"]
    encoder = load_encoder(config["loss"]["encoder"], 0, config["loss"]["precision"])
    model = StyleNet(StyleNetConfig(**config["generator"]), encoder)
    model.load_state_dict(state.model)
    if strength is not None:
        model.strength = strength
    data = {"crop": config["data"]["crop"],
            "style_size": style_size or config["data"]["style_size"]}
    checkpoint.save_generator(out, model, {
        "trained_by": f"stage {meta['stage']}", "step": meta["step"],
        "wall_seconds": meta.get("wall_seconds"), "encoder": meta["encoder"],
        "encoder_sha256": meta["encoder_sha256"],
        "loss": config_to_dict(LossConfig(encoder=meta["encoder"],
                                          precision=config["loss"]["precision"])),
        "stage_loss": config["loss"], "config": {"data": data},
        **recommendation_metadata({"subset": "norm", **(recommend or {})})}, torch.float16)
