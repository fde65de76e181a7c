"""Where and how things run: device choice, thread count, seeds, run folders."""

from __future__ import annotations

import json
import platform
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import torch

from .errors import UserError


def choose_device(name: str = "auto") -> torch.device:
    """``auto`` = cuda, then mps, then cpu; an explicit device that is missing is an error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device {name!r} requested but CUDA is not available")
    if name == "mps" and not (getattr(torch.backends, "mps", None)
                              and torch.backends.mps.is_available()):
        raise UserError("device 'mps' requested but MPS is not available")
    if name.split(":")[0] not in ("cpu", "cuda", "mps"):
        raise UserError(f"unknown device {name!r}; use auto, cpu, cuda or mps")
    return torch.device(name)


def set_threads(threads: int) -> None:
    """Pin intra-op threads: on a shared 2-core box, spinning OpenMP threads slow everyone."""
    if threads > 0:
        torch.set_num_threads(threads)


def seeded_generator(seed: int) -> torch.Generator:
    """The one way randomness is made: an explicit CPU generator from a seed."""
    return torch.Generator().manual_seed(seed)


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).parent, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def environment() -> dict:
    """What a result depends on, stored with runs and reports."""
    import torchvision

    from . import __version__

    return {"metastyle": __version__, "torch": torch.__version__,
            "torchvision": torchvision.__version__, "python": platform.python_version(),
            "machine": platform.machine(), "processor": platform.processor() or "unknown",
            "threads": torch.get_num_threads(), "git_commit": git_commit(),
            "time": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def write_json(path: Path, data: dict) -> None:
    from .images import atomic_write_bytes

    atomic_write_bytes(path, json.dumps(data, indent=2, default=str).encode())
