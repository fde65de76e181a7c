"""Style and content image sets, manifest splits and episode sampling.

Images are read from disk when sampled, never all held in memory. Which styles are for training
and which are held out comes from the manifest, never from the RNG.
"""

from __future__ import annotations

import csv
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from PIL import Image

from .config import DataConfig
from .errors import UserError
from .images import (MIN_SIDE, list_images, load_image, load_tensor, pil_to_tensor,
                     resize_short_side)


def read_manifest(path: str | Path, kind: str, split: str) -> list[Path]:
    """Files of one kind (``style``/``content``) and split (``train``/``heldout``), sorted."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: manifest not found")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    if rows and not {"file", "kind", "split"} <= set(rows[0]):
        raise UserError(f"{path}: manifest needs file, kind and split columns")
    return sorted(path.parent / r["file"] for r in rows if r["kind"] == kind and r["split"] == split)


def readable_images(paths: list[Path], what: str) -> list[Path]:
    """Keep files whose header Pillow can read; one counted warning for the rest."""
    good, bad = [], []
    for path in paths:
        try:
            with Image.open(path) as img:
                ok = min(img.size) >= MIN_SIDE
        except (OSError, ValueError, Image.DecompressionBombError):
            ok = False
        (good if ok else bad).append(path)
    if bad:
        warnings.warn(f"skipped {len(bad)} unreadable {what} image(s), e.g. {bad[0]}", stacklevel=2)
    if not good:
        raise UserError(f"no readable {what} images (checked {len(paths)})")
    return good


def image_paths(data: DataConfig, kind: str, split: str) -> list[Path]:
    """A split from the manifest, or (train only) every image in the configured folder."""
    folder = data.style_dir if kind == "style" else data.content_dir
    if folder and split == "train":
        paths = list_images(folder)
    else:
        paths = read_manifest(data.manifest, kind, split)
    return readable_images(paths, f"{split} {kind}")


def random_crops(paths: list[Path], count: int, crop: int, gen: torch.Generator,
                 exclude: tuple[int, ...] = (), load: Callable[[Path], Image.Image] = load_image
                 ) -> tuple[torch.Tensor, tuple[int, ...]]:
    """``count`` crops from distinct images (not in ``exclude``): random scale, position, flip.

    ``load`` decodes a path; a caller that crops the same few photos every step passes a cached
    one (the corpus streams from disk, so it keeps the plain loader).
    """
    if count == 0:
        return torch.empty(0, 3, crop, crop), ()
    available = [i for i in range(len(paths)) if i not in set(exclude)]
    if len(available) < count:
        raise UserError(f"need {count} distinct content images, have {len(available)}")
    order = torch.randperm(len(available), generator=gen)[:count].tolist()
    chosen = tuple(available[i] for i in order)
    crops = []
    for index in chosen:
        img = load(paths[index])
        scale = 1.0 + torch.rand((), generator=gen).item()  # short side in [crop, 2*crop]
        short = max(crop, round(crop * scale))
        img = resize_short_side(img, short)
        x = torch.randint(0, img.width - crop + 1, (), generator=gen).item()
        y = torch.randint(0, img.height - crop + 1, (), generator=gen).item()
        tensor = pil_to_tensor(img.crop((x, y, x + crop, y + crop)))
        if torch.rand((), generator=gen).item() < 0.5:
            tensor = tensor.flip(-1)
        crops.append(tensor)
    return torch.cat(crops), chosen


@dataclass
class Episode:
    """One task: a style, a support batch to adapt on, a disjoint query batch to score on."""

    style_path: Path
    style: torch.Tensor  # (1,3,H,W), long side = style_size
    support: torch.Tensor  # (S,3,crop,crop)
    query: torch.Tensor  # (Q,3,crop,crop)

    def to(self, device: torch.device) -> "Episode":
        return Episode(self.style_path, self.style.to(device), self.support.to(device),
                       self.query.to(device))


class EpisodeSampler:
    """Deterministic stream of episodes given a ``torch.Generator``."""

    def __init__(self, styles: list[Path], contents: list[Path], data: DataConfig):
        self.styles, self.contents, self.data = styles, contents, data

    def load_style(self, path: Path) -> torch.Tensor:
        return load_tensor(path, self.data.style_size)

    def sample(self, gen: torch.Generator, support: int, query: int) -> Episode:
        style_path = self.styles[torch.randint(len(self.styles), (), generator=gen).item()]
        support_batch, used = random_crops(self.contents, support, self.data.crop, gen)
        query_batch, _ = random_crops(self.contents, query, self.data.crop, gen, exclude=used)
        return Episode(style_path, self.load_style(style_path), support_batch, query_batch)


DEFAULT_CONTENT = ("astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg")


def default_content_paths() -> list[Path]:
    """Public-domain / CC0 sample photos that ship inside the scikit-image wheel.

    They exist on any machine where metastyle is installed, so `metastyle adapt` works on a
    fresh machine without a content folder (and never reads ../shared).
    """
    import skimage.data

    folder = Path(skimage.data.__file__).parent
    paths = [folder / name for name in DEFAULT_CONTENT]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise UserError(f"{missing[0]}: scikit-image sample photo missing; pass --content DIR")
    return paths
