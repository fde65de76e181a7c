"""Image loading, conversion and saving: the one place that touches image files.

Style and content images come from users, so every way a file can be bad (missing, empty,
truncated, not an image, absurdly small, a decompression bomb) must become a one-line
`UserError` naming the file, not a traceback from deep inside Pillow or torch. Everything
past this module can then assume the single tensor convention:

    float32 in [0, 1], shape (B, 3, H, W), RGB.

Writes are atomic (temp file in the same directory + `os.replace`), so an interrupted run
never leaves a half-written image or model file behind under the real name.
"""

from __future__ import annotations

import errno
import io
import math
import os
import stat
import struct
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from metastyle.errors import UserError

DEFAULT_MAX_PIXELS = 40_000_000
MIN_SIDE = 16

# Suffix -> Pillow format name, for both reading (which files count as images) and saving.
_FORMATS = {
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".png": "PNG",
    ".webp": "WEBP",
    ".bmp": "BMP",
    ".gif": "GIF",
    ".tif": "TIFF",
    ".tiff": "TIFF",
}
IMAGE_SUFFIXES = frozenset(_FORMATS)
_SAVE_OPTIONS = {"JPEG": {"quality": 95}, "WEBP": {"quality": 95}}

# What Pillow raises while decoding a damaged file.
_DECODE_ERRORS = (OSError, SyntaxError, EOFError, ValueError, struct.error)


def load_image(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open, validate and fully decode an image file; return it upright, in RGB mode.

    Animated files give their first frame. Raises `UserError` for any bad input.
    """
    path = Path(path)
    if check_readable_file(path).st_size == 0:
        raise UserError(f"{path}: file is empty")
    return _decode(path, str(path), max_pixels, "; raise --max-pixels to allow it")


def check_readable_file(path: str | os.PathLike, what: str = "file") -> os.stat_result:
    """A one-line `UserError` unless ``path`` is a regular file we may read; its stat.

    Says what the path is instead: missing, a folder, a symbolic-link loop, a device or pipe,
    or unreadable (permissions).
    """
    path = Path(path)
    try:
        info = path.stat()
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise UserError(f"{path}: a symbolic link loop, not a {what}") from None
        if e.errno in (errno.ENOENT, errno.ENOTDIR):
            raise UserError(f"{path}: {what} not found") from None
        raise UserError(f"{path}: cannot read {what} ({e.strerror or e})") from None
    if stat.S_ISDIR(info.st_mode):
        raise UserError(f"{path}: is a folder, not a {what}")
    if not stat.S_ISREG(info.st_mode):
        raise UserError(f"{path}: not a regular {what} (a device, pipe or socket)")
    if not os.access(path, os.R_OK):
        raise UserError(f"{path}: cannot read {what} (permission denied)")
    return info


def image_from_bytes(data: bytes, name: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """`load_image` for a file held in memory (an HTTP upload); errors name ``name``."""
    if not data:
        raise UserError(f"{name}: file is empty")
    return _decode(io.BytesIO(data), name, max_pixels)


# JPEG start-of-frame markers whose entropy coding is Huffman (every block of the scan costs at
# least one bit) and arithmetic (no such floor).
_HUFFMAN_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7}
_ARITHMETIC_SOF = {0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_scan_bytes(source: Path | IO[bytes]) -> tuple[int, int] | None:
    """(start-of-frame marker, bytes from the first scan to the end) of a JPEG, or None when
    its segments cannot be walked (Pillow then reports what is wrong)."""
    f = open(source, "rb") if isinstance(source, Path) else source
    try:
        f.seek(0, io.SEEK_END)
        size = f.tell()
        f.seek(2)  # after SOI
        sof = None
        while True:
            head = f.read(4)
            if len(head) < 4 or head[0] != 0xFF:
                return None
            marker, length = head[1], int.from_bytes(head[2:4], "big")
            if marker in _HUFFMAN_SOF or marker in _ARITHMETIC_SOF:
                sof = marker
            if marker == 0xDA:  # start of scan: entropy-coded data follows
                return (sof, size - f.tell() - length + 2) if sof is not None else None
            f.seek(length - 2, io.SEEK_CUR)
    finally:
        if isinstance(source, Path):
            f.close()
        else:
            f.seek(0)


def _check_jpeg_holds_its_pixels(source: Path | IO[bytes], img: Image.Image, name: str) -> None:
    """Refuse a JPEG whose header claims far more pixels than its data can hold.

    libjpeg fills the missing part of a short scan with grey and only warns, so Pillow would
    hand back e.g. a flat grey 6000x6000 image from a 64x48 file with an edited header.
    In a Huffman-coded JPEG every 8x8 block of the first scan costs at least one bit, so a scan
    shorter than blocks / 8 bytes cannot be the whole image.
    """
    found = _jpeg_scan_bytes(source)
    if found is None or found[0] not in _HUFFMAN_SOF:
        return
    width, height = img.size
    blocks = math.ceil(width / 8) * math.ceil(height / 8)
    if found[1] * 8 < blocks:
        raise UserError(f"{name}: image is truncated or corrupt (its header says {width}x{height}"
                        f" pixels, but it holds data for far fewer)")


def _decode(source: Path | IO[bytes], name: str, max_pixels: int, hint: str = "") -> Image.Image:
    """The checks and full decode shared by `load_image` and `image_from_bytes`."""
    with warnings.catch_warnings():
        # Pillow warns above its own fixed limit; ours (checked below) is the one that counts.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            img = Image.open(source)
        except UnidentifiedImageError:
            raise UserError(f"{name}: not an image (unrecognised or unsupported format)") from None
        except Image.DecompressionBombError:
            raise UserError(
                f"{name}: image is too large (more than {2 * Image.MAX_IMAGE_PIXELS} pixels, "
                "beyond Pillow's decompression-bomb limit)"
            ) from None
        except OSError as e:
            raise UserError(f"{name}: cannot read file ({e.strerror or e})") from None
    with img:
        width, height = img.size  # from the header; nothing decoded yet
        if width * height > max_pixels:
            raise UserError(
                f"{name}: image is too large ({width * height} pixels, limit {max_pixels}{hint})"
            )
        if min(width, height) < MIN_SIDE:
            raise UserError(
                f"{name}: image is too small ({width}x{height}, minimum {MIN_SIDE} px per side)"
            )
        if img.format == "JPEG":
            _check_jpeg_holds_its_pixels(source, img, name)
        try:
            img.load()  # full decode, so truncation fails here rather than later
            img = ImageOps.exif_transpose(img)
        except _DECODE_ERRORS:
            raise UserError(f"{name}: image is truncated or corrupt") from None
    try:
        return _to_rgb(img)
    except ValueError:  # e.g. LAB or HSV TIFFs, which Pillow cannot convert to RGB
        raise UserError(f"{name}: unsupported colour mode {img.mode}") from None


def _to_rgb(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode to RGB; transparency is composited over white."""
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # 16-bit data: rescale 0..65535 to 0..255 (a plain convert would clip at 255).
        wide = np.asarray(img).astype(np.float64).clip(0, 65535)
        return Image.fromarray(np.rint(wide * (255 / 65535)).astype(np.uint8)).convert("RGB")
    if img.mode == "F":
        # Pillow's own convention for float images is 0..255; round rather than truncate.
        gray = np.rint(np.asarray(img).clip(0, 255)).astype(np.uint8)
        return Image.fromarray(gray).convert("RGB")
    if "A" in img.mode or "a" in img.mode or "transparency" in img.info:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img if img.mode == "RGB" else img.convert("RGB")


def pil_to_tensor(img: Image.Image) -> torch.Tensor:
    """Image (any mode) -> float32 tensor (1, 3, H, W) in [0, 1]."""
    array = np.array(_to_rgb(img), dtype=np.uint8)  # copy: torch wants a writable buffer
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0).float().div_(255)


