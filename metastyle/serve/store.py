"""Adapted styles on disk: ``<id>.safetensors`` (the delta) + ``<id>.json`` (name, date, stats).

Keeping styles as files in one folder makes them survive restarts with nothing to migrate,
and the ``.json`` is written last, so a style is listed only once its model is complete.
Ids are server-made uuid4 hex strings and every path is built from an id that has passed
`valid_id`, so nothing a client sends can name a file outside the folder.
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
import time
import uuid
from collections import OrderedDict
from pathlib import Path

from ..errors import UserError
from ..images import atomic_write_bytes, check_writable
from ..stylizer import Stylizer, load_stylizer

log = logging.getLogger(__name__)

# What a style's JSON record must hold (and the types) to be listed; anything else in a record
# is kept as it is. Numbers must be finite: JSON has no NaN or infinity.
_NUMBER = (int, float)
RECORD_SCHEMA = {"id": str, "created": _NUMBER, "name": str, "preset": str, "subset": str,
                 "steps": int}
OPTIONAL_SCHEMA = {"colour_weight": _NUMBER, "seconds": _NUMBER, "loss_before": _NUMBER,
                   "loss_after": _NUMBER, "job_id": str, "job_loss": _NUMBER}


def record_problem(record, style_id: str) -> str | None:
    """Why a stored record cannot be served (None if it can)."""
    if not isinstance(record, dict):
        return f"not a JSON object ({type(record).__name__})"
    for key, expected in RECORD_SCHEMA.items():
        if key not in record:
            return f"no {key!r}"
    for key, expected in (RECORD_SCHEMA | OPTIONAL_SCHEMA).items():
        value = record.get(key)
        if value is None and key in OPTIONAL_SCHEMA:
            continue
        if isinstance(value, bool) or not isinstance(value, expected):
            return f"{key!r} is {value!r}"
        if isinstance(value, float) and not math.isfinite(value):
            return f"{key!r} is {value!r}, not a finite number"
    if record["id"] != style_id:
        return f"its id {record['id']!r} is not its file name's"
    return None

_ID = re.compile(r"[0-9a-f]{32}")


def new_id() -> str:
    return uuid.uuid4().hex


def valid_id(text: str) -> bool:
    return _ID.fullmatch(text) is not None


class StyleStore:
    """The styles in ``root``; loaded `Stylizer`s are kept in a small LRU cache."""

    def __init__(self, root: str | Path, cache_size: int = 8):
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise UserError(f"{self.root}: the data folder is a file, not a folder; "
                            "give --data-dir a folder (it is created if missing)")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(f"{self.root}: cannot create the data folder "
                            f"({e.strerror or e})") from None
        check_writable(self.root / "write-check")
        self._cache: OrderedDict[str, Stylizer] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def _path(self, style_id: str, suffix: str) -> Path:
        if not valid_id(style_id):
            raise KeyError(style_id)
        return self.root / f"{style_id}{suffix}"

    def add(self, style_id: str, stylizer: Stylizer, info: dict) -> dict:
        """Persist a new style; ``info`` (name, stats) goes into its JSON with id and date.

        A record that would not be served back (a non-finite number, ...) is refused here,
        before anything is written."""
        record = {"id": style_id, "created": time.time(), **info}
        problem = record_problem(record, style_id)
        if problem is not None:
            raise UserError(f"style {info.get('name', style_id)!r} not stored: {problem}")
        stylizer.save(self._path(style_id, ".safetensors"))
        atomic_write_bytes(self._path(style_id, ".json"), json.dumps(record).encode())
        self._remember(style_id, stylizer)
        return record

    def info(self, style_id: str) -> dict | None:
        """The style's JSON record, or None if there is no complete style with this id."""
        try:
            meta, model = self._path(style_id, ".json"), self._path(style_id, ".safetensors")
        except KeyError:
            return None
        if not (meta.is_file() and model.is_file()):
            return None
        try:
            record = json.loads(meta.read_text())
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            problem = f"unreadable ({type(exc).__name__})"
        else:
            problem = record_problem(record, style_id)
        if problem is not None:  # one bad file must not take down the listing
            log.warning("style %s: skipping its record %s: %s", style_id, meta, problem)
            return None
        return record

    def styles(self) -> list[dict]:
        """Every complete style with a valid record, newest first (bad records are skipped
        with a logged warning)."""
        records = (self.info(p.stem) for p in self.root.glob("*.json"))
        return sorted((r for r in records if r), key=lambda r: r["created"], reverse=True)

    def find_job(self, job_id: str) -> dict | None:
        """The record of the style that job ``job_id`` made, if it finished and was stored."""
        return next((r for r in self.styles() if r.get("job_id") == job_id), None)

    def stylizer(self, style_id: str) -> Stylizer | None:
        if self.info(style_id) is None:
            return None
        with self._lock:
            if style_id in self._cache:
                self._cache.move_to_end(style_id)
                return self._cache[style_id]
        stylizer = load_stylizer(self._path(style_id, ".safetensors"))
        self._remember(style_id, stylizer)
        return stylizer

    def delete(self, style_id: str) -> bool:
        """Remove a style (JSON first, so it is never listed half-deleted); False if unknown.
        A style whose record is bad can still be deleted."""
        try:
            paths = [self._path(style_id, suffix) for suffix in (".json", ".safetensors")]
        except KeyError:
            return False
        if not any(p.is_file() for p in paths):
            return False
        with self._lock:
            self._cache.pop(style_id, None)
        for suffix in (".json", ".safetensors"):
            self._path(style_id, suffix).unlink(missing_ok=True)
        return True

    def _remember(self, style_id: str, stylizer: Stylizer) -> None:
        with self._lock:
            self._cache[style_id] = stylizer
            self._cache.move_to_end(style_id)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
