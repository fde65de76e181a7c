"""Pack what a meta-training run on the lent GPU machine needs into one folder (~37 MB).

Why: the device machine (library `device` tool) receives only the working tree, 64 MiB in all;
../shared/data (108 MB) and the cached encoder (57 MB) do not travel. The recipe this is for
(experiments/gpu.toml, the shipped recipe at a GPU's batch and step budget) only ever
sees styles at 192 px and photos whose short side is scaled into [crop, 2*crop], so the images
are stored at exactly that resolution, and the encoder keeps only the convolutions up to
relu4_3 (its deepest loss layer) in float16; `--unpack-encoder` rebuilds a full file there.
The pack is research data: it goes to a gitignored folder and is never committed.

    python experiments/gpu_pack.py -o .gpu_pack                 # on this machine (needs ../shared)
    python experiments/gpu_pack.py --unpack-encoder .gpu_pack   # on the device machine
"""

from __future__ import annotations

import argparse
import csv
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from metastyle.config import DEFAULT_MANIFEST
from metastyle.encoders import VGG16_CFG, cache_dir, hed_weights_file, vgg_trunk
from metastyle.images import load_image, resize_long_side, resize_short_side

STYLE_SIDE = 192  # long side: the recipe's data.style_size
PHOTO_SHORT = 192  # short side: 2 * the recipe's 96 px crop, the largest scale random_crops uses
# features.N indices of VGG16's convolutions up to conv4_3 (relu4_3 is the deepest loss layer).
USED_CONVS = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21)


def pack_images(manifest: Path, out: Path) -> int:
    """Resized copies of every manifest image plus the manifest itself; image bytes written."""
    with open(manifest, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    total = 0
    for row in rows:
        img = load_image(manifest.parent / row["file"])
        if row["kind"] == "style":
            img = resize_long_side(img, STYLE_SIDE)
        elif min(img.size) > PHOTO_SHORT:
            img = resize_short_side(img, PHOTO_SHORT)
        target = out / "data" / row["file"]
        target.parent.mkdir(parents=True, exist_ok=True)
        img.save(target, quality=85)
        total += target.stat().st_size
    shutil.copyfile(manifest, out / "data" / "manifest.tsv")  # same relative paths
    return total


def pack_encoder(out: Path) -> None:
    """The used convolutions of the offline VGG16, float16 (half the bytes, a 5e-4 relative
    rounding: smaller than the bf16 autocast the recipe already trains under)."""
    state = load_file(str(hed_weights_file()))
    kept = {k: v.half() for k, v in state.items() if int(k.split(".")[0]) in USED_CONVS}
    save_file(kept, str(out / "vgg16-hed-conv1-4.f16.safetensors"))


def unpack_encoder(pack: Path) -> Path:
    """Write a loadable vgg16-hed.safetensors into $METASTYLE_CACHE: the packed convolutions in
    float32, conv5 zero-filled (the trunk stops at the deepest requested layer, so it never runs)."""
    state = {k: v.float() for k, v in load_file(str(pack / "vgg16-hed-conv1-4.f16.safetensors")).items()}
    for name, tensor in vgg_trunk(VGG16_CFG).state_dict().items():
        state.setdefault(name, torch.zeros_like(tensor))
    target = cache_dir() / "vgg16-hed.safetensors"
    target.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(target))
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, default=Path(".gpu_pack"))
    parser.add_argument("--manifest", type=Path, default=Path(DEFAULT_MANIFEST))
    parser.add_argument("--unpack-encoder", type=Path, metavar="PACK",
                        help="on the device machine: rebuild the encoder cache from PACK")
    args = parser.parse_args()
    if args.unpack_encoder:
        print(f"encoder -> {unpack_encoder(args.unpack_encoder)}")
        return
    args.output.mkdir(parents=True, exist_ok=True)
    images = pack_images(args.manifest, args.output)
    pack_encoder(args.output)
    total = sum(f.stat().st_size for f in args.output.rglob("*") if f.is_file())
    print(f"{args.output}: images {images / 1e6:.1f} MB, all {total / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
