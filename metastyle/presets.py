"""Adaptation settings: resolved once, then passed down as one `AdaptSettings`.

`metastyle adapt`, `metastyle.adapt(...)` and the service each take a few loose options from
their user; `resolve_settings` turns them into one object (explicit values over the preset's over
the base's recommendation), and everything below works from that object alone.

The base's recommendation lives in its metadata (``adapt_steps``, ``adapt_lr``,
``adapt_subset``), written by `metastyle export-init` from the benchmark's choice.
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import AdaptConfig
from .errors import UserError
from .generator import ADAPT_SUBSETS
from .limits import ADAPT, OBJECTIVE_NAMES, PRESET_NAMES, check_all

# Named starting points for `metastyle adapt --preset`; explicit options override them.
# fast: the base's own recommendation (what its selection chose; a style code + affines file).
# quality: every parameter, 400 steps of 4 fresh crops: with the Johnson init, painting-like
# texture in minutes on a CPU, 1.1 MB files (experiments/results/quality).
PRESETS = {"fast": {}, "quality": {"steps": 400, "lr": 0.001, "subset": "all", "batch": 4,
                                   "objective": "training"}}
assert tuple(PRESETS) == PRESET_NAMES
# What a generator kind changes in a preset. The encoder-decoder's decoder is already trained,
# so "quality" takes a tenth of the rate: at 0.001 ten steps wrecked it (Gram gain 0.82 ->
# -0.44 on 6 train styles), at 1e-4 ten steps raised it to 0.86 (experiments/LOG.md,
# 2026-12-01); 100 steps keep it to minutes on a CPU. Not yet chosen by a rule.
KIND_PRESETS = {"stylenet": {"quality": {"steps": 100, "lr": 1e-4}}}
DEFAULT_BATCH = 2
# The colour term's weight in every preset's adaptation objective (losses.colour_error). Off:
# chosen on train styles, it costs the init's own objective 2.2% (weight 3) / 2.8% (weight 10),
# over the 2% the selection rule allows (experiments/results/select-colour-3, -10). Ask for it
# (`--colour-weight 10`) when the painting's tone is far from the photo's: without it a dark
# painting gives a bright, pastel photo (experiments/results/colour).
DEFAULT_COLOUR_WEIGHT = 0.0
# What adaptation minimizes, as changes to the base's own loss (losses.PerceptualLoss).
# training: the base's loss as it was trained or meta-trained. refine: the painting's channel
# statistics at relu1_1 and relu2_1, the fine scales the encoder-decoder's style code (relu3_1,
# relu4_1) does not carry, with the content term anchored to the zero-shot output's relu3_1
# features, so the steps keep the k = 0 stylization and add the painting's fine texture (the
# two layers' terms summed, as chosen; experiments/LOG.md, 2026-12-02, "a refinement that
# raises the judges"). The training objective's steps lowered both style judges.
OBJECTIVES = {
    "training": {},
    "refine": {"style_statistic": "moments", "style_layers": ["relu1_1", "relu2_1"],
               "content_layers": ["relu3_1"], "style_weight": 2.0, "tv_weight": 0.0,
               "anchor": True},
}
assert tuple(OBJECTIVES) == OBJECTIVE_NAMES
# What a base without a recommendation in its metadata is adapted with.
FALLBACK = {"steps": 10, "lr": 0.01, "subset": "norm", "objective": "training", "crop": None}
# The AdaptSettings fields a base file may recommend, and their metadata keys.
RECOMMENDED = {"steps": "adapt_steps", "lr": "adapt_lr", "subset": "adapt_subset",
               "objective": "adapt_objective", "crop": "adapt_crop"}


@dataclass
class AdaptSettings(AdaptConfig):
    """One adaptation run: the [adapt] shape (steps, lr, batch, subset) plus what a user may
    change about the objective and the crops.

    ``objective`` names what the steps minimize (`OBJECTIVES`); ``style_weight`` None keeps
    its weight; ``seed`` fixes the content crops; ``preset`` is recorded in the model file's
    provenance.
    """

    objective: str = "training"
    crop: int | None = None  # content crop side in pixels; None = the base's training crop
    colour_weight: float = DEFAULT_COLOUR_WEIGHT
    style_weight: float | None = None
    seed: int = 0
    preset: str = "fast"


def resolve_settings(base_meta: dict, preset: str = "fast", *, steps: int | None = None,
                     lr: float | None = None, subset: str | None = None,
                     batch: int | None = None, colour_weight: float | None = None,
                     style_weight: float | None = None, objective: str | None = None,
                     crop: int | None = None, seed: int = 0) -> AdaptSettings:
    """Explicit values (not None), else the preset's (as the base's generator kind sets it),
    else the base's recommendation."""
    if preset not in PRESETS:
        raise UserError(f"adapt preset {preset!r}: expected one of {', '.join(PRESETS)}")
    given = {"steps": steps, "lr": lr, "subset": subset, "batch": batch,
             "colour_weight": colour_weight, "style_weight": style_weight,
             "objective": objective, "crop": crop}
    check_all(ADAPT, given)  # the user's values, named as given
    check_subset(subset)
    check_objective(objective)
    chosen = {name: base_meta.get(key, FALLBACK[name]) for name, key in RECOMMENDED.items()}
    chosen |= {"batch": DEFAULT_BATCH, "colour_weight": DEFAULT_COLOUR_WEIGHT}
    kind = base_meta.get("generator", {}).get("kind", "johnson")
    chosen |= PRESETS[preset] | KIND_PRESETS.get(kind, {}).get(preset, {})
    settings = AdaptSettings(**(chosen
                                | {k: v for k, v in given.items() if v is not None}),
                             seed=seed, preset=preset)
    # and what the base file recommends (a model file is user input too)
    check_all(ADAPT, {k: getattr(settings, k) for k in ADAPT}, "the base model's adapt_")
    check_subset(settings.subset, "the base model's adapt_subset")
    check_objective(settings.objective, "the base model's adapt_objective")
    return settings


def check_objective(objective: str | None, what: str = "objective") -> None:
    """``objective`` (when given) must name one of `OBJECTIVES`."""
    if objective is not None and objective not in OBJECTIVES:
        raise UserError(f"{what} {objective!r}: expected one of {', '.join(OBJECTIVES)}")


def check_subset(subset: str | None, what: str = "subset") -> None:
    """``subset`` (when given) must name one of the adaptable parameter sets."""
    if subset is not None and subset not in ADAPT_SUBSETS:
        raise UserError(f"{what} {subset!r}: expected one of {', '.join(ADAPT_SUBSETS)}")


def recommendation_metadata(recommend: dict) -> dict:
    """``{"steps": 50, "lr": 0.03}`` -> the metadata keys a base file recommends them under."""
    unknown = set(recommend) - set(RECOMMENDED)
    if unknown:
        raise ValueError(f"not recommendable adaptation settings: {sorted(unknown)}; "
                         f"expected some of {list(RECOMMENDED)}")
    return {RECOMMENDED[name]: value for name, value in recommend.items()}