def tensor_to_pil(t: torch.Tensor) -> Image.Image:
    """Tensor (3, H, W) or (1, 3, H, W) -> RGB image; values are clamped to [0, 1] and rounded."""
    if t.dim() == 4 and t.shape[0] == 1:
        t = t[0]
    if t.dim() != 3 or t.shape[0] != 3:
        raise ValueError(f"expected a (3, H, W) or (1, 3, H, W) tensor, got {tuple(t.shape)}")
    t = torch.nan_to_num(t.detach().float().cpu(), nan=0.0).clamp(0, 1)
    array = t.mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return Image.fromarray(np.ascontiguousarray(array))


def resize_long_side(img: Image.Image, size: int) -> Image.Image:
    """Resize so the longer side equals `size`, keeping the aspect ratio (Lanczos)."""
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    width, height = img.size
    if max(width, height) == size:
        return img
    scale = size / max(width, height)
    new_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return img.resize(new_size, Image.Resampling.LANCZOS)


def resize_short_side(img: Image.Image, size: int) -> Image.Image:
    """Resize so the shorter side is about `size` (the long side is rounded), keeping the ratio."""
    return resize_long_side(img, round(size * max(img.size) / min(img.size)))


def load_tensor(
    path: str | os.PathLike, size: int | None = None, max_pixels: int = DEFAULT_MAX_PIXELS
) -> torch.Tensor:
    """Load an image file as a (1, 3, H, W) tensor, optionally resized to long side `size`."""
    img = load_image(path, max_pixels=max_pixels)
    if size is not None:
        img = resize_long_side(img, size)
    return pil_to_tensor(img)


