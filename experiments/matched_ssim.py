"""Compare models at a matched SSIM: each model's judge scores, interpolated linearly in SSIM
between the AdaIN strengths it was scored at (experiments/stylenet_eval.py runs on one set).

    python experiments/matched_ssim.py --ssim 0.472 runs/eval-a runs/eval-b ...

Each folder's scores.json is one model: its ``zero-shot`` column (at the strength the file
records, or ``--base-strength`` for files from before it did) and variants named
``s<strength>`` (``--variant s0.9:steps=0,strength=0.9``). SSIM must fall as the strength
rises. A model whose SSIMs all lie below the target has no value there; one whose SSIMs all
lie above it is read at its highest strength, which understates it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

KEYS = ("strength", "ssim", "gram_gain", "embedding_gain")


def curve(scores: dict, base_strength: float) -> list[dict]:
    """The (strength, mean scores) points of one eval, by falling SSIM = rising strength."""
    points = []
    for column, means in scores["means"].items():
        if column == "zero-shot":
            points.append({**means, "strength": scores.get("zero_shot_strength", base_strength)})
        elif column.startswith("s") and column[1:].replace(".", "", 1).isdigit():
            points.append({**means, "strength": float(column[1:])})
    points.sort(key=lambda p: p["strength"])
    if len(points) < 2 or any(a["ssim"] < b["ssim"] for a, b in zip(points, points[1:])):
        raise SystemExit("need >= 2 strengths whose SSIM falls as the strength rises; got "
                         + ", ".join(f"{p['strength']:g}: {p['ssim']:.3f}" for p in points))
    return points


def at_ssim(points: list[dict], target: float) -> dict | None:
    """The scores interpolated at SSIM ``target`` (None if every point lies below it)."""
    if points[0]["ssim"] < target:
        return None
    for high, low in zip(points, points[1:]):  # high SSIM (low strength) first
        if low["ssim"] <= target <= high["ssim"]:
            t = (high["ssim"] - target) / max(high["ssim"] - low["ssim"], 1e-12)
            return {k: high[k] + t * (low[k] - high[k]) for k in KEYS}
    return points[-1]  # every point above the target: its highest strength


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("evals", type=Path, nargs="+")
    parser.add_argument("--ssim", type=float, required=True)
    parser.add_argument("--base-strength", type=float, default=1.0)
    args = parser.parse_args()
    for folder in args.evals:
        points = curve(json.loads((folder / "scores.json").read_text()), args.base_strength)
        shown = "  ".join(f"s{p['strength']:g}: {p['gram_gain']:.3f}/{p['embedding_gain']:.3f}/"
                          f"{p['ssim']:.3f}" for p in points)
        value = at_ssim(points, args.ssim)
        verdict = ("not eligible: every SSIM below the target" if value is None else
                   f"strength {value['strength']:.3f}, SSIM {value['ssim']:.3f}, Gram "
                   f"{value['gram_gain']:.3f}, embedding {value['embedding_gain']:.3f}"
                   + (" (highest strength, above the target)" if value["ssim"] > args.ssim
                      else ""))
        print(f"{folder} (Gram/embedding/SSIM)\n  {shown}\n  at SSIM {args.ssim}: {verdict}")


if __name__ == "__main__":
    main()
