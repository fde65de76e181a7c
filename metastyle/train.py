"""The meta-training loop: episodes -> meta-steps, logging, held-out checks, atomic checkpoints.

A run folder holds ``config.json``, ``environment.json``, ``metrics.jsonl``, ``samples/`` and
``checkpoint.safetensors``. The checkpoint carries the init, the Meta-SGD rates, Adam's state,
the episode RNG and the loss statistics, so a run killed at any moment resumes as if never stopped.
Under torchrun the same loop runs data-parallel, one process per rank (distributed.py).
"""

from __future__ import annotations

import dataclasses
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch

from . import checkpoint, distributed
from .adaptation import adapt, cycle_batches, evaluate_terms, start_task
from .config import Config, MetaConfig, config_from_dict, config_to_dict
from .corpus import EpisodeSampler, image_paths, random_crops
from .errors import UserError
from .generator import Generator, adapt_parameter_names
from .images import save_image
from .losses import PerceptualLoss, perceptual_loss
from .meta import MetaLearner, meta_step
from .presets import recommendation_metadata
from .progress import StepBar
from .runtime import choose_device, environment, seeded_generator, set_threads, write_json
from .stages import export_stage
from .tracking import Tracker

CHECKPOINT = "checkpoint.safetensors"


class TrainingDiverged(RuntimeError):
    """The meta-loss went non-finite or grew far past its best; the last checkpoint is kept."""


def loss_provenance(config: Config, loss_fn: PerceptualLoss) -> dict:
    """What every model file records about the loss it was trained with."""
    return {"encoder": loss_fn.encoder.name, "encoder_sha256": loss_fn.encoder.weights_sha256,
            "loss": config_to_dict(config)["loss"]}


