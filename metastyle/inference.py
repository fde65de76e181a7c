"""Apply a (possibly adapted) generator to user photos of any size.

A full-resolution photo run through the network in one pass needs activation memory
proportional to its pixel count (tens of GB for a 40 MP image), so large images are
processed in overlapping tiles and blended back together: memory is bounded by the tile
size, not the photo. Pixels at a tile's inner edges are unreliable (their receptive field
reaches the tile's padding) and the Johnson generator's instance norms see per-tile statistics,
so tiles do not agree exactly where they overlap: each tile's inner edge is dropped and a smooth
cross-fade across the rest of the overlap hides the difference instead of leaving a seam.

The encoder-decoder generator's AdaIN normalizes a photo's features by their statistics, and
per-tile ones would stylize a tile of sky and a tile of ground as two photos: a patchwork no
cross-fade hides. Such a model takes two passes instead: the first encodes every tile and
gathers the whole photo's statistics from the part of each tile it owns (the image split at the
middle of every overlap), the second stylizes every tile with them (`StyleNet.for_tiles`).

Outputs go to ``<stem>_<tag>.jpg`` and never overwrite an input file; every input is
decoded (and so validated) before the first output is written.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable
from pathlib import Path

import torch
from torch import nn

from .errors import UserError
from .limits import STYLIZE, TILE_OVERLAP
from .images import (
    DEFAULT_MAX_PIXELS,
    list_images,
    load_image,
    pil_to_tensor,
    resize_long_side,
    save_image,
)


def _tile_starts(size: int, tile: int, stride: int) -> list[int]:
    """Tile offsets along one axis; the last tile is flush with the far border."""
    if size <= tile:
        return [0]
    return list(range(0, size - tile, stride)) + [size - tile]


def _tile_weight(start: int, length: int, size: int, overlap: int) -> torch.Tensor:
    """1-D blend weight for one tile; image borders keep weight 1.

    At each interior edge the outer ``overlap // 4`` pixels get weight 0 (their receptive field
    hits the tile's padding), then a raised cosine rises to 1 across the middle of the overlap.
    With at most half the overlap discarded, some tile covers every pixel with weight > 0.
    """
    margin = overlap // 4
    rise = overlap - 2 * margin
    ramp = torch.cat([torch.zeros(margin),
                      0.5 - 0.5 * torch.cos(math.pi * (torch.arange(rise) + 0.5) / rise)])
    w = torch.ones(length)
    if overlap > 0:
        if start > 0:
            w[:len(ramp)] *= ramp
        if start + length < size:
            w[-len(ramp):] *= ramp.flip(0)
    return w


def _owned_spans(starts: list[int], length: int, size: int) -> list[tuple[int, int]]:
    """Split [0, size) between the tiles at ``starts`` at the middle of each overlap."""
    cuts = [0] + [(a + length + b) // 2 for a, b in zip(starts, starts[1:])] + [size]
    return list(zip(cuts, cuts[1:]))


def check_tiling(tile: int, overlap: int = TILE_OVERLAP, max_size: int | None = None) -> None:
    """One-line `UserError`s for a tile no larger than its overlap or a too-small ``max_size``
    (before any work, instead of a ValueError from `stylize_tensor`)."""
    if max_size is not None:
        STYLIZE["max_size"].check(max_size, "max size")
    if isinstance(tile, bool) or not isinstance(tile, int) or not 0 <= overlap < tile:
        raise UserError(f"tile {tile!r}: must be a whole number larger than the {overlap} px "
                        "that neighbouring tiles overlap")


def _model_device(model: nn.Module, fallback: torch.device) -> torch.device:
    param = next(model.parameters(), None)
    return fallback if param is None else param.device


def stylize_tensor(
    model: nn.Module, image: torch.Tensor, tile: int = 512, overlap: int = TILE_OVERLAP
) -> torch.Tensor:
    """Stylize a (1, 3, H, W) image in [0, 1] of any size; returns (1, 3, H, W) in [0, 1].

    Images no larger than ``tile`` on both sides take one pass; larger ones are split into
    ``tile``-sized tiles overlapping by at least ``overlap`` pixels. The network runs on the
    model's device, one tile at a time; the result is assembled on the image's device.
    A model with a ``for_tiles(image, tiles)`` method is first given every tile's box and the
    box it owns ((top, bottom, left, right) each; the owned boxes partition the image) and
    returns the model that stylizes the tiles.
    """
    if not 0 <= overlap < tile:
        raise ValueError(f"need 0 <= overlap < tile, got overlap={overlap}, tile={tile}")
    if image.dim() != 4 or image.shape[:2] != (1, 3):
        raise ValueError(f"expected a (1, 3, H, W) image, got {tuple(image.shape)}")
    device = _model_device(model, image.device)
    height, width = image.shape[-2:]
    with torch.inference_mode():
        if height <= tile and width <= tile:
            return model(image.to(device)).to(image.device, torch.float32).clamp(0, 1)
        th, tw = min(tile, height), min(tile, width)
        stride = tile - overlap
        ys, xs = _tile_starts(height, tile, stride), _tile_starts(width, tile, stride)
        rows = [(y, _tile_weight(y, th, height, overlap)) for y in ys]
        cols = [(x, _tile_weight(x, tw, width, overlap)) for x in xs]
        if hasattr(model, "for_tiles"):
            model = model.for_tiles(image, [
                ((y, y + th, x, x + tw), (top, bottom, left, right))
                for y, (top, bottom) in zip(ys, _owned_spans(ys, th, height))
                for x, (left, right) in zip(xs, _owned_spans(xs, tw, width))])
        out = torch.zeros(1, 3, height, width, device=image.device)
        # The tile grid is a product of row and column tiles, so the summed 2-D weight is the
        # outer product of the summed 1-D weights: no full-size weight buffer needed.
        row_total, col_total = torch.zeros(height), torch.zeros(width)
        for y, wy in rows:
            row_total[y:y + th] += wy
        for x, wx in cols:
            col_total[x:x + tw] += wx
        for y, wy in rows:
            for x, wx in cols:
                patch = model(image[..., y:y + th, x:x + tw].to(device))
                weight = (wy[:, None] * wx[None, :]).to(image.device)
                out[..., y:y + th, x:x + tw] += patch.to(image.device, torch.float32) * weight
        total = (row_total[:, None] * col_total[None, :]).to(image.device)
        return out.div_(total).clamp_(0, 1)


def output_path(
    input_path: Path, out_dir: Path | None, tag: str, taken: Collection[Path] = ()
) -> Path:
    """``<out_dir or input's folder>/<stem>_<tag>.jpg``, with ``_1``, ``_2``, ... appended
    while it would be the input itself or a path in ``taken`` (resolved inputs and outputs
    already assigned)."""
    input_path = Path(input_path)
    folder = Path(out_dir) if out_dir is not None else input_path.parent
    avoid = {input_path.resolve(), *(Path(p).resolve() for p in taken)}
    candidate = folder / f"{input_path.stem}_{tag}.jpg"
    n = 0
    while candidate.resolve() in avoid:
        n += 1
        candidate = folder / f"{input_path.stem}_{tag}_{n}.jpg"
    return candidate


def collect_inputs(inputs: Iterable[Path]) -> list[Path]:
    """Expand folders to their images; keep files as given; drop duplicates (order kept)."""
    inputs = [Path(p) for p in inputs]
    found: dict[Path, Path] = {}
    for path in inputs:
        if path.is_dir():
            files = list_images(path)
        elif path.is_file():
            files = [path]
        else:
            raise UserError(f"{path}: file or folder not found")
        for f in files:
            found.setdefault(f.resolve(), f)
    if not found:
        raise UserError("no images found in: " + ", ".join(str(p) for p in inputs))
    return list(found.values())


def stylize_files(
    model: nn.Module,
    inputs: Iterable[Path],
    out_dir: Path | None = None,
    tag: str = "stylized",
    max_size: int | None = None,
    tile: int = 512,
    *,
    overlap: int = TILE_OVERLAP,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    transform: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> list[Path]:
    """Stylize image files and folders; return the JPEGs written, in input order.

    Images whose long side exceeds ``max_size`` are downscaled first (never upscaled).
    ``transform(stylized, photo)``, if given, post-processes each result (e.g. colour
    preservation) before it is saved.
    Every input is loaded once up front, so a bad file raises `UserError` before any output
    exists; each output is written atomically.
    """
    if not tag or "/" in tag or "\\" in tag:
        raise UserError(f"invalid output tag {tag!r}: it must be a plain file-name part")
    check_tiling(tile, overlap, max_size)
    files = collect_inputs(inputs)
    taken = {f.resolve() for f in files}
    plan = []
    for f in files:
        load_image(f, max_pixels=max_pixels)  # validate (full decode) before any write
        target = output_path(f, out_dir, tag, taken)
        taken.add(target.resolve())
        plan.append((f, target))
    written = []
    for f, target in plan:
        img = load_image(f, max_pixels=max_pixels)
        if max_size is not None and max(img.size) > max_size:
            img = resize_long_side(img, max_size)
        photo = pil_to_tensor(img)
        stylized = stylize_tensor(model, photo, tile, overlap)
        save_image(transform(stylized, photo) if transform else stylized, target)
        written.append(target)
    return written
