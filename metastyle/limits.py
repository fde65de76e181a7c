"""The allowed ranges of every number a user gives us, defined once.

The CLI's options, the Python API and the service's form fields all check their values against
these `Range`s (the CLI also shows them in ``--help``), so ``--lr nan``, ``batch=0`` or
``colour_weight=inf`` is refused with the same one-line `UserError` wherever it comes from,
before any work starts. Config files have their own ranges in `metastyle.config.RANGES`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .errors import UserError


@dataclass(frozen=True)
class Range:
    """``low <= value <= high`` (``low < value`` when ``low_open``); floats must be finite."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    integer: bool = False

    def describe(self) -> str:
        kind = "a whole number" if self.integer else "a finite number"
        parts = []
        if self.low is not None:
            parts.append(f"{'>' if self.low_open else '>='} {self.low:g}")
        if self.high is not None:
            parts.append(f"<= {self.high:g}")
        return f"{kind} {' and '.join(parts)}".strip()

    def ok(self, value) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.integer and not isinstance(value, int):
            return False
        if not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or value <= self.high

    def check(self, value, name: str):
        """``value`` if it is in range, else a one-line `UserError` naming ``name``."""
        if not self.ok(value):
            raise UserError(f"{name} {value!r}: must be {self.describe()}")
        return value


# Adaptation (`metastyle adapt`, `metastyle.adapt`, the service's POST /styles). steps 0 is the
# un-adapted base (for an encoder-decoder base: its zero-shot stylization of the style).
ADAPT = {
    "steps": Range(0, 100_000, integer=True),
    "lr": Range(0, 10, low_open=True),
    "batch": Range(1, 256, integer=True),
    "colour_weight": Range(0, 1e6),
    "style_weight": Range(0, 1e6, low_open=True),
    "crop": Range(16, 2048, integer=True),
}

# `--preset` names (presets.PRESETS holds what each sets; kept here so the CLI loads fast)
PRESET_NAMES = ("fast", "quality")
# `--objective` names (presets.OBJECTIVES holds what each minimizes), likewise
OBJECTIVE_NAMES = ("training", "refine")

# Stylization (`metastyle stylize`, `Stylizer.stylize`, POST /styles/{id}/stylize).
TILE_OVERLAP = 64  # pixels neighbouring tiles share (inference.stylize_tensor)
MIN_IMAGE_SIDE = 16  # images.MIN_SIDE: the smallest side the generator takes
STYLIZE = {
    "strength": Range(0, 1),
    "palette": Range(0, 1),
    "detail": Range(0, 1),
    # a tile must be well over the overlap it shares with its neighbours
    "tile": Range(2 * TILE_OVERLAP, 16_384, integer=True),
    "max_size": Range(MIN_IMAGE_SIDE, 100_000, integer=True),
    "max_pixels": Range(1, 10 ** 10, integer=True),
}


# Crop sizes and style-image sides the networks take (images.MIN_SIDE and up): config files,
# model-file metadata and `metastyle export-init` share it.
NETWORK_SIDE = Range(16, 8192, integer=True)

# A student encoder's channels as a fraction of VGG16's (stylenet.StyleNetConfig.student_width;
# 0 = none, the frozen encoder): config files and model-file metadata share it.
STUDENT_WIDTH = Range(0, 1)

# `metastyle export-init`: what a model file records for the styles it is given.
EXPORT = {"style_size": NETWORK_SIDE}


def check_all(ranges: dict[str, Range], values: dict, prefix: str = "") -> None:
    """Check each of ``values`` that is not None against its range in ``ranges``."""
    for key, value in values.items():
        if value is not None and key in ranges:
            ranges[key].check(value, f"{prefix}{key}")
