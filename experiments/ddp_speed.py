"""Meta-steps/s and styles/s of one process vs a 2-rank torchrun job, side by side in one run.

Jobs, one after the other, each meta-training CONFIG for ``--warmup + --steps`` meta-steps with
``meta.meta_batch`` styles per process (no held-out check, one checkpoint at the end):

- ``1 process, 1 thread``: a plain `metastyle meta-train` (today's single-process run);
- ``1 process, 2 threads``: the same, with both cores as intra-op threads (the other way to
  spend 2 cores);
- ``torchrun 2 ranks x 1 thread``: data-parallel, twice the styles per meta-step;
- ``2 independent processes x 1 thread``: two plain runs at once, no communication: what this
  machine allows two ranks at best (their styles/s added up).

``--jobs`` picks some of them (single, threads, ddp, pair). Each row also says how many CPU
seconds processes other than the benchmark's used while it ran (from /proc/stat): on a shared
2-core box anything above a few seconds spoils the comparison.

A meta-step's time is its ``seconds_per_step + data_wait_seconds`` from rank 0's metrics (the
meta-step includes the gradient all-reduce, so it waits for the slower rank); the first
``--warmup`` steps are left out. Prints a markdown table.

    python experiments/ddp_speed.py experiments/cpu.toml --steps 5 --warmup 2
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# key: (name, torchrun ranks, threads per process, plain processes run at once)
JOBS = {"single": ("1 process, 1 thread", 1, 1, 1),
        "threads": ("1 process, 2 threads", 1, 2, 1),
        "ddp": ("torchrun 2 ranks x 1 thread", 2, 1, 1),
        "pair": ("2 independent processes x 1 thread", 1, 1, 2)}


def start_job(config: str, run_dir: Path, ranks: int, threads: int, steps: int,
              overrides: list[str]) -> subprocess.Popen:
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone",
                 "--nproc_per_node", str(ranks), "-m", "metastyle"] if ranks > 1
                else [sys.executable, "-m", "metastyle"])
    sets = [f"train.steps={steps}", f"train.threads={threads}", "train.log_every=1",
            f"train.checkpoint_every={steps}", "data.eval_styles=0", "train.wandb='disabled'",
            *overrides]
    args = launcher + ["meta-train", config, "--run-dir", str(run_dir), "--no-progress"]
    for item in sets:
        args += ["--set", item]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(REPO)}
    return subprocess.Popen(args, env=env, cwd=REPO, stdout=subprocess.DEVNULL)


def busy_seconds() -> float:
    """CPU seconds all processes of the machine have used (Linux /proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def own_seconds() -> float:
    """CPU seconds of this script and its finished children (their children included)."""
    return sum(resource.getrusage(who).ru_utime + resource.getrusage(who).ru_stime
               for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))


def step_seconds(run_dir: Path, warmup: int) -> list[float]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["seconds_per_step"] + r["data_wait_seconds"] for r in records[warmup:]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("--steps", type=int, default=5, help="timed meta-steps per job")
    parser.add_argument("--warmup", type=int, default=2, help="meta-steps left out of the timing")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="config override for every job, e.g. meta.meta_batch=2")
    parser.add_argument("--jobs", default="single,threads,ddp,pair",
                        help=f"comma-separated, from {', '.join(JOBS)}; the first is the 1.00x")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for key in args.jobs.split(","):
            name, ranks, threads, copies = JOBS[key]
            dirs = [Path(tmp) / f"{key}{i}" for i in range(copies)]
            busy, own = busy_seconds(), own_seconds()
            procs = [start_job(args.config, d, ranks, threads, args.warmup + args.steps,
                               args.overrides) for d in dirs]
            if any([p.wait() for p in procs]):
                sys.exit(f"{name}: a run failed")
            other = (busy_seconds() - busy) - (own_seconds() - own)
            seconds = statistics.mean(s for d in dirs for s in step_seconds(d, args.warmup))
            meta_batch = json.loads((dirs[0] / "config.json").read_text())["meta"]["meta_batch"]
            styles = ranks * meta_batch  # per meta-step of one job; copies run side by side
            rows.append((name, styles, seconds, copies / seconds, copies * styles / seconds,
                         other))
            print(f"{name}: {seconds:.3f} s per meta-step, other processes {other:.0f} CPU-s",
                  file=sys.stderr)
    base = rows[0][4]
    print("| job | styles per meta-step | s per meta-step | meta-steps/s (all processes) | "
          f"styles/s | styles/s vs {rows[0][0]} | other processes' CPU-s |")
    print("|---|---|---|---|---|---|---|")
    for name, styles, seconds, steps_s, styles_s, other in rows:
        print(f"| {name} | {styles} | {seconds:.3f} | {steps_s:.3f} | {styles_s:.3f} | "
              f"{styles_s / base:.2f}x | {other:.0f} |")


if __name__ == "__main__":
    main()
