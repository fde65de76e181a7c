"""Adaptation settings: explicit options over the preset over the base's recommendation."""

import pytest

from metastyle.presets import DEFAULT_COLOUR_WEIGHT, KIND_PRESETS, PRESETS, resolve_settings
from metastyle.errors import UserError

BASE_META = {"adapt_steps": 50, "adapt_lr": 0.1, "adapt_subset": "norm"}


def test_fast_is_the_bases_recommendation_and_quality_changes_every_setting():
    fast = resolve_settings(BASE_META)
    assert (fast.steps, fast.lr, fast.subset, fast.batch) == (50, 0.1, "norm", 2)
    quality = resolve_settings(BASE_META, preset="quality")
    assert quality.subset == "all" and quality.steps > fast.steps and quality.batch > fast.batch
    assert quality.lr == PRESETS["quality"]["lr"]


def test_explicit_values_override_the_preset_and_a_base_without_advice_gets_defaults():
    chosen = resolve_settings(BASE_META, steps=7, subset="decoder", preset="quality")
    assert (chosen.steps, chosen.subset, chosen.batch) == (7, "decoder", 4)
    assert chosen.colour_weight == DEFAULT_COLOUR_WEIGHT
    assert resolve_settings(BASE_META, colour_weight=10.0).colour_weight == 10.0
    assert resolve_settings({}, lr=0.5).lr == 0.5 and resolve_settings({}).steps == 10


def test_an_unknown_preset_is_a_user_error_naming_the_choices():
    with pytest.raises(UserError, match="preset 'best'.*fast, quality"):
        resolve_settings(BASE_META, preset="best")


def test_a_negative_colour_weight_is_a_user_error():
    with pytest.raises(UserError, match="colour_weight -1.0: must be"):
        resolve_settings(BASE_META, colour_weight=-1.0)


def test_the_encoder_decoder_takes_its_own_quality_rate_and_keeps_the_rest_of_the_preset():
    johnson = resolve_settings(BASE_META, preset="quality")
    stylenet = resolve_settings(BASE_META | {"generator": {"kind": "stylenet"}}, preset="quality")
    assert stylenet.lr == KIND_PRESETS["stylenet"]["quality"]["lr"] < johnson.lr
    assert (stylenet.subset, stylenet.batch) == (johnson.subset, johnson.batch)
    assert resolve_settings(BASE_META | {"generator": {"kind": "stylenet"}}, preset="quality",
                            lr=0.01).lr == 0.01
    assert resolve_settings(BASE_META | {"generator": {"kind": "stylenet"}}).steps == 50


def test_the_objective_comes_from_the_base_the_quality_preset_trains_and_bad_names_are_refused():
    refining = BASE_META | {"adapt_objective": "refine"}
    assert resolve_settings(BASE_META).objective == "training"
    assert resolve_settings(refining).objective == "refine"
    assert resolve_settings(refining, preset="quality").objective == "training"
    assert resolve_settings(BASE_META, objective="refine").objective == "refine"
    with pytest.raises(UserError, match="objective 'best'.*training, refine"):
        resolve_settings(BASE_META, objective="best")
    with pytest.raises(UserError, match="the base model's adapt_objective 'x'"):
        resolve_settings(BASE_META | {"adapt_objective": "x"})


def test_the_crop_is_the_bases_unless_given_and_is_range_checked():
    assert resolve_settings(BASE_META).crop is None  # adapt_file then takes the training crop
    assert resolve_settings(BASE_META | {"adapt_crop": 256}).crop == 256
    assert resolve_settings(BASE_META | {"adapt_crop": 256}, crop=64).crop == 64
    with pytest.raises(UserError, match="crop 8: must be"):
        resolve_settings(BASE_META, crop=8)
