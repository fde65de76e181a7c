"""Data-parallel meta-training under torchrun: ranks, backend, gradient averaging, episode slots.

``torchrun --nproc_per_node N -m metastyle meta-train CONFIG`` starts N processes (ranks) with
RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR in their environment; `join` turns them into a
``torch.distributed`` process group. Without those variables `join` returns the single-process
`Ranks` and nothing about a run changes.

One meta-step of an N-rank job with ``meta.meta_batch = B`` is one meta-step over N*B styles:

- **Episode slots.** The global meta-batch has N*B slots; slot ``j`` draws one episode per step
  from its own generator, seeded by `slot_seed(train.seed, j)`, and rank ``r`` owns slots
  ``r*B .. r*B+B-1``. So a torchrun job of N ranks x B draws exactly the episodes of a
  torchrun job of 1 rank x N*B, in the same order (rank 0's slots first); a test checks the
  two end at the same init. (A run without torchrun keeps its one episode stream.)
- **Gradient averaging.** `Ranks.average` runs between backward and the optimizer step: one
  ``all_reduce`` sums the flattened meta-gradients (init and Meta-SGD rates), one sums the
  logged statistics, both divided by N. Clipping and Adam then run on identical inputs on every
  rank, so the ranks' weights stay bit-identical (checked at every checkpoint).
- **Files.** Rank 0 alone writes logs, samples and checkpoints; a checkpoint holds every slot's
  generator state, gathered from all ranks.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from .errors import UserError

BACKENDS = ("auto", "gloo", "nccl")
TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def launched_by_torchrun() -> bool:
    return all(name in os.environ for name in TORCHRUN_VARS)


def slot_seed(seed: int, slot: int) -> int:
    """The seed of episode slot ``slot`` of a torchrun job: the first 63 bits of
    sha256("metastyle-episodes:{seed}:{slot}"), so slots never share a stream with each other or
    with the held-out check (seed + 1)."""
    digest = hashlib.sha256(f"metastyle-episodes:{seed}:{slot}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def resolve_backend(name: str, device: torch.device) -> str:
    """``auto`` = NCCL for CUDA devices, gloo otherwise; an impossible choice is a UserError."""
    if name not in BACKENDS:
        raise UserError(f"train.backend {name!r}: choose one of {', '.join(BACKENDS)}")
    if name == "auto":
        return "nccl" if device.type == "cuda" else "gloo"
    if name == "nccl" and device.type != "cuda":
        raise UserError(f"train.backend 'nccl' needs CUDA devices, this rank runs on "
                        f"{device.type}; use 'gloo' or 'auto'")
    return name


def threads_per_rank(threads: int, ranks: "Ranks") -> int:
    """``train.threads`` > 0 is per rank; 0 shares the node's cores among its ranks."""
    if threads > 0 or not ranks.distributed:
        return threads
    return max(1, (os.cpu_count() or 1) // ranks.local_world_size)


@dataclass
class Ranks:
    """This process's place in the job; the default is the single-process run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    backend: str = ""  # "" = not distributed
    owns_group: bool = False  # `join` created the process group, so `leave` destroys it

    @property
    def distributed(self) -> bool:
        return bool(self.backend)

    @property
    def main(self) -> bool:
        """Rank 0: the one process that writes files."""
        return self.rank == 0

    def describe(self) -> dict:
        """What run files record about the job (nothing for a single process)."""
        if not self.distributed:
            return {}
        return {"world_size": self.world_size, "backend": self.backend}

    def slots(self, meta_batch: int) -> range:
        """The global episode slots this rank draws."""
        return range(self.rank * meta_batch, (self.rank + 1) * meta_batch)

    def average(self, learner: torch.nn.Module, loss: float,
                stats: dict[str, float]) -> tuple[float, dict[str, float]]:
        """Average the meta-gradients and statistics over ranks (a ``meta_step`` hook).

        A rank whose loss was non-finite skipped backward: it sends zeros, and the summed loss
        is non-finite on every rank, so every rank skips the step together.
        """
        params = list(learner.parameters())
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads])
        on_cpu = self.backend == "gloo" and flat.device.type not in ("cpu", "cuda")
        buffer = flat.cpu() if on_cpu else flat
        dist.all_reduce(buffer)
        buffer = buffer.to(flat.device).div_(self.world_size)
        offset = 0
        for p in params:
            n = p.numel()
            if p.grad is not None:
                p.grad.copy_(buffer[offset:offset + n].view_as(p))
            offset += n
        keys = sorted(stats)
        values = torch.tensor([loss] + [stats[k] for k in keys], dtype=torch.float64,
                              device=flat.device if self.backend == "nccl" else "cpu")
        dist.all_reduce(values)
        values = (values / self.world_size).tolist()
        return values[0], dict(zip(keys, values[1:]))

    def gather(self, obj) -> list | None:
        """Every rank's ``obj`` on rank 0 (in rank order); None on the other ranks."""
        if not self.distributed:
            return [obj]
        out = [None] * self.world_size if self.main else None
        dist.gather_object(obj, out, dst=0)
        return out


def join(backend: str, device: torch.device) -> tuple[Ranks, torch.device]:
    """Join the torchrun job this process belongs to (if any) -> (ranks, this rank's device).

    A CUDA device without an index becomes ``cuda:LOCAL_RANK``, one GPU per rank.
    """
    if not launched_by_torchrun():
        return Ranks(), device
    local_rank = int(os.environ["LOCAL_RANK"])
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    name = resolve_backend(backend, device)
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group(name, device_id=device if name == "nccl" else None)
    ranks = Ranks(dist.get_rank(), dist.get_world_size(), local_rank,
                  int(os.environ.get("LOCAL_WORLD_SIZE", dist.get_world_size())),
                  dist.get_backend(), owns)
    return ranks, device


def leave(ranks: Ranks) -> None:
    if ranks.owns_group and dist.is_initialized():
        dist.destroy_process_group()
