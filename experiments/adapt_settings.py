"""Compare `metastyle adapt` settings (K, lr, subset, style and colour weight) on styles, side by side.

Why: the benchmark scores losses under the init's own objective; whether a preview is *visibly*
in the style also depends on settings it does not vary (the adaptation style weight). This
adapts one base to each style under each setting on the same support crops (scikit-image's
sample photos, as `metastyle adapt` does), prints the loss terms under the base's objective,
and writes one image grid (rows: styles; columns: the style, then each setting).

    python experiments/adapt_settings.py BASE STYLE... -o grid.jpg \
        --setting 10,0.03,norm,1 --setting 50,0.1,norm,3,2,10
    python experiments/adapt_settings.py shipped STYLE... -o grid.jpg --fresh \
        --preset fast --preset quality
"""

from __future__ import annotations

import argparse
import dataclasses

import torch

from metastyle.adapt_file import SUPPORT_CROPS
from metastyle.adaptation import (adapt, adaptation_crops, cycle_batches, evaluate_terms,
                                  fresh_crops)
from metastyle.bench import load_init
from metastyle.checkpoint import file_style_size
from metastyle.config import DEFAULT_MANIFEST, LossConfig
from metastyle.corpus import default_content_paths, random_crops, read_manifest
from metastyle.images import load_tensor, save_image
from metastyle.inference import stylize_tensor
from metastyle.losses import PerceptualLoss, perceptual_loss
from metastyle.presets import PRESETS, resolve_settings
from metastyle.runtime import seeded_generator


def parse_setting(text: str) -> tuple[int, float, str, float, int, float]:
    steps, lr, subset, style_weight, *rest = text.split(",")
    batch = int(rest[0]) if rest else 2
    colour_weight = float(rest[1]) if len(rest) > 1 else 0.0
    return int(steps), float(lr), subset, float(style_weight), batch, colour_weight


def heldout_crops(count: int, crop: int) -> torch.Tensor:
    """``count`` crops of the manifest's held-out photos (never adapted on), one per photo."""
    return random_crops(read_manifest(DEFAULT_MANIFEST, "content", "heldout"), count, crop,
                        seeded_generator(1))[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base")
    parser.add_argument("styles", nargs="+")
    parser.add_argument("-o", "--output", required=True)
    parser.add_argument("--setting", action="append", type=parse_setting, default=[],
                        help="K,lr,subset,style_weight[,batch[,colour_weight]] "
                             "(batch 2 and colour weight 0 if not given)")
    parser.add_argument("--preset", action="append", choices=sorted(PRESETS), default=[],
                        help="a `metastyle adapt --preset` setting at the base's style weight")
    parser.add_argument("--size", type=int, default=256, help="long side of the shown photo")
    parser.add_argument("--style-size", type=int, default=0,
                        help="long side of the style image for the Gram targets (0 = the base's)")
    parser.add_argument("--photo", default="",
                        help="the photo shown (default: the first adaptation photo, astronaut)")
    parser.add_argument("--crop", type=int, default=0,
                        help="side of the adaptation crops (0 = the base's training crop)")
    parser.add_argument("--heldout", type=int, default=0,
                        help="score on this many crops of held-out photos (../shared, one per "
                             "photo) instead of the adaptation crops")
    parser.add_argument("--fresh", action="store_true",
                        help="new random crops every step instead of cycling the fixed support "
                             "set (the printed loss stays on the fixed set)")
    args = parser.parse_args()

    base, meta = load_init(args.base)
    data = meta.get("config", {}).get("data", {})
    loss_cfg = LossConfig(**meta.get("loss", meta.get("config", {}).get("loss", {})))
    for name in args.preset:
        chosen = resolve_settings(meta, preset=name)
        args.setting.append((chosen.steps, chosen.lr, chosen.subset, loss_cfg.style_weight,
                             chosen.batch, chosen.colour_weight))
    if not args.setting:
        parser.error("give at least one --setting or --preset")
    judge = perceptual_loss(loss_cfg)
    contents = default_content_paths()
    crop = args.crop or data.get("crop", 96)
    support = adaptation_crops(contents, SUPPORT_CROPS, crop, seeded_generator(0))
    scored = heldout_crops(args.heldout, crop) if args.heldout else support
    photo = load_tensor(args.photo or contents[0], args.size)
    rows = []
    for style_path in args.styles:
        style_size = args.style_size or file_style_size(meta)
        style = load_tensor(style_path, style_size)
        shown = [torch.nn.functional.interpolate(style, size=photo.shape[-2:], mode="area")]
        targets = judge.style_targets(style)  # Gram targets do not depend on the loss weights
        for steps, lr, subset, style_weight, batch, colour_weight in args.setting:
            objective = PerceptualLoss(judge.encoder, dataclasses.replace(
                loss_cfg, style_weight=style_weight, colour_weight=colour_weight))
            batches = (fresh_crops(contents, batch, crop, 0) if args.fresh
                       else cycle_batches(support, batch))
            result = adapt(base, objective, targets, batches, steps, lr, subset=subset)
            terms = evaluate_terms(result.model, judge, targets, scored)
            print(f"{style_path.rsplit('/', 1)[-1]}  K={steps} lr={lr} {subset} sw={style_weight} "
                  f"cw={colour_weight} batch {batch}: "
                  f"total {terms['total']:.3f} content {terms['content']:.3f} "
                  f"style {terms['style']:.3f} colour {terms['colour']:.4f} "
                  f"({result.seconds:.1f} s); style per layer "
                  + " ".join(f"{k.removeprefix('style/')} {v:.3f}" for k, v in terms.items()
                             if k.startswith("style/")))
            shown.append(stylize_tensor(result.model, photo))
        rows.append(torch.cat(shown, dim=-1))
    save_image(torch.cat(rows, dim=-2), args.output)


if __name__ == "__main__":
    main()
