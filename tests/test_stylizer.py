"""Tests for the Python API (metastyle.adapt / Stylizer / load_stylizer / stylize) and colour.

Tiny generator, random encoder, 32-48 px images: each adaptation takes a second or two.
"""

import numpy as np
import pytest
import torch
from PIL import Image

import metastyle
from metastyle import checkpoint
from metastyle.colour import keep_photo_colour, rgb_to_ycbcr, ycbcr_to_rgb
from metastyle.errors import UserError
from metastyle.images import load_tensor, pil_to_tensor, tensor_to_pil
from metastyle.inference import stylize_tensor


@pytest.fixture
def stylizer(base_model, tiny_corpus):
    # lr 0.05: big enough that 4 steps visibly move the tiny model away from its base
    return metastyle.adapt(tiny_corpus / "style/style0.png", steps=4,
                           content=tiny_corpus / "content", base=base_model, lr=0.05)


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def test_strength_0_is_the_base_1_the_adapted_and_half_lies_between(stylizer, photo):
    photo_t = load_tensor(photo)
    base_out = stylize_tensor(stylizer.base, photo_t)
    adapted_out = stylize_tensor(stylizer.model, photo_t)
    assert torch.equal(stylize_tensor(stylizer.generator(0.0), photo_t), base_out)
    assert torch.equal(stylize_tensor(stylizer.generator(1.0), photo_t), adapted_out)
    half_out = stylize_tensor(stylizer.generator(0.5), photo_t)
    span = (adapted_out - base_out).abs().mean()
    assert span > 0.01
    assert 0 < (half_out - base_out).abs().mean() < span
    assert 0 < (half_out - adapted_out).abs().mean() < span
    # Only the adapted tensors are blended; everything else is the shared base weights.
    half, base = stylizer.generator(0.5).state_dict(), stylizer.base.state_dict()
    assert {n for n in base if not torch.equal(half[n], base[n])} == set(stylizer.names)
    # The PIL-level API gives the same pixels.
    assert np.array_equal(_pixels(stylizer.stylize(photo, strength=0)),
                          _pixels(tensor_to_pil(base_out)))


def test_strength_outside_0_1_or_without_a_base_is_a_user_error(stylizer, base_model, photo):
    with pytest.raises(UserError, match="between 0 and 1"):
        stylizer.stylize(photo, strength=1.5)
    full = metastyle.load_stylizer(base_model)  # a full generator: no base to blend with
    assert full.stylize(photo).size == (40, 32)
    with pytest.raises(UserError, match="only strength 1"):
        full.stylize(photo, strength=0.5)


def test_ycbcr_matches_pillow_and_inverts():
    rgb = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    ycbcr = np.asarray(tensor_to_pil(rgb).convert("YCbCr"), dtype=np.float32) / 255
    pillow = torch.from_numpy(ycbcr).permute(2, 0, 1)[None]
    assert (rgb_to_ycbcr(rgb) - pillow).abs().max() < 1.5 / 255
    assert torch.allclose(ycbcr_to_rgb(rgb_to_ycbcr(rgb)), rgb, atol=1e-5)


def test_preserve_colour_keeps_the_photos_chroma_and_the_styles_luminance(stylizer, photo):
    photo_t = load_tensor(photo)
    styled = pil_to_tensor(stylizer.stylize(photo))
    kept = pil_to_tensor(stylizer.stylize(photo, preserve_colour=True))
    chroma_error = (rgb_to_ycbcr(kept) - rgb_to_ycbcr(photo_t))[:, 1:].abs()
    styled_chroma_error = (rgb_to_ycbcr(styled) - rgb_to_ycbcr(photo_t))[:, 1:].abs()
    # Exact up to 8-bit rounding except where clamping to the RGB gamut bites.
    assert chroma_error.mean() < 0.01 < styled_chroma_error.mean()
    assert chroma_error.quantile(0.9) < 2 / 255
    luma_error = (rgb_to_ycbcr(kept) - rgb_to_ycbcr(styled))[:, :1].abs()
    assert luma_error.mean() < 0.01 and luma_error.quantile(0.9) < 2 / 255


def test_keep_photo_colour_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="shapes differ"):
        keep_photo_colour(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 9))


