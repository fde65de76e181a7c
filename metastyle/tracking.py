"""Metric sinks: a JSONL file (always) and wandb (optional, offline by default in configs)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from .errors import UserError

WANDB_MODES = ("disabled", "offline", "online")


class JsonlSink:
    """Appends one JSON object per record; ``truncate_after`` makes resumed runs exact."""

    def __init__(self, path: Path):
        self.path = path

    def truncate_after(self, step: int) -> None:
        """Drop records past ``step`` (logged after the checkpoint a killed run resumes from)."""
        if not self.path.exists():
            return
        lines = self.path.read_text().splitlines()
        keep = [line for line in lines if line.strip() and json.loads(line).get("step", 0) <= step]
        self.path.write_text("".join(line + "\n" for line in keep))

    def log(self, record: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()


class WandbSink:
    def __init__(self, mode: str, run_dir: Path, config: dict, run_id: str):
        if mode not in WANDB_MODES:
            raise UserError(f"--wandb {mode!r}: choose one of {', '.join(WANDB_MODES)}")
        try:
            import wandb
        except ImportError:
            raise UserError("wandb is not installed; pip install 'metastyle[wandb]'") from None
        os.environ.setdefault("WANDB_DIR", str(run_dir))
        self.run = wandb.init(project="metastyle", mode=mode, dir=str(run_dir), config=config,
                              id=run_id, resume="allow")

    def log(self, record: dict) -> None:
        self.run.log({k: v for k, v in record.items() if k != "step"}, step=record["step"])

    def close(self) -> None:
        self.run.finish()


class Tracker:
    """Fan a record out to every sink."""

    def __init__(self, run_dir: Path, wandb_mode: str, config: dict):
        self.jsonl = JsonlSink(run_dir / "metrics.jsonl")
        self.wandb = (WandbSink(wandb_mode, run_dir, config, run_dir.name)
                      if wandb_mode != "disabled" else None)

    def log(self, record: dict) -> None:
        self.jsonl.log(record)
        if self.wandb:
            self.wandb.log(record)

    def close(self) -> None:
        if self.wandb:
            self.wandb.close()
