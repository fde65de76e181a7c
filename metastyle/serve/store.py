"""Adapted styles on disk: ``<id>.safetensors`` (the delta) + ``<id>.json`` (name, date, stats).

Keeping styles as files in one folder makes them survive restarts with nothing to migrate,
and the ``.json`` is written last, so a style is listed only once its model is complete.
Ids are server-made uuid4 hex strings and every path is built from an id that has passed
`valid_id`, so nothing a client sends can name a file outside the folder.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections import OrderedDict
from pathlib import Path

from ..images import atomic_write_bytes
from ..stylizer import Stylizer, load_stylizer

_ID = re.compile(r"[0-9a-f]{32}")


def new_id() -> str:
    return uuid.uuid4().hex


def valid_id(text: str) -> bool:
    return _ID.fullmatch(text) is not None


class StyleStore:
    """The styles in ``root``; loaded `Stylizer`s are kept in a small LRU cache."""

    def __init__(self, root: str | Path, cache_size: int = 8):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._cache: OrderedDict[str, Stylizer] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def _path(self, style_id: str, suffix: str) -> Path:
        if not valid_id(style_id):
            raise KeyError(style_id)
        return self.root / f"{style_id}{suffix}"

    def add(self, style_id: str, stylizer: Stylizer, info: dict) -> dict:
        """Persist a new style; ``info`` (name, stats) goes into its JSON with id and date."""
        stylizer.save(self._path(style_id, ".safetensors"))
        record = {"id": style_id, "created": time.time(), **info}
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
        return json.loads(meta.read_text())

    def styles(self) -> list[dict]:
        """Every complete style, newest first."""
        records = (self.info(p.stem) for p in self.root.glob("*.json"))
        return sorted((r for r in records if r), key=lambda r: r["created"], reverse=True)

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
        """Remove a style (JSON first, so it is never listed half-deleted); False if unknown."""
        if self.info(style_id) is None:
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
