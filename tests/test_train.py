"""Meta-training runs: logging, checkpoints, exact resume after SIGKILL, divergence guard."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import tiny_config_overrides
from metastyle import checkpoint
from metastyle.config import load_config
from metastyle.errors import UserError
from metastyle.report import plot_heldout_checks
from metastyle.train import (CHECKPOINT, RunState, TrainingDiverged, export_init, meta_train,
                             warm_start)

REPO = Path(__file__).resolve().parents[1]


def _records(run_dir):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items()
             if k not in ("seconds_per_step", "data_wait_seconds")}
            for line in lines]


def _cli(run_dir, corpus, steps, *extra):
    args = [sys.executable, "-m", "metastyle.cli", "meta-train", str(REPO / "experiments/cpu.toml"),
            "--run-dir", str(run_dir), "--no-progress", "--wandb", "disabled",
            "--set", f"train.steps={steps}", "--set", "train.threads=1", *extra]
    for override in tiny_config_overrides(corpus):
        args += ["--set", override]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(args, env=env, cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _checkpoint_step(run_dir):
    try:
        return checkpoint.read(run_dir / CHECKPOINT)[1]["step"]
    except (UserError, KeyError):
        return 0


def test_sigkilled_run_resumes_exactly_as_if_never_stopped(tiny_corpus, tmp_path):
    steps = 8
    straight = _cli(tmp_path / "straight", tiny_corpus, steps)
    assert straight.wait(timeout=240) == 0, straight.stderr.read()

    killed_dir = tmp_path / "killed"
    victim = _cli(killed_dir, tiny_corpus, steps)
    deadline = time.time() + 240
    while _checkpoint_step(killed_dir) < 4 and victim.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert 4 <= _checkpoint_step(killed_dir) < steps, "the kill must land mid-run"
    resumed = _cli(killed_dir, tiny_corpus, steps, "--resume")
    assert resumed.wait(timeout=240) == 0, resumed.stderr.read()

    assert _records(killed_dir) == _records(tmp_path / "straight")
    assert [r["step"] for r in _records(killed_dir)] == list(range(1, steps + 1))
    assert any("heldout_k0" in r for r in _records(killed_dir))


def test_run_folder_contents_and_exported_init(tiny_corpus, tmp_path):
    config = load_config(None, tiny_config_overrides(tiny_corpus) + ["train.steps=2"])
    run_dir = tmp_path / "run"
    meta_train(config, run_dir, progress=False)
    for name in ("config.json", "environment.json", "metrics.jsonl", CHECKPOINT):
        assert (run_dir / name).is_file(), name
    assert list((run_dir / "samples").glob("step*.jpg"))
    export_init(run_dir, tmp_path / "init.safetensors")
    model, meta = checkpoint.load_generator(tmp_path / "init.safetensors")
    assert meta["kind"] == "generator" and meta["step"] == 2
    assert meta["adapt_subset"] == "norm" and meta["encoder"] == "random"
    assert "strength" not in meta  # an encoder-decoder's AdaIN knob
    with pytest.raises(UserError, match="a Johnson network has no AdaIN strength"):
        export_init(run_dir, tmp_path / "strong.safetensors", strength=0.9)
    assert not (tmp_path / "strong.safetensors").exists()
    rows = plot_heldout_checks([run_dir], tmp_path / "checks.png")["run"]
    assert [r[0] for r in rows] == [2] and (tmp_path / "checks.png").stat().st_size > 0
    state = RunState.load(run_dir / CHECKPOINT)
    for name, tensor in model.state_dict().items():
        assert (tensor == state.learner.model.state_dict()[name]).all()


def test_a_staged_run_starts_from_another_runs_init(tiny_corpus, tmp_path):
    overrides = tiny_config_overrides(tiny_corpus) + ["train.steps=2"]
    meta_train(load_config(None, overrides), tmp_path / "stage1", progress=False)
    export_init(tmp_path / "stage1", tmp_path / "stage1.safetensors")
    source, _ = checkpoint.load_generator(tmp_path / "stage1.safetensors")
    staged = load_config(None, overrides + [f"meta.init='{tmp_path / 'stage1.safetensors'}'",
                                            "meta.inner_steps=2"])
    fresh = RunState(staged)
    assert any((a != b).any() for a, b in zip(fresh.learner.model.state_dict().values(),
                                             source.state_dict().values()))
    warm_start(fresh.learner.model, Path(staged.meta.init))
    for name, tensor in source.state_dict().items():
        assert (fresh.learner.model.state_dict()[name] == tensor).all(), name
    meta_train(staged, tmp_path / "stage2", progress=False)  # runs, then resumes without the file
    (tmp_path / "stage1.safetensors").unlink()
    meta_train(load_config(None, overrides + [f"meta.init='{tmp_path / 'stage1.safetensors'}'",
                                              "meta.inner_steps=2", "train.steps=3"]),
               tmp_path / "stage2", resume=True, progress=False)
    export_init(tmp_path / "stage1", tmp_path / "stage1.safetensors")
    wider = RunState(load_config(None, overrides + ["generator.width=6"])).learner.model
    with pytest.raises(UserError, match="does not match"):
        warm_start(wider, tmp_path / "stage1.safetensors")


def test_the_run_adapts_with_the_configured_inner_optimizer(tiny_corpus, tmp_path):
    """Same seed, data and init: only the inner updates differ, so only the adapted loss does."""
    overrides = tiny_config_overrides(tiny_corpus) + ["train.steps=1", "meta.inner_steps=2"]
    for name in ("sgd", "adam"):
        meta_train(load_config(None, overrides + [f"meta.inner_optimizer='{name}'"]),
                   tmp_path / name, progress=False)
    sgd, adam = _records(tmp_path / "sgd")[0], _records(tmp_path / "adam")[0]
    assert sgd["support_before"] == adam["support_before"]
    assert sgd["query_after"] != adam["query_after"]
    assert json.loads((tmp_path / "adam" / "config.json").read_text())["meta"][
        "inner_optimizer"] == "adam"


def test_refuses_to_overwrite_a_run_or_resume_with_another_recipe(tiny_corpus, tmp_path):
    overrides = tiny_config_overrides(tiny_corpus) + ["train.steps=2"]
    meta_train(load_config(None, overrides), tmp_path, progress=False)
    with pytest.raises(UserError, match="--resume"):
        meta_train(load_config(None, overrides), tmp_path, progress=False)
    with pytest.raises(UserError, match="meta"):
        meta_train(load_config(None, overrides + ["meta.inner_lr=0.5"]), tmp_path, resume=True,
                   progress=False)
    # the encoder's compute precision is a speed knob, not part of the recipe
    meta_train(load_config(None, overrides + ["loss.precision=bfloat16", "train.steps=3"]),
               tmp_path, resume=True, progress=False)


def test_divergence_guard_trips_on_growth_without_nan():
    state = RunState(load_config(None, ["generator.width=4", "generator.res_blocks=1"]))
    for step in range(1, 40):
        state.step = step
        state.check_divergence(1.0)
    state.step = 40
    with pytest.raises(TrainingDiverged, match="EMA"):
        for _ in range(200):
            state.check_divergence(1000.0)
    with pytest.raises(TrainingDiverged, match="non-finite"):
        state.check_divergence(float("nan"))


@pytest.mark.parametrize("rate_lr", [0.0, 0.05])
def test_the_meta_sgd_rates_learn_at_their_own_rate_and_resume(tiny_corpus, tmp_path, rate_lr):
    overrides = tiny_config_overrides(tiny_corpus) + [
        "meta.inner_lr=0.1", "meta.meta_lr=0.0001", f"meta.rate_lr={rate_lr}"]
    meta_train(load_config(None, overrides + ["train.steps=4"]), tmp_path / "straight",
               progress=False)
    meta_train(load_config(None, overrides + ["train.steps=2"]), tmp_path / "resumed",
               progress=False)
    meta_train(load_config(None, overrides + ["train.steps=4"]), tmp_path / "resumed",
               resume=True, progress=False)
    straight, resumed = (checkpoint.read_training(tmp_path / d / CHECKPOINT)
                         for d in ("straight", "resumed"))
    assert all(torch.equal(straight.log_rates[k], resumed.log_rates[k])
               for k in straight.log_rates)
    # Adam moves each value by about its rate per step: 4 steps at most 4x the rate
    moved = max((v - math.log(0.1)).abs().item() for v in straight.log_rates.values())
    assert moved < 5 * 1e-4 if not rate_lr else 0.01 < moved < 5 * rate_lr
