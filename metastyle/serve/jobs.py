"""A bounded pool for adaptation jobs: fixed worker threads and a fixed-size waiting queue.

Adapting a style keeps the CPU busy for seconds to minutes, so the service must not start one
thread per upload: a burst of uploads would slow every job to a crawl and exhaust memory.
A fixed number of workers run jobs; at most ``queue_size`` more wait; beyond that `submit`
raises `QueueFull` at once (HTTP 429) instead of accepting work it cannot do soon.
Jobs report progress (step, loss) so the web page can draw a bar with an ETA.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import UserError

log = logging.getLogger(__name__)


class QueueFull(Exception):
    """Every worker is busy and the waiting queue is full."""


@dataclass
class Job:
    steps: int
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    state: str = "queued"  # queued -> running -> done | failed
    step: int = 0  # completed steps
    loss: float | None = None
    error: str | None = None
    started: float | None = None

    @property
    def active(self) -> bool:
        """Queued or running: not finished yet."""
        return self.state in ("queued", "running")

    def progress(self, step: int, loss: float) -> None:
        """An ``on_step(i, loss)`` callback (i counts from 0)."""
        self.step, self.loss = step + 1, loss

    def status(self) -> dict:
        eta = None
        if self.state == "running" and self.step and self.started is not None:
            per_step = (time.monotonic() - self.started) / self.step
            eta = round(per_step * (self.steps - self.step), 1)
        elif self.state == "done":
            eta = 0.0
        loss = self.loss if self.loss is not None and math.isfinite(self.loss) else None
        return {"state": self.state, "step": self.step, "steps": self.steps, "loss": loss,
                "eta_seconds": eta, "error": self.error}


class JobPool:
    """``workers`` threads run jobs; at most ``queue_size`` more wait for a free worker.

    Finished jobs are remembered (for polling) up to ``history`` of them, oldest dropped first.
    """

    def __init__(self, workers: int = 1, queue_size: int = 4, history: int = 1000):
        if workers < 1 or queue_size < 0:
            raise UserError(f"need workers >= 1 and queue >= 0, got {workers} and {queue_size}")
        self._capacity = workers + queue_size  # jobs queued or running at once
        self._queue: queue.SimpleQueue = queue.SimpleQueue()  # bounded by _capacity, not here
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self._history = history
        self._closed = False
        self._threads = [threading.Thread(target=self._work, name=f"adapt-{i}", daemon=True)
                         for i in range(workers)]
        for thread in self._threads:
            thread.start()

    def submit(self, steps: int, work: Callable[[Job], None]) -> Job:
        """Queue ``work(job)``; raises `QueueFull` when every worker and queue slot is taken."""
        job = self.reserve(steps)
        self.start(job, work)
        return job

    def reserve(self, steps: int) -> Job:
        """Take a slot for a job before its input is prepared (so a full pool costs a caller
        nothing); then `start` it, or `release` the slot. Raises `QueueFull`."""
        job = Job(steps)
        with self._lock:
            active = sum(j.active for j in self._jobs.values())
            if self._closed or active >= self._capacity:
                raise QueueFull
            self._jobs[job.id] = job
            self._forget_old()
        return job

    def start(self, job: Job, work: Callable[[Job], None]) -> None:
        """Queue ``work(job)`` for a reserved job."""
        self._queue.put((job, work))

    def release(self, job: Job) -> None:
        """Give back a reserved job's slot (its input was bad); the job is forgotten."""
        with self._lock:
            self._jobs.pop(job.id, None)

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def shutdown(self) -> None:
        """Refuse new jobs and fail the waiting ones; workers exit after their current job."""
        with self._lock:
            self._closed = True
        for _ in self._threads:
            self._queue.put(None)

    def _forget_old(self) -> None:
        finished = [i for i, job in self._jobs.items() if job.state in ("done", "failed")]
        for job_id in finished[:max(0, len(self._jobs) - self._history)]:
            del self._jobs[job_id]

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            job, work = item
            if self._closed:
                job.state, job.error = "failed", "the server stopped before this job started"
                continue
            job.state, job.started = "running", time.monotonic()
            try:
                work(job)
                job.state = "done"
            except UserError as exc:
                job.state, job.error = "failed", str(exc)
            except Exception as exc:  # a bug: keep the worker alive, log the traceback
                log.exception("adaptation job %s failed", job.id)
                job.state, job.error = "failed", f"internal error ({type(exc).__name__})"
