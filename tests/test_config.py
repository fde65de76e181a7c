"""Tests for metastyle.config: defaults, TOML diffs, checked --set overrides, round trips."""

import re
from pathlib import Path

import pytest

from metastyle.config import BenchConfig, Config, config_from_dict, config_to_dict, load_config, parse_override
from metastyle.errors import UserError
from metastyle.generator import GeneratorConfig

# Training configs; experiments/bench-*.toml are benchmark settings with their own schema. A
# settled experiment keeps its configs beside its results: results/<name>/train.toml (training),
# results/<name>/config.toml (benchmark).
EXPERIMENT_DIR = Path(__file__).resolve().parent.parent / "experiments"
EXPERIMENTS = sorted([p for p in EXPERIMENT_DIR.glob("*.toml") if not p.name.startswith("bench")]
                     + list(EXPERIMENT_DIR.glob("results/*/train.toml")))
BENCHES = sorted([*EXPERIMENT_DIR.glob("bench*.toml"),
                  *EXPERIMENT_DIR.glob("results/*/config.toml")])


def test_defaults_load():
    config = load_config()
    assert config == Config()
    assert config.loss.encoder == "vgg16-hed" and config.meta.subset == "norm"
    assert isinstance(config.generator, GeneratorConfig)
    assert config.loss.style_layers == ["relu1_2", "relu2_2", "relu3_3", "relu4_3"]


def test_toml_file_is_a_diff_on_the_defaults(tmp_path):
    path = tmp_path / "exp.toml"
    path.write_text('[meta]\ninner_steps = 3\ninner_lr = 1\n\n[loss]\nstyle_layers = ["relu1_2"]\n'
                    "\n[generator]\nwidth = 8\n")
    config = load_config(path)
    assert config.meta.inner_steps == 3
    assert config.meta.inner_lr == 1.0 and isinstance(config.meta.inner_lr, float)
    assert config.loss.style_layers == ["relu1_2"]
    assert config.generator == GeneratorConfig(width=8, res_blocks=3)
    assert config.meta.meta_batch == Config().meta.meta_batch  # untouched keys keep defaults
    assert config.train == Config().train


def test_overrides_apply_after_the_file(tmp_path):
    path = tmp_path / "exp.toml"
    path.write_text("[meta]\ninner_steps = 3\n")
    config = load_config(path, ["meta.inner_steps=5", "meta.inner_lr=2", "meta.meta_sgd=false",
                                'loss.content_layers=["relu3_3", "relu4_3"]',
                                "loss.encoder=random", 'data.manifest="a/b.tsv"'])
    assert config.meta.inner_steps == 5
    assert config.meta.inner_lr == 2.0 and type(config.meta.inner_lr) is float
    assert config.meta.meta_sgd is False
    assert config.loss.content_layers == ["relu3_3", "relu4_3"]
    assert config.loss.encoder == "random"  # a bare word is taken as a string
    assert config.data.manifest == "a/b.tsv"


def test_parse_override_nests_dotted_keys():
    assert parse_override(" meta.inner_lr = 0.02 ") == {"meta": {"inner_lr": 0.02}}
    with pytest.raises(UserError, match="key=value"):
        parse_override("meta.inner_lr")


@pytest.mark.parametrize("override, named", [("bogus=1", "'bogus'"),
                                             ("meta.bogus=1", "'meta.bogus'"),
                                             ("generator.depth=3", "'generator.depth'")])
def test_unknown_key_is_user_error_naming_it(override, named):
    with pytest.raises(UserError, match="unknown config key") as info:
        load_config(None, [override])
    assert named in str(info.value)


def test_unknown_key_in_file_is_user_error(tmp_path):
    path = tmp_path / "typo.toml"
    path.write_text("[meta]\ninner_stpes = 2\n")
    with pytest.raises(UserError, match="meta.inner_stpes"):
        load_config(path)


@pytest.mark.parametrize("override", ["meta.inner_steps=1.5", "meta.inner_steps=true",
                                      "meta.meta_sgd=1", "meta.inner_lr=fast",
                                      "loss.style_layers=3", "loss.style_layers=[1, 2]",
                                      "meta=3", "loss.encoder=5"])
def test_wrong_type_is_user_error(override):
    key = override.split("=")[0]
    with pytest.raises(UserError, match=key.replace(".", r"\.")):
        load_config(None, [override])


@pytest.mark.parametrize("override, valid", [("meta.inner_optimizer=lion", "adam"),
                                             ("meta.subset=heads", "decoder"),
                                             ("adapt.subset=everything", "decoder"),
                                             ("loss.precision=float16", "bfloat16")])
def test_value_outside_the_choices_is_user_error_naming_them(override, valid):
    key, value = override.split("=")
    with pytest.raises(UserError, match=rf"{re.escape(key)}: '{value}' is not one of"):
        load_config(None, [override])
    load_config(None, [f"{key}={valid}"])


def test_extends_layers_a_file_over_its_base(tmp_path):
    (tmp_path / "base.toml").write_text("[meta]\ninner_steps = 3\ninner_lr = 0.5\n"
                                        "[generator]\nwidth = 8\n")
    (tmp_path / "sub").mkdir()
    child = tmp_path / "sub" / "child.toml"
    child.write_text('extends = "../base.toml"\n[meta]\ninner_lr = 0.1\n')
    config = load_config(child, ["meta.inner_steps=4"])
    assert config.generator.width == 8  # from the base
    assert config.meta.inner_lr == 0.1  # the child wins over its base
    assert config.meta.inner_steps == 4  # --set wins over both


def test_extends_errors_name_the_file(tmp_path):
    loop_a, loop_b = tmp_path / "a.toml", tmp_path / "b.toml"
    loop_a.write_text('extends = "b.toml"\n')
    loop_b.write_text('extends = "a.toml"\n')
    with pytest.raises(UserError, match="loops back"):
        load_config(loop_a)
    orphan = tmp_path / "orphan.toml"
    orphan.write_text('extends = "gone.toml"\n')
    with pytest.raises(UserError, match=r"gone\.toml: config file not found"):
        load_config(orphan)
    wrong = tmp_path / "wrong.toml"
    wrong.write_text("extends = 3\n")
    with pytest.raises(UserError, match="wrong.toml: `extends` must be a file name"):
        load_config(wrong)


def test_missing_and_invalid_files_are_user_errors_naming_the_file(tmp_path):
    missing = tmp_path / "nope.toml"
    with pytest.raises(UserError, match="not found") as info:
        load_config(missing)
    assert str(missing) in str(info.value)
    bad = tmp_path / "bad.toml"
    bad.write_text("[meta\ninner_steps = ")
    with pytest.raises(UserError, match="invalid TOML") as info:
        load_config(bad)
    assert str(bad) in str(info.value)
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(UserError, match="binary.toml"):
        load_config(binary)


def test_dict_round_trip():
    config = load_config(None, ["meta.inner_steps=4", "generator.width=8",
                                'loss.style_layers=["relu2_2"]', "train.wandb=offline"])
    data = config_to_dict(config)
    assert data["generator"] == {"width": 8, "res_blocks": 3}
    assert config_from_dict(data) == config
    assert config_from_dict(config_to_dict(Config())) == Config()


def test_experiment_training_configs_all_load():
    assert EXPERIMENTS, "no experiments/*.toml found"
    for path in EXPERIMENTS:
        config = load_config(path)
        assert config != Config(), path  # each file changes something


def test_experiment_bench_configs_all_load():
    assert BENCHES, "no experiments/bench*.toml found"
    for path in BENCHES:
        assert load_config(path, root=BenchConfig) != BenchConfig(), path
