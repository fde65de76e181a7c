"""Adapt every parameter of an init to one style for thousands of steps on many photos, scoring
held-out crops along the way and showing the sample photo at chosen steps.

Why: it separates what the generator *can* draw (given per-style compute) from what the shipped
init reaches in `metastyle adapt`'s budget (experiments/LOG.md, 2026-11-30, "can this
generator paint the marks?": the marks appear after ~3,000 steps). The photos are the
manifest's train photos (or `--photos sample`: the CLI's 4 defaults); the scored crops are 8
held-out photos, one crop each.

    python experiments/adapt_long.py <style> --steps 3000 --show 0,400,1000,3000 -o long.jpg
"""

from __future__ import annotations

import argparse

import torch

from adapt_settings import heldout_crops
from metastyle.adaptation import adapt, evaluate_terms, fresh_crops
from metastyle.bench import load_init
from metastyle.checkpoint import file_style_size
from metastyle.config import DEFAULT_MANIFEST, LossConfig
from metastyle.corpus import default_content_paths, read_manifest
from metastyle.images import load_tensor, save_image
from metastyle.losses import perceptual_loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("style")
    parser.add_argument("-o", "--output", required=True, help="image: the style, then the shows")
    parser.add_argument("--base", default="shipped")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--lr", type=float, default=0.001)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--photos", choices=("train", "sample"), default="train")
    parser.add_argument("--manifest", default=DEFAULT_MANIFEST,
                        help="where the train photos are listed (the LOG's runs used the 192 px "
                             "copies in .gpu_pack/data/manifest.tsv: faster to decode)")
    parser.add_argument("--every", type=int, default=250, help="score held-out crops this often")
    parser.add_argument("--show", default="0,400,1000,3000", help="steps to show the photo at")
    parser.add_argument("--size", type=int, default=320, help="long side of the shown photo")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    base, meta = load_init(args.base)
    data = meta["config"]["data"]
    judge = perceptual_loss(LossConfig(**meta.get("loss", meta["config"]["loss"])))
    style = load_tensor(args.style, file_style_size(meta))
    targets = judge.style_targets(style)
    photos = (read_manifest(args.manifest, "content", "train") if args.photos == "train"
              else default_content_paths())
    scored = heldout_crops(8, data["crop"])
    photo = load_tensor(default_content_paths()[0], args.size)
    shows = {int(k) for k in args.show.split(",")}
    tiles = [torch.nn.functional.interpolate(style, size=photo.shape[-2:], mode="area")]

    def probe(k, model):
        if k % args.every == 0 or k == args.steps:
            model.eval()
            terms = evaluate_terms(model, judge, targets, scored)
            model.train()
            print(f"k={k} total {terms['total']:.3f} content {terms['content']:.3f} "
                  + " ".join(f"{n.removeprefix('style/')} {v:.3f}" for n, v in terms.items()
                             if n.startswith("style/")), flush=True)
        if k in shows:
            with torch.no_grad():
                tiles.append(model(photo))
            save_image(torch.cat(tiles, dim=-1), args.output)

    result = adapt(base, judge, targets, fresh_crops(photos, args.batch, data["crop"], 0),
                   args.steps, args.lr, subset="all", probe=probe)
    print(f"{args.steps} steps in {result.seconds:.0f} s")


if __name__ == "__main__":
    main()
