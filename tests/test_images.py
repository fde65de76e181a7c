"""Tests for metastyle.images: loading odd and bad files, conversions, atomic saving."""

import os

import numpy as np
import pytest
import torch
from PIL import Image

from metastyle import images
from metastyle.errors import UserError
from metastyle.images import (
    atomic_write_bytes,
    list_images,
    load_image,
    load_tensor,
    pil_to_tensor,
    resize_long_side,
    save_image,
    tensor_to_pil,
)

RED, BLUE, WHITE = (255, 0, 0), (0, 0, 255), (255, 255, 255)


def noise(w=32, h=32, seed=0):
    """A random RGB image (noise does not compress, so files have real bulk to truncate)."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def near(a, b, tol=6):
    return all(abs(x - y) <= tol for x, y in zip(a, b))


# --- tensor <-> PIL ----------------------------------------------------------------------


def test_tensor_round_trip_is_exact_for_all_uint8_values():
    values = np.arange(256, dtype=np.uint8).reshape(16, 16)
    array = np.stack([values, values.T, 255 - values], axis=-1)
    img = Image.fromarray(array)
    t = pil_to_tensor(img)
    assert t.shape == (1, 3, 16, 16) and t.dtype == torch.float32
    assert 0.0 <= t.min() and t.max() <= 1.0
    assert np.array_equal(np.asarray(tensor_to_pil(t)), array)
    assert np.array_equal(np.asarray(tensor_to_pil(t[0])), array)  # (3, H, W) accepted too


def test_tensor_to_pil_clamps_and_rounds():
    t = torch.stack([torch.full((2, 2), v) for v in (-1.0, 2.0, 0.6 / 255)])
    assert tensor_to_pil(t).getpixel((0, 0)) == (0, 255, 1)


def test_tensor_to_pil_rejects_bad_shape():
    with pytest.raises(ValueError):
        tensor_to_pil(torch.zeros(2, 3, 4, 4))


# --- modes and metadata ------------------------------------------------------------------


def test_exif_orientation_is_applied(tmp_path):
    img = Image.new("RGB", (40, 20), BLUE)
    img.paste(RED, (0, 0, 20, 20))  # left half red
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = tmp_path / "rotated.jpg"
    img.save(path, exif=exif)
    loaded = load_image(path)
    assert loaded.size == (20, 40)
    assert near(loaded.getpixel((10, 5)), RED, tol=30)  # left half ends up on top
    assert near(loaded.getpixel((10, 35)), BLUE, tol=30)


def test_palette_with_transparency_becomes_rgb_over_white(tmp_path):
    img = Image.new("P", (16, 16), 1)
    img.putpalette([0, 0, 0, *RED] + [0, 0, 0] * 254)
    img.putpixel((0, 0), 0)
    path = tmp_path / "palette.png"
    img.save(path, transparency=0)
    loaded = load_image(path)
    assert loaded.mode == "RGB"
    assert loaded.getpixel((0, 0)) == WHITE
    assert loaded.getpixel((5, 5)) == RED


def test_grayscale_and_cmyk_become_rgb(tmp_path):
    Image.new("L", (16, 16), 100).save(tmp_path / "gray.png")
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(tmp_path / "cmyk.tif")
    assert load_image(tmp_path / "gray.png").getpixel((3, 3)) == (100, 100, 100)
    cmyk = load_image(tmp_path / "cmyk.tif")
    assert cmyk.mode == "RGB" and cmyk.getpixel((3, 3)) == RED


def test_16bit_gradient_uses_full_8bit_range(tmp_path):
    gradient = np.linspace(0, 65535, 64).round().astype(np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(np.tile(gradient, (16, 1))).save(path)
    row = np.asarray(load_image(path))[0, :, 0]
    assert row.min() == 0 and row.max() == 255
    assert np.all(np.diff(row.astype(int)) >= 0)
    assert len(np.unique(row)) > 50  # not clipped to a few values
    assert np.abs(row.astype(int) - np.round(gradient / 257)).max() <= 1


@pytest.mark.parametrize(
    "img, expected",
    [
        (Image.fromarray(np.full((16, 16), 65535, dtype=np.int32)), 255),  # mode "I"
        (Image.fromarray(np.full((16, 16), 128.4, dtype=np.float32)), 128),  # mode "F"
        (Image.new("LA", (16, 16), (0, 0)), 255),  # fully transparent black -> white
    ],
)
def test_other_modes_convert(img, expected):
    t = pil_to_tensor(img)
    assert t.shape == (1, 3, 16, 16)
    assert torch.all(t == expected / 255)


def test_rgba_transparency_is_composited_over_white(tmp_path):
    img = Image.new("RGBA", (16, 16), (*RED, 255))
    img.putpixel((0, 0), (0, 0, 0, 0))
    img.putpixel((1, 0), (0, 0, 0, 128))
    path = tmp_path / "alpha.png"
    img.save(path)
    loaded = load_image(path)
    assert loaded.mode == "RGB"
    assert loaded.getpixel((0, 0)) == WHITE
    assert near(loaded.getpixel((1, 0)), (127, 127, 127), tol=1)
    assert loaded.getpixel((5, 5)) == RED


def test_animated_gif_gives_first_frame(tmp_path):
    frames = [Image.new("RGB", (16, 16), RED), Image.new("RGB", (16, 16), BLUE)]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)
    with Image.open(path) as gif:
        assert gif.n_frames == 2
    assert load_image(path).getpixel((8, 8)) == RED


# --- bad inputs --------------------------------------------------------------------------


def _truncated(path, fmt):
    noise(40, 40).save(path, format=fmt)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


BAD_INPUTS = {
    "missing.png": (lambda p: None, "file not found"),
    "empty.png": (lambda p: p.write_bytes(b""), "file is empty"),
    "half.png": (lambda p: _truncated(p, "PNG"), "truncated or corrupt"),
    "half.jpg": (lambda p: _truncated(p, "JPEG"), "truncated or corrupt"),
    "text.png": (lambda p: p.write_text("hello\nworld\n"), "not an image"),
    "tiny.png": (lambda p: noise(8, 8).save(p), "too small (8x8"),
    "huge.png": (lambda p: noise(48, 48).save(p), "too large (2304 pixels, limit 2000"),
}


@pytest.mark.parametrize("name", BAD_INPUTS)
def test_bad_input_raises_one_line_user_error(tmp_path, name):
    make, expected = BAD_INPUTS[name]
    path = tmp_path / name
    make(path)
    with pytest.raises(UserError) as info:
        load_tensor(path, max_pixels=2000)
    message = str(info.value)
    assert name in message and expected in message
    assert "\n" not in message


def test_pillow_decompression_bomb_error_becomes_user_error(tmp_path, monkeypatch):
    path = tmp_path / "bomb.png"
    noise(32, 32).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 1024 px > 2 * 100: Pillow refuses
    with pytest.raises(UserError, match=r"bomb\.png: image is too large"):
        load_image(path)


def test_directory_is_not_a_file(tmp_path):
    with pytest.raises(UserError, match="is a folder, not a file"):
        load_image(tmp_path)


# --- saving ------------------------------------------------------------------------------


def test_save_and_load_round_trip(tmp_path):
    img = noise()
    path = tmp_path / "new" / "dir" / "out.png"
    save_image(pil_to_tensor(img), path)
    assert np.array_equal(np.asarray(load_image(path)), np.asarray(img))
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~images._umask()
    save_image(img, tmp_path / "out.JPG")
    with Image.open(tmp_path / "out.JPG") as jpeg:
        assert jpeg.format == "JPEG"
    assert sorted(os.listdir(tmp_path)) == ["new", "out.JPG"]


def test_save_unknown_suffix_is_user_error(tmp_path):
    with pytest.raises(UserError, match=r"out\.xyz"):
        save_image(noise(), tmp_path / "out.xyz")
    assert os.listdir(tmp_path) == []


def test_failed_save_leaves_nothing_behind(tmp_path, monkeypatch):
    def broken_save(self, fp, *args, **kwargs):
        fp.write(b"\x89PNG partial")
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(RuntimeError, match="disk on fire"):
        save_image(noise(), tmp_path / "out.png")
    assert os.listdir(tmp_path) == []


def test_failed_save_keeps_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "out.png"
    path.write_bytes(b"previous")

    def broken_save(self, fp, *args, **kwargs):
        fp.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(KeyboardInterrupt):
        save_image(noise(), path)
    assert os.listdir(tmp_path) == ["out.png"]
    assert path.read_bytes() == b"previous"


def test_atomic_write_bytes(tmp_path):
    path = tmp_path / "models" / "model.pt"
    atomic_write_bytes(path, b"one")
    atomic_write_bytes(path, b"two")
    assert path.read_bytes() == b"two"
    assert os.listdir(path.parent) == ["model.pt"]


def test_unwritable_destination_is_user_error(tmp_path):
    (tmp_path / "blocker").write_text("a file, not a folder")
    with pytest.raises(UserError, match="cannot write file"):
        atomic_write_bytes(tmp_path / "blocker" / "model.pt", b"x")


# --- resizing and listing ----------------------------------------------------------------


@pytest.mark.parametrize("size, expected", [((200, 100), (64, 32)), ((90, 300), (19, 64))])
def test_resize_long_side_keeps_aspect(size, expected):
    assert resize_long_side(Image.new("RGB", size), 64).size == expected


def test_load_tensor_resizes(tmp_path):
    path = tmp_path / "wide.png"
    noise(80, 40).save(path)
    assert load_tensor(path).shape == (1, 3, 40, 80)
    assert load_tensor(path, size=32).shape == (1, 3, 16, 32)


def test_list_images_is_sorted_recursive_and_filtered(tmp_path):
    for name in ["b.png", "a.JPG", "sub/c.webp", "sub/notes.txt", ".hidden.png", ".git/x.png"]:
        path = tmp_path / name
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"x")
    (tmp_path / "folder.png").mkdir()
    found = [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)]
    assert found == ["a.JPG", "b.png", "sub/c.webp"]


def test_list_images_missing_folder(tmp_path):
    with pytest.raises(UserError, match="nope: folder not found"):
        list_images(tmp_path / "nope")


def test_image_from_bytes_validates_like_load_image_and_names_the_upload(photo):
    img = images.image_from_bytes(photo.read_bytes(), "upload.png")
    assert img.mode == "RGB" and img.size == (40, 32)
    for data, phrase in ((b"", "empty"), (b"not an image", "not an image"),
                         (photo.read_bytes()[:200], "truncated")):
        with pytest.raises(UserError, match=f"^upload.png: .*{phrase}"):
            images.image_from_bytes(data, "upload.png")
    with pytest.raises(UserError, match="too large"):
        images.image_from_bytes(photo.read_bytes(), "upload.png", max_pixels=100)
