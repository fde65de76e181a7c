"""Training stages of the encoder-decoder generator (stylenet.py), before meta-training.

- ``autoencoder``: the decoder learns to invert the frozen encoder (pixel + feature terms). In
  the probe that started this design (2026-12-01), a decoder trained with style losses from its
  first step gave one texture for every style; one that could already reconstruct photos
  learned to follow the style code.
- ``joint``: every step draws a train style per crop and trains the decoder so that its AdaIN
  output matches the style's statistics and the re-normalized content features (Huang &
  Belongie 2017). The result is the zero-shot model and the joint control for meta-training.
- ``distill``: a fast model (a student encoder, student.py, and a narrower decoder) learns to
  give a teacher model file's outputs for train photos and styles (output distillation), with
  the student's features held to the frozen encoder's so that its style code means what the
  teacher's does.

A run folder holds ``config.json``, ``metrics.jsonl``, ``samples/`` and
``checkpoint.safetensors`` (weights, Adam, data RNG, step), so a killed stage resumes exactly.
A distill run's checkpoint names its teacher (file, weights hash and strength) but does not hold it.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import checkpoint
from .config import DataConfig, TrainConfig, config_to_dict
from .corpus import image_paths, random_crops
from .encoders import Encoder, load_encoder
from .errors import UserError
from .images import load_image, load_tensor, pil_to_tensor, resize_long_side, save_image
from .losses import relative_error
from .progress import StepBar
from .runtime import environment, seeded_generator, set_threads, write_json
from .stylenet import (StyleNet, StyleNetConfig, channel_stats, grown_weights,
                       instance_normalized)
from .tracking import Tracker

STAGES = ("autoencoder", "joint", "distill")
CHECKPOINT = "checkpoint.safetensors"
# The AdaIN strengths a distill step draws from, uniformly: the product stylizes at the model
# file's strength (1.0 shipped) or one a user picks, so the student learns the teacher's blend
# of photo and style over the range in use, not only at full strength.
DISTILL_STRENGTHS = (0.5, 1.0)


@dataclass
class StageLoss:
    encoder: str = "vgg16-hed"
    precision: str = "float32"  # bfloat16 pays only on CPUs with AVX-512 bf16 (see encoders.py)
    # autoencoder: mean squared pixel error. distill: mean absolute error to the teacher's
    # output, whose gradient does not fade as the student comes close.
    pixel_weight: float = 1.0
    # relative feature error (to the photo's; distill: to the teacher output's), mean over layers
    feature_weight: float = 1.0
    content_weight: float = 1.0  # joint: relative error to the AdaIN target at the depth
    style_weight: float = 10.0  # joint: relative mean/std errors, mean over the layers
    # joint: relative error between the instance-normalized features of the output and of the
    # photo (the photo's layout with every style statistic removed), mean over structure_layers.
    # The AdaIN content term sits at relu4_1 only, and without this term the photo's edges fade
    # as training goes on (experiments/LOG.md, 2026-12-02).
    structure_weight: float = 0.5
    structure_layers: list[str] = field(default_factory=lambda: ["relu2_1", "relu3_1"])
    # distill: relative error of the student's lifted features to the frozen encoder's, at the
    # generator's layers, mean over them. The decoder reads the student's features as the
    # frozen encoder's, and a style code means the same to both only while the two agree.
    lift_weight: float = 1.0
    layers: list[str] = field(default_factory=lambda: ["relu1_1", "relu2_1", "relu3_1", "relu4_1"])


@dataclass
class StageConfig:
    stage: str = "autoencoder"
    init: str = ""  # a stage checkpoint to start from (the previous stage); "" = random decoder
    # the init has fewer skips than the generator: grow it (stylenet.grown_weights)
    init_grows: bool = False
    # distill: the model file whose outputs the student learns to give
    teacher: str = "metastyle/weights/stylenet.safetensors"
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


def batch_codes(codes: list[dict[str, tuple[torch.Tensor, torch.Tensor]]]
                ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per-image codes (each layer's (1, C) mean and std) -> one code with a row per image."""
    return {n: (torch.cat([c[n][0] for c in codes]), torch.cat([c[n][1] for c in codes]))
            for n in codes[0]}


def feature_terms(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor],
                  layers: list[str]) -> dict[str, torch.Tensor]:
    """``feature/<layer>``: the relative error of ``got``'s features to ``want``'s at each layer,
    and ``feature``: their mean (the autoencoder's and the distill stage's term)."""
    terms = {f"feature/{n}": relative_error(got[n], want[n]) for n in layers}
    terms["feature"] = sum(terms.values()) / len(layers)
    return terms


def stage_losses(model: StyleNet, config: StageConfig, photos: torch.Tensor,
                 styles: list[dict] | None) -> dict[str, torch.Tensor]:
    """Named loss terms plus ``total`` for one batch (``styles``: per photo, the per-layer
    ``(mean, std)`` of its style, from ``StyleTargets``; joint stage only)."""
    w = config.loss
    enc = model.encoder
    if config.stage == "autoencoder":
        out = model.reconstruct(photos)
        target = enc(photos, w.layers)
        terms = feature_terms(enc(out, w.layers), target, w.layers)
        terms["pixel"] = (out - photos).pow(2).mean()
        terms["total"] = w.pixel_weight * terms["pixel"] + w.feature_weight * terms["feature"]
        return terms
    depth = model.config.depth
    wanted = batch_codes(styles)
    structure = w.structure_layers if w.structure_weight else []
    with torch.no_grad():
        photo = enc(photos, {*model.config.layers, *structure})
        target = model.transform({n: photo[n] for n in model.config.layers}, wanted)
    out = model.decode(target)
    got = enc(out, {*w.layers, *structure})
    terms = {"content": relative_error(got[depth], target[depth])}
    for name in w.layers:
        want_mean, want_std = wanted[name]
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


class Teacher:
    """The distill stage's model file, frozen, and the loss that holds a student to it.

    Its style codes are computed once per train style and kept (`StyleTargets`). The student
    encodes the style images anew at every step (it trains), so each is decoded and resized once
    and kept as 8-bit pixels: about 0.15 MB at 256 px, where float ones would take 0.5 GB for
    the 900 train styles. A checkpoint records the teacher's weights hash, never its weights.
    """

    def __init__(self, path: Path, encoder: Encoder, config: StageConfig):
        self.path = path
        self.model, meta = checkpoint.load_generator(path, encoder)
        if not isinstance(self.model, StyleNet):
            raise UserError(f"{path}: a teacher must be an encoder-decoder model, not a "
                            f"{meta['generator'].get('kind', 'johnson')} generator")
        # The lift term holds the student to the teacher's trunk as the frozen encoder, and
        # compares the two models' features layer by layer on equally padded photos.
        if self.model.student is not None:
            raise UserError(f"{path}: a teacher must encode with the frozen encoder, not be a "
                            f"distilled model itself")
        if self.model.config.layers != config.generator.layers:
            raise UserError(f"{path}: the teacher transforms {list(self.model.config.layers)}, "
                            f"the student's config {list(config.generator.layers)}; distill "
                            f"with the teacher's depth and skips")
        # the codes the product gives are those of the style size the teacher's file reads
        style_size = checkpoint.file_style_size(meta)
        if config.data.style_size != style_size:
            raise UserError(f"{path}: the teacher reads style images at {style_size} px, the "
                            f"config's data.style_size is {config.data.style_size}; distill at "
                            f"the teacher's")
        self.strength = checkpoint.file_strength(meta)  # the student's file takes it over
        self.model.requires_grad_(False)
        self.weights_hash = checkpoint.weights_hash(self.model.state_dict())
        self.codes = StyleTargets(self.model.trunk, self.model.config.layers, style_size)
        self.style_images = functools.cache(
            lambda style: resize_long_side(load_image(style), style_size))

    @property
    def provenance(self) -> dict:
        return {"file": str(self.path), "weights_hash": self.weights_hash,
                "strength": self.strength}

    def losses(self, student: StyleNet, w: StageLoss, photos: torch.Tensor, styles: list[Path],
               strength: float) -> dict[str, torch.Tensor]:
        """Named loss terms plus ``total`` for one batch (``styles``: per photo, its train
        style's path), both models at AdaIN ``strength``. The outputs compared are the
        decoders': the palette maps each output from its own colour statistics to the same
        painting's, so a student that matches the decoder matches it after the palette too."""
        enc = student.encoder  # the frozen encoder (the teacher's too): the loss network
        student.strength = self.model.strength = strength
        with torch.no_grad():
            want, photo_features = self.model.stylize_with_features(
                photos, batch_codes([self.codes(p) for p in styles]))
            want_features = enc(want, w.layers)
        codes = batch_codes([
            {n: channel_stats(f) for n, f in student.encode(self.style_image(p)).items()}
            for p in styles])
        got, lifted = student.stylize_with_features(photos, codes)
        got_features = enc(got, w.layers)
        terms = feature_terms(got_features, want_features, w.layers)
        for name, f in lifted.items():
            terms[f"lift/{name}"] = relative_error(f, photo_features[name])
        terms["lift"] = sum(terms[f"lift/{n}"] for n in lifted) / len(lifted)
        terms["pixel"] = (got - want).abs().mean()
        terms["total"] = (w.pixel_weight * terms["pixel"] + w.feature_weight * terms["feature"]
                          + w.lift_weight * terms["lift"])
        return terms

    def style_image(self, path: Path) -> torch.Tensor:
        return pil_to_tensor(self.style_images(path))

    @torch.no_grad()
    def outputs(self, student: StyleNet, photo: torch.Tensor,
                style: torch.Tensor) -> list[torch.Tensor]:
        """The teacher's and the student's stylization of ``photo`` in ``style`` (each with
        its own code of it) at full strength: a sample's row."""
        student.strength = self.model.strength = 1.0
        return [m.stylize(photo, m.style_code_of(style)) for m in (self.model, student)]


class StageRun:
    """Model, optimizer, data RNG and step: everything a checkpoint restores. A distill run's
    teacher comes from the file its config names (`Teacher`), never from the checkpoint."""

    def __init__(self, config: StageConfig):
        if config.stage not in STAGES:
            raise UserError(f"config key stage: {config.stage!r} is not one of {', '.join(STAGES)}")
        if config.generator.student_width and config.stage != "distill":
            raise UserError(f"config key generator.student_width: only the distill stage trains "
                            f"a student encoder, not the {config.stage} stage")
        self.config = config
        torch.manual_seed(config.train.seed)
        # the frozen encoder: every stage's loss network, and the one the generator is made for
        self.encoder = load_encoder(config.loss.encoder, config.train.seed, config.loss.precision)
        self.model = StyleNet(config.generator, self.encoder)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr)
        self.data_rng = seeded_generator(config.train.seed)
        self.step = 0
        self.teacher = (Teacher(Path(config.teacher), self.encoder, config)
                        if config.stage == "distill" else None)

    def save(self, path: Path, extra: dict) -> None:
        teacher = {"teacher": self.teacher.provenance} if self.teacher else {}
        checkpoint.write_training(path, self.model.state_dict(), {},
                                  self.optimizer.state_dict(), self.data_rng.get_state(), {
            "stage": self.config.stage, "step": self.step,
            "config": config_to_dict(self.config), "generator": self.config.generator.to_dict(),
            "encoder": self.encoder.name, "encoder_sha256": self.encoder.weights_sha256,
            **teacher, **extra})

    def load_weights(self, path: Path, grow: bool = False) -> None:
        """Start from a stage checkpoint or an exported generator file of the same shape, or
        with ``grow`` (the config's ``init_grows``) from one with fewer skips
        (stylenet.grown_weights)."""
        tensors, meta = checkpoint.read(path)
        weights = checkpoint.generator_weights(tensors)
        if grow and meta.get("generator", {}).get("kind") == "stylenet":
            spec = {k: v for k, v in meta["generator"].items() if k != "kind"}
            try:
                weights = grown_weights(weights, StyleNetConfig(**spec), self.config.generator)
            except ValueError as exc:
                raise UserError(f"{path}: {exc}") from None
        elif meta.get("generator") != self.config.generator.to_dict():
            raise UserError(f"{path}: generator {meta.get('generator')} does not match the "
                            f"config's {self.config.generator.to_dict()}")
        self.model.load_state_dict(weights)

    def resume(self, path: Path) -> float:
        """Restore a killed run; returns its wall seconds so far."""
        state = checkpoint.read_training(path)
        taught_by = state.meta.get("teacher", {}).get("weights_hash")
        if self.teacher and taught_by is None:
            raise UserError(f"{path}: not a distill run's checkpoint")
        if self.teacher and taught_by != self.teacher.weights_hash:
            raise UserError(f"{self.teacher.path}: not the teacher this run started with "
                            f"(other weights); resume with that one")
        self.load_weights(path)
        self.optimizer.load_state_dict(state.optimizer)
        # the config's rate is the one in force, so resuming with `--set lr=...` lowers the rate
        # of a run that plateaus (a step decay by hand); Adam's moments carry over
        for group in self.optimizer.param_groups:
            group["lr"] = self.config.lr
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
    styles = (image_paths(config.data, "style", "train")
              if config.stage in ("joint", "distill") else [])
    run = StageRun(config)
    wall = 0.0
    if resume:
        if not ckpt.exists():
            raise UserError(f"{ckpt}: nothing to resume")
        wall = run.resume(ckpt)
    elif config.init:
        run.load_weights(Path(config.init), config.init_grows)
    (run_dir / "samples").mkdir(parents=True, exist_ok=True)
    write_json(run_dir / "config.json", config_to_dict(config))
    write_json(run_dir / "environment.json", environment())
    tracker = Tracker(run_dir, config.train.wandb, config_to_dict(config))
    tracker.jsonl.truncate_after(run.step)
    style_targets = (StyleTargets(run.encoder,
                                  sorted({*config.loss.layers, *config.generator.layers}),
                                  config.data.style_size) if config.stage == "joint" else None)
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
            picks = (torch.randint(len(styles), (config.batch,), generator=run.data_rng).tolist()
                     if styles else [])
            if run.teacher is None:
                terms = stage_losses(run.model, config, photos,
                                     [style_targets(styles[i]) for i in picks] or None)
            else:
                strength = torch.empty(()).uniform_(*DISTILL_STRENGTHS, generator=run.data_rng)
                terms = run.teacher.losses(run.model, config.loss, photos,
                                           [styles[i] for i in picks], strength.item())
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
                    if run.teacher is not None:
                        shown = run.teacher.outputs(run.model, watch, watch_style)
                    elif watch_style is None:
                        shown = [run.model.reconstruct(watch)]
                    else:
                        shown = [run.model.stylize(watch, run.model.style_code_of(watch_style))]
                save_image(torch.cat([watch[0], *(s[0] for s in shown)], dim=-1),
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
    ``style_size`` as in `train.export_init`. A distill run's file records its student (the
    generator's ``student_width``; its weights are the file's) and its ``teacher``, whose
    strength it stylizes at unless ``strength`` says otherwise.
    Weights are stored in float16: half the file of a model that ships in git, outputs within
    0.001 of float32 (max over a 256 px photo, measured 2026-12-01)."""
    from .config import LossConfig
    from .presets import recommendation_metadata

    state = checkpoint.read_training(Path(run_dir) / CHECKPOINT)
    meta, config = state.meta, state.meta["config"]
    encoder = load_encoder(config["loss"]["encoder"], 0, config["loss"]["precision"])
    model = StyleNet(StyleNetConfig(**config["generator"]), encoder)
    model.load_state_dict(state.model)
    if strength is None:
        strength = meta.get("teacher", {}).get("strength")
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
        **({"teacher": meta["teacher"]} if "teacher" in meta else {}),
        **recommendation_metadata({"subset": "norm", **(recommend or {})})}, torch.float16)