@dataclass
class HeldOutCheck:
    """Fixed held-out styles and crops: the same yardstick at every check of a run."""

    styles: list[torch.Tensor]
    support: torch.Tensor
    query: torch.Tensor

    @classmethod
    def build(cls, config: Config, sampler: EpisodeSampler,
              device: torch.device) -> "HeldOutCheck | None":
        if config.data.eval_styles <= 0:
            return None
        styles = image_paths(config.data, "style", "heldout")
        contents = image_paths(config.data, "content", "heldout")
        stride = max(1, len(styles) // config.data.eval_styles)
        chosen = styles[::stride][:config.data.eval_styles]
        gen = seeded_generator(config.train.seed + 1)
        support, used = random_crops(contents, config.adapt.batch * 2, config.data.crop, gen)
        query, _ = random_crops(contents, 4, config.data.crop, gen, exclude=used)
        return cls([sampler.load_style(p).to(device) for p in chosen], support.to(device),
                   query.to(device))

    def run(self, model, loss_fn, config: Config) -> tuple[dict, torch.Tensor]:
        """Adapt to each style for ``adapt.steps``; mean query loss before/after + a sample row."""
        a = config.adapt
        before = after = 0.0
        outputs = []
        for style in self.styles:
            targets = loss_fn.style_targets(style)
            start = start_task(model, style)
            before += evaluate_terms(start, loss_fn, targets, self.query)["total"]
            adapted = adapt(start, loss_fn, targets, cycle_batches(self.support, a.batch),
                            a.steps, a.lr, subset=a.subset).model
            after += evaluate_terms(adapted, loss_fn, targets, self.query)["total"]
            with torch.no_grad():
                outputs.append(adapted(self.query[:2]))
        n = len(self.styles)
        return {"heldout_k0": before / n, f"heldout_k{a.steps}": after / n}, torch.cat(outputs)


def build_model(config: Config, source: Path | None = None,
                meta: dict | None = None) -> torch.nn.Module:
    """The untrained generator a run of ``config`` trains. An encoder-decoder file sets its kind
    and size (``source``, with its metadata ``meta``: the run's init, or on resume and export the
    run's own checkpoint, which records the generator) and the generator runs on the loss's
    frozen encoder, at the AdaIN strength the file records (meta-training adapts at the strength
    the product stylizes at); otherwise it is the Johnson network of the [generator] table."""
    if meta is None or meta["generator"].get("kind") != "stylenet":
        return Generator(config.generator)
    if meta["generator"].get("student_width"):
        # its outer steps would move the student with no term holding it to the frozen encoder
        raise UserError(f"{source}: a distilled model (student encoder) cannot be meta- or "
                        f"joint-trained; train the model it was distilled from")
    encoder = perceptual_loss(config.loss, config.train.seed).encoder
    return checkpoint.build_generator(source, meta, encoder)


def meta_parameter_groups(learner: MetaLearner, m: MetaConfig) -> list[dict]:
    """The outer optimizer's groups: the init at ``meta_lr``, the Meta-SGD log-rates in a group
    of their own at ``rate_lr`` when it is set (one group otherwise, as runs from before it)."""
    if not (m.rate_lr and learner.log_rates):
        return [{"params": list(learner.parameters())}]
    return [{"params": list(learner.model.parameters())},
            {"params": list(learner.log_rates.parameters()), "lr": m.rate_lr}]


class RunState:
    """Everything a checkpoint must restore. ``source`` / ``meta``: the file that sets the
    generator's kind, as in `build_model`."""

    def __init__(self, config: Config, source: Path | None = None, meta: dict | None = None):
        self.config = config
        torch.manual_seed(config.train.seed)  # only parameter init draws from the global RNG
        model = build_model(config, source, meta)
        m = config.meta
        self.learner = MetaLearner(model, adapt_parameter_names(model, m.subset), m.inner_lr,
                                   m.meta_sgd)
        self.optimizer = torch.optim.Adam(meta_parameter_groups(self.learner, m), lr=m.meta_lr)
        self.episode_rng = seeded_generator(config.train.seed)
        # a torchrun run's checkpoint: one generator state per episode slot, and its world size
        self.slot_rng: torch.Tensor | None = None
        self.world_size: int | None = None
        self.step = 0
        self.loss_ema: float | None = None
        self.best_ema = math.inf

    def save(self, path: Path, extra_meta: dict, episode_rng_state: torch.Tensor) -> None:
        """``episode_rng_state``: the episode generator's state after the last *consumed*
        meta-batch (a prefetched batch has already moved the live generator on)."""
        checkpoint.write_training(
            path, self.learner.model.state_dict(), dict(self.learner.log_rates.items()),
            self.optimizer.state_dict(), episode_rng_state,
            {"step": self.step, "config": config_to_dict(self.config),
             **checkpoint.generator_metadata(self.learner.model), "loss_ema": self.loss_ema,
             "best_ema": self.best_ema, **extra_meta})

    @classmethod
    def load(cls, path: Path) -> "RunState":
        saved = checkpoint.read_training(path)
        meta = saved.meta
        state = cls(config_from_dict(meta["config"]), path, meta)
        state.learner.model.load_state_dict(saved.model)
        for name, value in saved.log_rates.items():
            state.learner.log_rates[name].data.copy_(value)
        state.optimizer.load_state_dict(saved.optimizer)
        if saved.rng.dim() == 1:
            state.episode_rng.set_state(saved.rng)
        else:
            state.slot_rng = saved.rng
        state.world_size = meta.get("world_size")
        state.step, state.loss_ema, state.best_ema = meta["step"], meta["loss_ema"], meta["best_ema"]
        return state

    def check_divergence(self, loss: float) -> None:
        """Guard on growth as well as NaN: second-order MAML can climb 5 -> 1500 with no NaN."""
        if not math.isfinite(loss):
            raise TrainingDiverged(f"meta-loss became non-finite at step {self.step}")
        self.loss_ema = loss if self.loss_ema is None else 0.95 * self.loss_ema + 0.05 * loss
        if self.step >= 20:
            self.best_ema = min(self.best_ema, self.loss_ema)
            if self.loss_ema > self.config.meta.divergence_factor * self.best_ema:
                raise TrainingDiverged(f"meta-loss EMA {self.loss_ema:.3g} at step {self.step} "
                                       f"is over {self.config.meta.divergence_factor}x its best "
                                       f"{self.best_ema:.3g}")


def joint_config(config: Config) -> Config:
    """Turn a meta-training config into its joint-training control (no inner loop)."""
    m = config.meta
    return dataclasses.replace(config, meta=dataclasses.replace(
        m, inner_steps=0, meta_sgd=False, support=0, query=m.support + m.query))


def export_init(run_dir: Path, out: Path, recommend: dict | None = None,
                strength: float | None = None, style_size: int | None = None) -> None:
    """Turn a run's checkpoint into a generator file (the shippable meta-init).

    ``recommend`` (some of steps / lr / subset, chosen by the benchmark on train styles)
    becomes what `metastyle adapt` does by default with this init; the subset defaults to the
    one the run meta-trained. ``strength``: the AdaIN strength an encoder-decoder stylizes at
    by default (and adapts at), else the run's. ``style_size``: the long side (px) the file
    reads style images at, for their style code and Gram targets (`checkpoint.file_style_size`),
    else the run's; a larger painting gives larger marks.
    """
    run_dir = Path(run_dir)
    saved = checkpoint.read_training(run_dir / CHECKPOINT)
    meta = saved.meta
    if "stage" in meta:  # an encoder-decoder stage run
        return export_stage(run_dir, out, recommend, strength, style_size)
    model = build_model(config_from_dict(meta["config"]), run_dir / CHECKPOINT, meta)
    model.load_state_dict(saved.model)
    if strength is not None:
        if isinstance(model, Generator):
            raise UserError(f"{run_dir}: strength: a Johnson network has no AdaIN strength")
        model.strength = strength
    provenance = {k: meta[k] for k in ("step", "config", "encoder", "encoder_sha256", "loss",
                                       "wall_seconds") if k in meta}
    if style_size:
        data = {**provenance["config"]["data"], "style_size": style_size}
        provenance["config"] = {**provenance["config"], "data": data}
    advice = recommendation_metadata({"subset": meta["config"]["meta"]["subset"],
                                      **(recommend or {})})
    checkpoint.save_generator(out, model, {**provenance, "trained_by": "meta-train", **advice})


class EpisodeDraws:
    """Where this process's meta-batches come from: the run's one episode generator or, under
    torchrun, one generator per episode slot this rank owns (see distributed.py)."""

    def __init__(self, state: RunState, sampler: EpisodeSampler, ranks: distributed.Ranks):
        config = state.config
        self.sampler, self.support, self.query = sampler, config.meta.support, config.meta.query
        self.slotted = ranks.distributed
        if self.slotted:
            slots = ranks.slots(config.meta.meta_batch)
            self.gens = [seeded_generator(distributed.slot_seed(config.train.seed, j))
                         for j in slots]
            if state.slot_rng is not None:
                for gen, row in zip(self.gens, state.slot_rng[slots.start:slots.stop]):
                    gen.set_state(row.clone())
            self.order = self.gens
        else:
            self.gens = [state.episode_rng]
            self.order = self.gens * config.meta.meta_batch

    def draw(self) -> list:
        return [self.sampler.sample(gen, self.support, self.query) for gen in self.order]

    def rng_state(self) -> torch.Tensor:
        """The generators' state: one row per slot under torchrun."""
        if self.slotted:
            return torch.stack([gen.get_state() for gen in self.gens])
        return self.gens[0].get_state()


def meta_train(config: Config, run_dir: Path, resume: bool = False, progress: bool = True) -> Path:
    """Run (or resume) meta-training into ``run_dir``; returns the checkpoint path.

    Under torchrun every rank runs it: each trains on its own episodes, the meta-gradients are
    averaged over ranks, and rank 0 alone writes the run folder.
    """
    ranks, device = distributed.join(config.train.backend, choose_device(config.train.device))
    try:
        return _meta_train(config, Path(run_dir), resume, progress, ranks, device)
    finally:
        distributed.leave(ranks)


def _meta_train(config: Config, run_dir: Path, resume: bool, progress: bool,
                ranks: distributed.Ranks, device: torch.device) -> Path:
    ckpt = run_dir / CHECKPOINT
    if resume:
        if not ckpt.exists():
            raise UserError(f"{ckpt}: nothing to resume")
        state = RunState.load(ckpt)
        _check_world_size(ckpt, state.world_size, ranks)
        state.config = config = _resumable(state.config, config)
    else:
        if ckpt.exists():
            raise UserError(f"{run_dir}: run folder already has a checkpoint; use --resume")
        init = Path(config.meta.init) if config.meta.init else None
        state = RunState(config, init, checkpoint.read(init)[1] if init else None)
        if init:
            warm_start(state.learner.model, init)
    set_threads(distributed.threads_per_rank(config.train.threads, ranks))
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed crop sizes: cuDNN may pick its fastest kernels
    state.learner.to(device)
    # A resumed optimizer's moments were loaded beside CPU parameters; reloading its own state
    # casts them to wherever the parameters now are (torch keeps Adam's step count on the CPU).
    state.optimizer.load_state_dict(state.optimizer.state_dict())
    loss_fn = perceptual_loss(config.loss, config.train.seed).to(device)
    sampler = EpisodeSampler(image_paths(config.data, "style", "train"),
                             image_paths(config.data, "content", "train"), config.data)
    main = ranks.main  # only rank 0 writes the run folder and runs the held-out check
    check = HeldOutCheck.build(config, sampler, device) if main else None
    # the run folder is written only once the data has been found and checked
    if main:
        (run_dir / "samples").mkdir(parents=True, exist_ok=True)
        write_json(run_dir / "config.json", config_to_dict(config))
        write_json(run_dir / "environment.json", {**environment(), **ranks.describe()})
    tracker = Tracker(run_dir, config.train.wandb, config_to_dict(config)) if main else None
    if tracker:
        tracker.jsonl.truncate_after(state.step)
    meta_info = loss_provenance(config, loss_fn)
    t = config.train
    wall = _previous_wall(ckpt) if resume else 0.0
    start = time.perf_counter() - wall
    bar = StepBar("meta-train", t.steps, state.step, enabled=progress and main)
    m = config.meta
    draws = EpisodeDraws(state, sampler, ranks)
    sample_meta_batch = draws.draw

    # The next meta-batch is decoded and cropped in a thread while this one trains (on a GPU the
    # decoding would otherwise idle the device). One thread, drawing in order, so the episodes
    # are the same as without it; the checkpoint stores the generator as it was before the
    # prefetch, so a resumed run draws the prefetched batch again.
    prefetch = ThreadPoolExecutor(max_workers=1)
    pending = prefetch.submit(sample_meta_batch)
    try:
        while state.step < t.steps:
            wait_start = time.perf_counter()
            episodes = [ep.to(device) for ep in pending.result()]
            data_wait = time.perf_counter() - wait_start
            episode_rng_state = draws.rng_state()
            pending = prefetch.submit(sample_meta_batch)
            step_start = time.perf_counter()
            stats = meta_step(state.learner, state.optimizer, loss_fn, episodes, m,
                              ranks.average if ranks.distributed else None)
            state.step += 1
            state.check_divergence(stats["loss"])
            record = {"step": state.step, **stats,
                      "seconds_per_step": time.perf_counter() - step_start,
                      "data_wait_seconds": data_wait}
            if check and state.step % t.eval_every == 0:
                scores, samples = check.run(state.learner.model, loss_fn, config)
                record.update(scores)
                if state.step % t.sample_every == 0:
                    save_image(torch.cat(list(samples.cpu()), dim=-1),
                               run_dir / "samples" / f"step{state.step:06d}.jpg")
            if tracker and (state.step % t.log_every == 0 or "heldout_k0" in record):
                tracker.log(record)
            if state.step % t.checkpoint_every == 0 or state.step == t.steps:
                extra = {**meta_info, "wall_seconds": time.perf_counter() - start}
                if ranks.distributed:
                    episode_rng_state, world = _gather_ranks(state, episode_rng_state, ranks)
                    extra.update(world)
                if main:
                    state.save(ckpt, extra, episode_rng_state)
            bar.update(state.step, stats["loss"])
    finally:
        prefetch.shutdown(cancel_futures=True)
        bar.close()
        if tracker:
            tracker.close()
    return ckpt


def _gather_ranks(state: RunState, rng_state: torch.Tensor,
                  ranks: distributed.Ranks) -> tuple[torch.Tensor | None, dict]:
    """Every rank's slot generators and a hash of its weights, on rank 0: the checkpoint's RNG
    (slot order) and metadata. Ranks that no longer hold identical weights stop the run before
    the checkpoint is written."""
    weights = {**state.learner.model.state_dict(),
               **{f"log_rate/{k}": v for k, v in state.learner.log_rates.items()}}
    gathered = ranks.gather((rng_state, checkpoint.weights_hash(weights)))
    if not ranks.main:
        return None, {}
    hashes = [h for _, h in gathered]
    if len(set(hashes)) > 1:
        raise RuntimeError(f"ranks hold different weights at step {state.step} "
                           f"({', '.join(h[:12] for h in hashes)}); checkpoint not written")
    return torch.cat([rng for rng, _ in gathered]), {
        **ranks.describe(), "episode_slots": len(hashes) * state.config.meta.meta_batch,
        "weights_sha256_by_rank": hashes}


def _check_world_size(ckpt: Path, saved: int | None, ranks: distributed.Ranks) -> None:
    """A run resumes only as the same job shape it was trained in: its episode slots and RNG
    states belong to its ranks."""
    now = ranks.world_size if ranks.distributed else None

    def job(n):
        return "a single process (no torchrun)" if n is None else f"{n} torchrun rank(s)"

    if saved != now:
        raise UserError(f"{ckpt}: --resume: the run was trained by {job(saved)}, this job is "
                        f"{job(now)}; resume it with the same number of ranks")


def warm_start(model: torch.nn.Module, path: Path) -> None:
    """Start a run from an existing generator (e.g. a shorter run's init) instead of random
    weights; the Meta-SGD rates and Adam state start fresh, so a new recipe can take over."""
    source, meta = checkpoint.load_generator(path)
    if meta["generator"] != model.config.to_dict():
        raise UserError(f"{path}: generator {meta['generator']} does not match the config's "
                        f"{model.config.to_dict()}")
    model.load_state_dict(source.state_dict())


def _resumable(saved: Config, requested: Config) -> Config:
    """On resume only the [train] section (step budget, cadence) and the loss's compute
    precision may differ from the run's."""
    old, new = config_to_dict(saved), config_to_dict(requested)
    old["loss"]["precision"] = new["loss"]["precision"]
    changed = [k for k in old if k != "train" and old[k] != new[k]]
    if changed:
        raise UserError(f"--resume: config section(s) {changed} differ from the run's; "
                        "only [train] may change")
    return requested


def _previous_wall(ckpt: Path) -> float:
    return checkpoint.read(ckpt)[1].get("wall_seconds", 0.0)
