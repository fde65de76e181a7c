"""Data-parallel meta-training under torchrun: 2 processes on the CPU (gloo), a tiny config.

One 2-rank run is shared by the module: it is the reference for the 1-rank equivalence, the
kill-and-resume test and the world-size check.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import build_tiny_corpus, tiny_config_overrides
from metastyle import checkpoint
from metastyle.config import load_config
from metastyle.distributed import Ranks, resolve_backend, slot_seed, threads_per_rank
from metastyle.errors import UserError
from metastyle.train import CHECKPOINT, meta_train

REPO = Path(__file__).resolve().parents[1]
STEPS = 10
TIMEOUT = 240


def _torchrun(nproc, run_dir, corpus, *overrides, flags=()):
    """`torchrun --standalone --nproc_per_node N -m metastyle meta-train` on the tiny config."""
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone",
            "--nproc_per_node", str(nproc), "-m", "metastyle", "meta-train",
            str(REPO / "experiments/cpu.toml"), "--run-dir", str(run_dir), "--no-progress",
            "--wandb", "disabled", "--set", f"train.steps={STEPS}", "--set", "train.threads=1", *flags]
    for override in tiny_config_overrides(corpus) + list(overrides):
        args += ["--set", override]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(args, env=env, cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _finish(proc):
    out, _ = proc.communicate(timeout=TIMEOUT)
    return proc.returncode, out


def _records(run_dir):
    return [{k: v for k, v in json.loads(line).items()
             if k not in ("seconds_per_step", "data_wait_seconds")}
            for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _checkpoint_step(run_dir):
    try:
        return checkpoint.read(run_dir / CHECKPOINT)[1]["step"]
    except (UserError, KeyError):
        return 0


def _worker_pid(launcher_pid, rank):
    """The pid of the torchrun worker of ``rank`` (a child of the launcher, RANK in its env)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            env = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == launcher_pid and f"RANK={rank}".encode() in env:
            return int(entry.name)
    return None


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return build_tiny_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def two_rank_run(corpus, tmp_path_factory):
    """2 ranks x meta-batch 1, uninterrupted."""
    run_dir = tmp_path_factory.mktemp("two-ranks")
    rc, out = _finish(_torchrun(2, run_dir, corpus, "meta.meta_batch=1"))
    assert rc == 0, out
    return run_dir


def test_two_ranks_of_b_train_the_init_of_one_rank_of_2b(two_rank_run, corpus, tmp_path):
    rc, out = _finish(_torchrun(1, tmp_path, corpus, "meta.meta_batch=2"))
    assert rc == 0, out
    two, one = (checkpoint.read_training(d / CHECKPOINT) for d in (two_rank_run, tmp_path))
    assert two.meta["world_size"] == 2 and one.meta["world_size"] == 1
    assert two.meta["episode_slots"] == one.meta["episode_slots"] == 2
    # the same episodes: every slot's generator ends in the same state, gathered from both ranks
    assert two.rng.shape == (2, one.rng.shape[1]) and torch.equal(two.rng, one.rng)
    for name, tensor in one.model.items():
        torch.testing.assert_close(two.model[name], tensor, rtol=1e-5, atol=1e-6)
    for name, tensor in one.log_rates.items():
        torch.testing.assert_close(two.log_rates[name], tensor, rtol=1e-5, atol=1e-6)
    for a, b in zip(_records(two_rank_run), _records(tmp_path), strict=True):
        assert a.keys() == b.keys() and a["step"] == b["step"]
        for key in a:
            assert a[key] == pytest.approx(b[key], rel=1e-5), key
    # both ranks held bit-identical weights at every checkpoint; rank 0 saved those weights
    hashes = two.meta["weights_sha256_by_rank"]
    weights = {**two.model, **{f"log_rate/{k}": v for k, v in two.log_rates.items()}}
    assert len(hashes) == 2 and hashes[0] == hashes[1] == checkpoint.weights_hash(weights)
    # rank 0 alone wrote the run folder: one record per step, samples from the held-out check
    assert [r["step"] for r in _records(two_rank_run)] == list(range(1, STEPS + 1))
    assert json.loads((two_rank_run / "environment.json").read_text())["world_size"] == 2


def test_a_killed_rank_fails_the_job_and_the_run_resumes_exactly(two_rank_run, corpus, tmp_path):
    victim = _torchrun(2, tmp_path, corpus, "meta.meta_batch=1")
    deadline = time.time() + TIMEOUT
    while _checkpoint_step(tmp_path) < 4 and victim.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    pid = _worker_pid(victim.pid, rank=1)
    assert pid is not None, "rank 1 not found"
    os.kill(pid, signal.SIGKILL)
    rc, out = _finish(victim)
    assert rc != 0, out
    assert 4 <= _checkpoint_step(tmp_path) < STEPS, "the kill must land mid-run"
    checkpoint.read_training(tmp_path / CHECKPOINT)  # the last checkpoint is intact

    rc, out = _finish(_torchrun(2, tmp_path, corpus, "meta.meta_batch=1", flags=["--resume"]))
    assert rc == 0, out
    assert _records(tmp_path) == _records(two_rank_run)
    resumed, straight = (checkpoint.read_training(d / CHECKPOINT) for d in (tmp_path, two_rank_run))
    for name, tensor in straight.model.items():
        assert torch.equal(resumed.model[name], tensor), name


def test_resuming_with_another_world_size_is_a_one_line_error(two_rank_run, corpus):
    config = load_config(None, tiny_config_overrides(corpus) + ["meta.meta_batch=1"])
    with pytest.raises(UserError, match=r"2 torchrun rank\(s\), this job is a single process") as e:
        meta_train(config, two_rank_run, resume=True, progress=False)
    assert "\n" not in str(e.value)


def test_backend_threads_and_slot_seeds():
    assert resolve_backend("auto", torch.device("cpu")) == "gloo"
    assert resolve_backend("auto", torch.device("cuda", 0)) == "nccl"
    assert resolve_backend("gloo", torch.device("cuda", 0)) == "gloo"
    with pytest.raises(UserError, match="needs CUDA"):
        resolve_backend("nccl", torch.device("cpu"))
    with pytest.raises(UserError, match="not one of auto, gloo, nccl"):
        load_config(None, ["train.backend='mpi'"])
    assert threads_per_rank(0, Ranks()) == 0  # a single process keeps torch's default
    assert threads_per_rank(0, Ranks(world_size=2, local_world_size=2, backend="gloo")) == max(
        1, (os.cpu_count() or 1) // 2)
    assert threads_per_rank(3, Ranks(world_size=2, local_world_size=2, backend="gloo")) == 3
    seeds = {slot_seed(seed, slot) for seed in (0, 1) for slot in range(8)}
    assert len(seeds) == 16 and all(0 <= s < 2 ** 63 for s in seeds)
    assert Ranks(rank=1, world_size=2, backend="gloo").slots(3) == range(3, 6)
