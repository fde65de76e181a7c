"""A progress bar with loss and ETA for every long loop (or nothing, for tests and logs)."""

from __future__ import annotations

import sys


class StepBar:
    """``bar.update(step, loss)`` after each step; ``close()`` when done (or use ``with``).

    Shows nothing when disabled or when stderr is not a terminal-like stream we can draw on.
    """

    def __init__(self, label: str, total: int, done: int = 0, enabled: bool = True):
        self.bar = None
        if enabled:
            from rich.console import Console
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                       TimeElapsedColumn, TimeRemainingColumn)
            self.bar = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(),
                                TextColumn("loss {task.fields[loss]:.3f}"), TimeElapsedColumn(),
                                TimeRemainingColumn(), console=Console(file=sys.stderr))
            self.bar.start()
            self.task = self.bar.add_task(label, total=total, completed=done, loss=float("nan"))

    def update(self, step: int, loss: float) -> None:
        """``step`` counts completed steps (1-based)."""
        if self.bar:
            self.bar.update(self.task, completed=step, loss=loss)

    def callback(self):
        """An ``on_step(i, loss)`` for loops that count from 0."""
        return lambda i, loss: self.update(i + 1, loss)

    def close(self) -> None:
        if self.bar:
            self.bar.stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