def test_save_and_load_round_trip_as_a_delta(stylizer, photo, tmp_path):
    path = tmp_path / "style.safetensors"
    stylizer.save(path)
    _, meta = checkpoint.read(path)
    assert meta["kind"] == "delta" and meta["steps"] == 4 and path.stat().st_size < 16 * 1024
    loaded = metastyle.load_stylizer(path)
    assert sorted(loaded.names) == sorted(stylizer.names)
    for strength in (0.0, 0.5, 1.0):
        assert np.array_equal(_pixels(loaded.stylize(photo, strength=strength)),
                              _pixels(stylizer.stylize(photo, strength=strength)))
    loaded.save(tmp_path / "again.safetensors")  # provenance survives a second save
    _, again = checkpoint.read(tmp_path / "again.safetensors")
    assert again["style_sha256"] == meta["style_sha256"]
    with pytest.raises(UserError, match=".safetensors"):
        stylizer.save(tmp_path / "style.pt")


def test_a_full_generator_saves_as_a_full_generator(base_model, tmp_path):
    metastyle.load_stylizer(base_model).save(tmp_path / "copy.safetensors")
    assert checkpoint.read(tmp_path / "copy.safetensors")[1]["kind"] == "generator"


def test_adapt_accepts_pil_and_tensor_style_images_and_reports_progress(base_model, tiny_corpus,
                                                                         photo):
    image = Image.open(tiny_corpus / "style/style1.png")
    steps = []
    from_pil = metastyle.adapt(image, steps=2, content=tiny_corpus / "content", base=base_model,
                               on_step=lambda i, loss: steps.append((i, loss)))
    assert [i for i, _ in steps] == [0, 1] and all(loss > 0 for _, loss in steps)
    from_tensor = metastyle.adapt(pil_to_tensor(image)[0], steps=2,
                                  content=sorted((tiny_corpus / "content").glob("*.png")),
                                  base=base_model)
    assert from_pil.provenance["style_sha256"] == from_tensor.provenance["style_sha256"]
    with pytest.raises(UserError, match="expected"):
        metastyle.adapt(torch.rand(2, 3, 32, 32), steps=1, base=base_model)


def test_the_readme_api_example_runs(stylenet_base, tiny_corpus, tmp_path, monkeypatch):
    """The README's example, pointed at a tiny encoder-decoder and photos (it defaults to the
    shipped model and scikit-image's sample photos)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "styles").mkdir()
    (tmp_path / "styles/mosaic.png").write_bytes((tiny_corpus / "style/style2.png").read_bytes())
    for name in ("photo.jpg", "other.jpg"):
        Image.open(tiny_corpus / "content/content0.png").save(tmp_path / name)
    tiny = {"base": stylenet_base}

    # --- README example (plus **tiny and content; the README's starts with `import metastyle`) ---
    stylizer = metastyle.zero_shot("styles/mosaic.png", **tiny)
    stylizer.stylize("photo.jpg").save("photo_mosaic.jpg")
    stylizer = metastyle.adapt("styles/mosaic.png", content=tiny_corpus / "content", **tiny,
                               on_step=lambda i, loss: print(f"step {i + 1}: loss {loss:.3f}"))
    stylizer.stylize("photo.jpg", strength=0.5).save("photo_half.jpg")
    stylizer.stylize("photo.jpg", preserve_colour=True).save("photo_colour.jpg")
    stylizer.stylize("photo.jpg", palette=1.0).save("photo_palette.jpg")
    stylizer.save("mosaic.safetensors")
    metastyle.stylize("mosaic.safetensors", "other.jpg", strength=0.8).save("other_08.jpg")
    # --- end of example ---

    for name in ("photo_mosaic.jpg", "photo_half.jpg", "photo_colour.jpg", "other_08.jpg"):
        assert Image.open(name).size == (48, 40)
    meta = checkpoint.read("mosaic.safetensors")[1]
    assert meta["kind"] == "delta" and meta["steps"] >= 1  # the base's recommended steps ran


def test_style_weight_overrides_the_base_objective_for_one_adaptation(base_model, tiny_corpus,
                                                                     photo):
    def adapted(style_weight):
        return metastyle.adapt(tiny_corpus / "style/style0.png", steps=6, lr=0.05,
                               content=tiny_corpus / "content", base=base_model,
                               style_weight=style_weight)

    default, again, heavy = adapted(None), adapted(None), adapted(50.0)
    assert default.provenance["loss"]["style_weight"] == 5.0  # the base's own weight
    assert heavy.provenance["loss"]["style_weight"] == 50.0
    x = load_tensor(photo)
    with torch.no_grad():
        assert torch.equal(default.generator()(x), again.generator()(x))  # deterministic...
        assert not torch.equal(default.generator()(x), heavy.generator()(x))  # ...so it's the weight
    with pytest.raises(UserError, match="style_weight 0.0: must be"):
        adapted(0.0)
