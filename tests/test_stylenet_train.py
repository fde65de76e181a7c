"""Meta-training and its joint control from an encoder-decoder init (experiments/stylenet/meta.toml
on the tiny corpus): the run trains the init's kind, resumes exactly, exports a model file that
adapt and zero-shot stylize load."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from conftest import tiny_config_overrides
from metastyle import checkpoint
from metastyle.cli import app
from metastyle.stylenet import StyleNet
from metastyle.train import CHECKPOINT, RunState

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


def _invoke(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.stderr + result.stdout
    return result


def _sets(corpus, init, *extra):
    """The tiny corpus and sizes, from ``init``; the anchor and a two-step inner loop stay on
    (the tiny overrides turn them off)."""
    sets = tiny_config_overrides(corpus) + [f"meta.init='{init}'", "meta.inner_steps=2",
                                            "meta.anchor=1", *extra]
    return [a for s in sets for a in ("--set", s)]


def _train(command, run_dir, corpus, init, steps, *flags):
    """`metastyle COMMAND experiments/stylenet/meta.toml` for ``steps`` on the tiny corpus."""
    return _invoke(command, REPO / "experiments/stylenet/meta.toml", "--run-dir", run_dir,
                   "--no-progress", *_sets(corpus, init, f"train.steps={steps}"), *flags)


def _records(run_dir):
    return [{k: v for k, v in json.loads(line).items()
             if k not in ("seconds_per_step", "data_wait_seconds")}
            for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _weights(run_dir):
    return checkpoint.read_training(run_dir / CHECKPOINT).model


def test_meta_training_resumes_exactly_and_exports_an_encoder_decoder(stylenet_base, tiny_corpus,
                                                                      tmp_path):
    init = tmp_path / "init.safetensors"
    shutil.copy(stylenet_base, init)
    _train("meta-train", tmp_path / "straight", tiny_corpus, init, 4)
    _train("meta-train", tmp_path / "resumed", tiny_corpus, init, 2)
    init.unlink()  # a resumed run rebuilds its generator from its own checkpoint
    _train("meta-train", tmp_path / "resumed", tiny_corpus, init, 4, "--resume")

    straight = _records(tmp_path / "straight")
    assert _records(tmp_path / "resumed") == straight
    assert [r["step"] for r in straight] == [1, 2, 3, 4]
    assert all("query_before" in r and "support_before" in r for r in straight)
    assert any("heldout_k0" in r for r in straight)
    weights = _weights(tmp_path / "straight")
    assert all(torch.equal(weights[k], v) for k, v in _weights(tmp_path / "resumed").items())
    base, _ = checkpoint.load_generator(stylenet_base)
    assert any(not torch.equal(weights[k], v) for k, v in base.state_dict().items())
    state = RunState.load(tmp_path / "straight" / CHECKPOINT)
    assert isinstance(state.learner.model, StyleNet)
    assert any(n.startswith("code/") for n in state.learner.log_rates)  # Meta-SGD rates

    out = tmp_path / "meta.safetensors"
    _invoke("export-init", tmp_path / "straight", "-o", out, "--adapt-steps", 2)
    model, meta = checkpoint.load_generator(out)
    assert isinstance(model, StyleNet) and meta["generator"]["kind"] == "stylenet"
    assert meta["step"] == 4 and meta["encoder"] == "random" and meta["adapt_subset"] == "norm"
    assert meta["config"]["data"]["crop"] == 16 and meta["adapt_steps"] == 2
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())
    style, photo = tiny_corpus / "style/style4.png", tiny_corpus / "content/content0.png"
    _invoke("adapt", style, "--base", out, "--content", tiny_corpus / "content",
            "-o", tmp_path / "s.safetensors", "--no-progress")
    _invoke("stylize", "--style", style, "--base", out, photo, "-o", tmp_path / "out")
    assert len(list((tmp_path / "out").glob("*.jpg"))) == 1


@pytest.mark.parametrize("start", ["model file", "stage checkpoint"])
def test_the_joint_control_trains_the_encoder_decoder(stylenet_base, tiny_corpus, tmp_path,
                                                      start):
    init = stylenet_base if start == "model file" else tmp_path / "ae-run" / CHECKPOINT
    _train("train-joint", tmp_path / "joint", tiny_corpus, init, 2)
    records = _records(tmp_path / "joint")
    assert [r["step"] for r in records] == [1, 2]
    assert all("support_before" not in r and "query_before" not in r for r in records)
    state = RunState.load(tmp_path / "joint" / CHECKPOINT)
    assert isinstance(state.learner.model, StyleNet) and not state.learner.log_rates
    config = json.loads((tmp_path / "joint" / "config.json").read_text())
    assert config["meta"]["subset"] == "norm" and config["meta"]["query"] == 4


def test_an_init_for_other_encoder_weights_is_a_one_line_error(stylenet_base, tiny_corpus,
                                                              tmp_path):
    result = runner.invoke(app, ["meta-train", str(REPO / "experiments/stylenet/meta.toml"),
                                 "--run-dir", str(tmp_path / "run"), "--no-progress",
                                 *_sets(tiny_corpus, stylenet_base, "train.seed=1")])
    assert result.exit_code == 2 and "other random weights" in result.stderr
    assert not (tmp_path / "run").exists()