def check_outputs(outputs: dict[str, str | os.PathLike | None],
                  inputs: dict[str, str | os.PathLike]) -> None:
    """Before any work: every output (by what it is) must differ from every input and from the
    other outputs (as resolved paths, or the same file through a link), and must be writable.

    A one-line `UserError` names the clash, so e.g. ``--preview style.png`` never overwrites
    the style image it was adapting to.
    """
    seen: dict[Path, str] = {}
    for what, path in inputs.items():
        seen.setdefault(Path(path).resolve(), what)
    for what, path in outputs.items():
        if path is None:
            continue
        path = Path(path)
        resolved = path.resolve()
        clash = seen.get(resolved) or next(
            (other for p, other in seen.items() if _same_file(p, resolved)), None)
        if clash is not None:
            raise UserError(f"{path}: the {what} would overwrite the {clash}; "
                            "choose another output path")
        seen[resolved] = what
        check_writable(path)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_writable(path: str | os.PathLike) -> None:
    """A one-line `UserError` unless a file can be written at ``path`` (its missing folders
    created): tried with a temporary file in the nearest existing folder, then removed."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: is a folder; give an output file name")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise UserError(f"{path}: cannot write file ({folder} is not a folder)")
    try:
        with tempfile.TemporaryFile(dir=folder, prefix=".metastyle-write-check-"):
            pass
    except OSError as e:
        raise UserError(f"{path}: cannot write file ({e.strerror or e})") from None


def write_files(files: dict[Path, bytes]) -> None:
    """Write several files all or nothing: each goes to a temp file beside it first (fsync'd),
    and only once every one is complete are they renamed into place; on any failure the
    temp files, and the outputs already renamed, are removed."""
    temps: list[tuple[str, Path]] = []
    moved: list[Path] = []
    current = None
    try:
        for path, data in files.items():
            current = Path(path)
            temps.append((_complete_temp(current, data), current))
        for tmp_name, path in temps:
            current = path
            os.replace(tmp_name, path)
            moved.append(path)
    except BaseException as e:
        for tmp_name, _ in temps:
            if os.path.exists(tmp_name):
                os.unlink(tmp_name)
        for path in moved:
            path.unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise UserError(f"{current}: cannot write file ({e.strerror or e})") from e
        raise


def _complete_temp(path: Path, data: bytes) -> str:
    """``data`` in a fsync'd temp file beside ``path`` (its folders created); its name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix,
                                     delete=False) as tmp:
        try:
            tmp.write(data)
            tmp.flush()
            os.fsync(tmp.fileno())
        except BaseException:
            tmp.close()
            os.unlink(tmp.name)
            raise
    os.chmod(tmp.name, 0o666 & ~_umask())  # mkstemp makes it 0600; match a normal file
    return tmp.name


@contextmanager
def _atomic_file(path: Path) -> Iterator[IO[bytes]]:
    """Yield a temp file beside `path`; on success it replaces `path`, on failure it is removed.

    OS-level failures (permissions, full disk, ...) become a `UserError` naming `path`.
    """
    tmp_name = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(
            dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix, delete=False
        ) as tmp:
            tmp_name = tmp.name
            yield tmp
            tmp.flush()
            os.fsync(tmp.fileno())
        os.chmod(tmp_name, 0o666 & ~_umask())  # mkstemp makes it 0600; match a normal file
        os.replace(tmp_name, path)
    except BaseException as e:
        if tmp_name is not None and os.path.exists(tmp_name):
            os.unlink(tmp_name)
        if isinstance(e, OSError):
            raise UserError(f"{path}: cannot write file ({e.strerror or e})") from e
        raise


def _umask() -> int:
    """The process umask (it can only be read by setting it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically, creating parent folders."""
    with _atomic_file(Path(path)) as f:
        f.write(data)


def check_output_suffix(path: str | os.PathLike) -> str:
    """The Pillow format for an output path; call it before heavy work to fail early."""
    path = Path(path)
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        known = " ".join(sorted(IMAGE_SUFFIXES))
        raise UserError(f"{path}: unknown image suffix {path.suffix!r} (use one of: {known})")
    return fmt


def encode_image(img_or_tensor: Image.Image | torch.Tensor, path: str | os.PathLike) -> bytes:
    """The bytes `save_image` would write to ``path`` (the format comes from its suffix)."""
    buffer = io.BytesIO()
    _save_to(img_or_tensor, buffer, check_output_suffix(path))
    return buffer.getvalue()


def _save_to(img_or_tensor: Image.Image | torch.Tensor, f: IO[bytes], fmt: str) -> None:
    if isinstance(img_or_tensor, torch.Tensor):
        img = tensor_to_pil(img_or_tensor)
    else:
        img = _to_rgb(img_or_tensor)
    img.save(f, format=fmt, **_SAVE_OPTIONS.get(fmt, {}))


def save_image(img_or_tensor: Image.Image | torch.Tensor, path: str | os.PathLike) -> None:
    """Save an image or (1,)3,H,W tensor atomically; the format comes from the suffix."""
    path = Path(path)
    fmt = check_output_suffix(path)
    with _atomic_file(path) as f:
        _save_to(img_or_tensor, f, fmt)


def list_images(folder: str | os.PathLike) -> list[Path]:
    """All image files under `folder` (recursive, sorted), skipping hidden files and folders."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: folder not found")
    return sorted(
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )
