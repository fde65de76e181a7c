"""Styles still being learned, served meanwhile by their zero-shot (k = 0) model.

An encoder-decoder base stylizes any painting in one forward pass from its style code, so a
style is usable the moment it is uploaded; its adaptation job then refines it, and the stored
(adapted) style replaces the zero-shot one. A Johnson base has no zero-shot model: with it
nothing is kept here and a style is usable once its adaptation is stored, as before.
The zero-shot models live in memory only, one per style, for as long as the style's job is
queued or running; the service bounds how many jobs that is.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from ..stylizer import Stylizer, zero_shot
from .jobs import Job


@dataclass
class _Learning:
    job: Job
    record: dict  # what GET /styles lists for the style
    image: Image.Image | None  # the style image until its zero-shot model is made
    stylizer: Stylizer | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


class ZeroShotStyles:
    """The styles whose adaptation ``job`` is queued or running, on ``base`` (a model file with
    its metadata ``base_meta``); ``available`` says whether that base has a zero-shot model."""

    def __init__(self, base: Path, base_meta: dict):
        self.base = base
        self.available = base_meta["generator"].get("kind") == "stylenet"
        self._styles: dict[str, _Learning] = {}
        self._lock = threading.Lock()

    def add(self, style_id: str, job: Job, image: Image.Image, info: dict) -> None:
        """Serve ``style_id`` (the style ``image``, listed with ``info``) by its zero-shot
        model while ``job`` learns it; with a base that has none this does nothing."""
        if self.available:
            record = {"id": style_id, "created": time.time(), **info, "zero_shot": True}
            with self._lock:
                self._styles[style_id] = _Learning(job, record, image)

    def remove(self, style_id: str) -> None:
        with self._lock:
            self._styles.pop(style_id, None)

    def serves(self, job: Job) -> bool:
        """Whether the style ``job`` learns is served by its zero-shot model now."""
        return self.available and job.active

    def _learning(self, style_id: str) -> _Learning | None:
        with self._lock:
            learning = self._styles.get(style_id)
        return learning if learning is not None and learning.job.active else None

    def record(self, style_id: str) -> dict | None:
        """The listing of ``style_id`` while it is served zero-shot, else None."""
        learning = self._learning(style_id)
        return learning.record if learning is not None else None

    def records(self) -> list[dict]:
        with self._lock:
            learning = list(self._styles.values())
        return [entry.record for entry in learning if entry.job.active]

    def stylizer(self, style_id: str) -> Stylizer | None:
        """The zero-shot `Stylizer` of ``style_id`` (made on the first call, from the style
        image's code, then kept), or None once the style is no longer being learned."""
        learning = self._learning(style_id)
        if learning is None:
            return None
        with learning.lock:  # concurrent first requests make it once
            if learning.stylizer is None:
                learning.stylizer = zero_shot(learning.image, self.base)
                learning.image = None  # the job keeps its own reference while it needs one
            return learning.stylizer
