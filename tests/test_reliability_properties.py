"""Property-based hostile input (hypothesis): any value of any CLI option, config key or model
metadata field gives either success or a one-line `UserError` / exit 2, never a traceback, never
a partial output, never a changed input. Bounded example counts keep it to seconds."""

import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from metastyle import checkpoint
from metastyle.cli import app
from metastyle.config import RANGES, BenchConfig, Config, load_config
from metastyle.errors import UserError
from metastyle.limits import ADAPT
from metastyle.stylizer import load_stylizer

runner = CliRunner()
FAST = settings(max_examples=25, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture])

numbers = st.one_of(st.integers(-10**7, 10**7), st.floats(allow_nan=True, allow_infinity=True),
                    st.sampled_from([0, -1, 1, 0.0, -0.0, 1e-300, 1e300]))
option_text = st.one_of(numbers.map(str), st.text(max_size=8),
                        st.sampled_from(["nan", "inf", "-inf", "1e999", "", "0x10", "1_000"]))


def _snapshot(folder, skip="out"):
    return {p: p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and skip not in p.relative_to(folder).parts}


def _empty(folder):
    """Hypothesis reruns a test in one tmp_path: start each example with no outputs."""
    if folder.exists():
        for p in folder.iterdir():
            p.unlink()


@FAST
@given(option=st.sampled_from(["--steps", "--lr", "--batch", "--colour-weight",
                               "--style-weight", "--subset", "--preset", "--seed"]),
       value=option_text)
def test_any_adapt_option_value_is_exit_0_or_a_one_line_exit_2(option, value, base_model,
                                                               tiny_corpus, tmp_path):
    out = tmp_path / "out"
    _empty(out)
    if option == "--steps" and value.strip().lstrip("+").isdigit() and int(value) > 2:
        value = "2"  # a valid but long run proves nothing more; keep it quick
    before = _snapshot(tiny_corpus)
    result = runner.invoke(app, ["adapt", str(tiny_corpus / "style/style0.png"), "--base",
                                 str(base_model), "--content", str(tiny_corpus / "content"),
                                 "-k", "1", "-o", str(out / "m.safetensors"), "--no-progress",
                                 f"{option}={value}"])
    assert result.exit_code in (0, 2), (result.exit_code, result.stderr, result.exception)
    assert "Traceback" not in result.stderr
    if result.exit_code == 2:
        assert result.stderr.count("\n") == 1, result.stderr
        assert not out.exists() or not list(out.iterdir())  # nothing, not even a temp file
    else:
        assert sorted(p.name for p in out.iterdir()) == ["m.safetensors", "m_preview.jpg"]
    assert _snapshot(tiny_corpus) == before  # inputs (and the base beside them) unchanged


@FAST
@given(option=st.sampled_from(["--tile", "--max-size", "--max-pixels", "--strength"]),
       value=option_text)
def test_any_stylize_option_value_is_exit_0_or_a_one_line_exit_2(option, value, base_model,
                                                                 photo, tmp_path):
    out = tmp_path / "styled"
    _empty(out)
    result = runner.invoke(app, ["stylize", str(base_model), str(photo), "-o", str(out),
                                 f"{option}={value}"])
    assert result.exit_code in (0, 2), (result.exit_code, result.stderr, result.exception)
    if result.exit_code == 2:
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
        assert not out.exists() or not list(out.iterdir())


toml_values = st.one_of(st.integers(-10**6, 10**6), st.floats(allow_nan=True,
                                                              allow_infinity=True),
                        st.booleans(), st.text(max_size=5).map(json.dumps),
                        st.sampled_from(["nan", "inf", "-inf", "[]", "[1, -1]", "{}"]))


def _toml(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return str(value)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(key=st.sampled_from(sorted(RANGES)), value=toml_values)
def test_any_config_value_loads_in_range_or_is_one_line_naming_the_key(key, value):
    root = BenchConfig if "." not in key and key not in ("lr", "batch") else Config
    if key in ("lr", "batch"):
        from metastyle.stages import StageConfig as root  # noqa: N813
    override = f"{key}={_toml(value)}"
    try:
        config = load_config(None, [override], root=root)
    except UserError as exc:
        assert "\n" not in str(exc) and key.split(".")[0] in str(exc)
        return
    loaded = config
    for part in key.split("."):
        loaded = getattr(loaded, part)
    values = loaded.values() if isinstance(loaded, dict) else (
        loaded if isinstance(loaded, list) else [loaded])
    for item in values:
        items = item if isinstance(item, list) else [item]
        assert all(RANGES[key].ok(v) for v in items), (key, loaded)


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6),
              st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=6)),
    lambda children: st.one_of(st.lists(children, max_size=3),
                               st.dictionaries(st.text(max_size=6), children, max_size=3)),
    max_leaves=8)


@FAST
@given(meta=json_values)
def test_any_metadata_shape_is_a_one_line_user_error(meta, base_model, tmp_path):
    from safetensors.torch import load, save

    bad = tmp_path / "shaped.safetensors"
    bad.write_bytes(save(load(base_model.read_bytes()), metadata={"metastyle": json.dumps(meta)}))
    with pytest.raises(UserError) as info:
        load_stylizer(bad)
    assert "\n" not in str(info.value)


@FAST
@given(field=st.sampled_from(sorted(checkpoint.META_SCHEMA) + ["config", "loss", "generator"]),
       value=json_values)
def test_any_value_of_a_known_metadata_field_loads_or_is_a_user_error(field, value, base_model,
                                                                      tmp_path, photo):
    from safetensors.torch import load, save

    meta = checkpoint.read(base_model)[1] | {field: value}
    bad = tmp_path / "field.safetensors"
    bad.write_bytes(save(load(base_model.read_bytes()), metadata={"metastyle": json.dumps(meta)}))
    try:
        load_stylizer(bad).stylize(photo)
    except UserError as exc:
        assert "\n" not in str(exc)


def test_the_shared_ranges_are_the_services_too():
    """One definition: the ranges the CLI shows are the ones resolve_settings enforces."""
    from metastyle.presets import resolve_settings

    for name, allowed in ADAPT.items():
        for bad in (float("nan"), float("inf"), -1e9):
            with pytest.raises(UserError, match=name):
                resolve_settings({}, **{name: bad})
        assert not allowed.ok(float("nan"))
