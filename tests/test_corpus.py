"""Tests for metastyle.corpus: manifest splits, unreadable files, crops and episodes."""

import warnings

import pytest
import torch
from PIL import Image

from metastyle.config import DataConfig
from metastyle.corpus import (
    EpisodeSampler,
    default_content_paths,
    image_paths,
    random_crops,
    read_manifest,
)
from metastyle.errors import UserError


def data_config(corpus, **kw):
    return DataConfig(manifest=str(corpus / "manifest.tsv"), crop=16, style_size=32, **kw)


def names(paths):
    return [p.name for p in paths]


# --- manifest ----------------------------------------------------------------------------


def manifest_rows(corpus):
    """(file, kind, split) rows of the fixture's manifest, parsed independently of the module."""
    lines = (corpus / "manifest.tsv").read_text().splitlines()[1:]
    return [tuple(line.split("\t")) for line in lines if line]


def expected(corpus, kind, split):
    return sorted(corpus / f for f, k, s in manifest_rows(corpus) if (k, s) == (kind, split))


def test_read_manifest_filters_by_kind_and_split(tiny_corpus):
    manifest = tiny_corpus / "manifest.tsv"
    assert names(read_manifest(manifest, "style", "train")) == [f"style{i}.png" for i in range(4)]
    assert names(read_manifest(manifest, "style", "heldout")) == ["style4.png", "style5.png"]
    total = 0
    for kind in ("style", "content"):
        for split in ("train", "heldout"):
            paths = read_manifest(manifest, kind, split)
            assert paths == expected(tiny_corpus, kind, split) and paths
            assert all(p.is_file() and p.name.startswith(kind) for p in paths)
            total += len(paths)
    assert total == len(manifest_rows(tiny_corpus))


def test_read_manifest_errors(tmp_path):
    with pytest.raises(UserError, match="manifest not found"):
        read_manifest(tmp_path / "none.tsv", "style", "train")
    bad = tmp_path / "bad.tsv"
    bad.write_text("path\ttype\nx.png\tstyle\n")
    with pytest.raises(UserError, match="file, kind and split"):
        read_manifest(bad, "style", "train")


def test_image_paths_keeps_splits_apart(tiny_corpus):
    data = data_config(tiny_corpus)
    for kind in ("style", "content"):
        train, held = image_paths(data, kind, "train"), image_paths(data, kind, "heldout")
        assert train == expected(tiny_corpus, kind, "train")
        assert held == expected(tiny_corpus, kind, "heldout")
        assert train and held and not set(train) & set(held)


def test_style_dir_replaces_only_the_train_split(tiny_corpus, tmp_path):
    folder = tmp_path / "my_styles"
    folder.mkdir()
    for i in range(3):
        Image.new("RGB", (20, 20), (i * 80, 0, 0)).save(folder / f"s{i}.png")
    data = data_config(tiny_corpus, style_dir=str(folder))
    assert names(image_paths(data, "style", "train")) == ["s0.png", "s1.png", "s2.png"]
    assert names(image_paths(data, "style", "heldout")) == ["style4.png", "style5.png"]
    assert image_paths(data, "content", "train") == expected(tiny_corpus, "content", "train")


def test_unreadable_files_are_skipped_with_one_counted_warning(tiny_corpus):
    (tiny_corpus / "content" / "content1.png").write_bytes(b"not a png at all")
    Image.new("RGB", (8, 8)).save(tiny_corpus / "content" / "content3.png")  # below MIN_SIDE
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        paths = image_paths(data_config(tiny_corpus), "content", "train")
    assert names(paths) == ["content0.png", "content2.png", "content4.png", "content5.png"]
    assert len(caught) == 1
    assert "skipped 2" in str(caught[0].message) and "train content" in str(caught[0].message)


def test_no_readable_images_is_user_error(tiny_corpus):
    for i in (4, 5):
        (tiny_corpus / "style" / f"style{i}.png").write_bytes(b"")
    with pytest.warns(UserWarning), pytest.raises(UserError, match="no readable heldout style"):
        image_paths(data_config(tiny_corpus), "style", "heldout")


# --- crops and episodes ------------------------------------------------------------------


def test_random_crops_are_distinct_and_respect_exclude(tiny_corpus):
    paths = image_paths(data_config(tiny_corpus), "content", "train")
    crops, chosen = random_crops(paths, 3, 16, torch.Generator().manual_seed(0))
    assert crops.shape == (3, 3, 16, 16) and 0 <= crops.min() and crops.max() <= 1
    assert len(set(chosen)) == 3
    assert not torch.allclose(crops[0], crops[1]) and not torch.allclose(crops[1], crops[2])
    assert len(paths) == 6
    for seed in range(5):
        _, rest = random_crops(paths, 3, 16, torch.Generator().manual_seed(seed), exclude=chosen)
        assert sorted(rest) == sorted(set(range(6)) - set(chosen))
    empty, none = random_crops(paths, 0, 16, torch.Generator().manual_seed(0), exclude=range(6))
    assert empty.shape == (0, 3, 16, 16) and none == ()
    with pytest.raises(UserError, match="need 4 distinct"):
        random_crops(paths, 4, 16, torch.Generator().manual_seed(0), exclude=chosen)


def colour_corpus(tmp_path, n):
    """n content images, each one flat colour (i*30, 250-i*30, 90): a crop names its source."""
    paths = []
    for i in range(n):
        path = tmp_path / f"flat{i}.png"
        Image.new("RGB", (40, 24), (i * 30, 250 - i * 30, 90)).save(path)
        paths.append(path)
    return paths


def source_of(crop):
    return round(crop[0].mean().item() * 255 / 30)


def test_episode_sampler_is_deterministic(tiny_corpus):
    data = data_config(tiny_corpus)
    sampler = EpisodeSampler(image_paths(data, "style", "train"),
                             image_paths(data, "content", "train"), data)
    a = [sampler.sample(torch.Generator().manual_seed(3), 2, 2) for _ in range(2)]
    assert a[0].style_path == a[1].style_path
    assert torch.equal(a[0].style, a[1].style) and max(a[0].style.shape[-2:]) == 32
    assert torch.equal(a[0].support, a[1].support) and torch.equal(a[0].query, a[1].query)
    gen = torch.Generator().manual_seed(3)
    first, second = sampler.sample(gen, 2, 2), sampler.sample(gen, 2, 2)
    assert not torch.equal(first.support, second.support)  # the stream moves on


def test_support_and_query_come_from_disjoint_images(tiny_corpus, tmp_path):
    contents = colour_corpus(tmp_path, 6)
    data = data_config(tiny_corpus)
    sampler = EpisodeSampler(image_paths(data, "style", "train"), contents, data)
    gen = torch.Generator().manual_seed(0)
    seen = set()
    for _ in range(12):
        episode = sampler.sample(gen, 3, 3)
        assert episode.support.shape == episode.query.shape == (3, 3, 16, 16)
        support = [source_of(c) for c in episode.support]
        query = [source_of(c) for c in episode.query]
        assert len(set(support)) == 3 and len(set(query)) == 3
        assert not set(support) & set(query)
        seen |= set(support)
    assert len(seen) > 3  # crops really come from varying images


def test_default_content_paths_exist():
    paths = default_content_paths()
    assert len(paths) == 4 and all(p.is_file() for p in paths)
    assert len({p.name for p in paths}) == 4
