"""Export a style to ONNX or TorchScript, so apps can run it without Python or metastyle.

A phone or browser app runs the generator with onnxruntime (or libtorch) and needs one file
that takes any photo size. The graph is traced once on a small sample with height and width
marked dynamic; that is only correct because `Generator.forward` has no size-dependent Python
branch (it always pads to a multiple of 4, by 0 when nothing is needed). tests/test_export.py
runs both formats at a size the trace never saw and compares with PyTorch.

ONNX uses the TorchScript-based exporter (``dynamo=False``, opset 17): it needs only ``onnx``
and takes under a second. The torch.export-based exporter (``dynamo=True`` with
``dynamic_shapes``) also gives a correct dynamic graph but needs ``onnxscript`` and took 17 s for
the tiny test model on this 2-core machine. Both silently bake in the padding branch the old
``forward`` had, which is why the generator no longer has one.

A distilled (student) model exports with its lifts: PyTorch inference folds them into the
decoder (fold.py) with a convolution whose weights are per image, which the TorchScript-based
exporter refuses and which would fix the batch size, so a traced model takes the plain path
(`StyleNet.stylize`); tests/test_export.py checks that the two agree.
"""

from __future__ import annotations

import importlib.util
import io
import warnings
from pathlib import Path

import torch
from torch import nn

from .errors import UserError
from .images import atomic_write_bytes
from .runtime import seeded_generator
from .stylizer import load_stylizer

FORMATS = ("onnx", "torchscript")
_SAMPLE = 64  # side of the tracing input; any size >= 16 works


def export_generator(model: nn.Module, output: str | Path, fmt: str) -> None:
    """Write ``model`` as ``fmt`` (one of `FORMATS`) to ``output`` atomically.

    The file maps a float32 (N, 3, H, W) RGB image in [0, 1] to the stylized image, same shape.
    """
    if fmt not in FORMATS:
        raise UserError(f"format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if fmt == "onnx" and importlib.util.find_spec("onnx") is None:
        raise UserError("ONNX export needs the onnx package: pip install 'metastyle[export]'")
    model = model.eval()
    sample = torch.rand(1, 3, _SAMPLE, _SAMPLE, generator=seeded_generator(0))
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        # Tracing warns about every size check it sees (e.g. InstanceNorm's channel check, which
        # is constant); the exported graph is verified at unseen sizes by the tests instead.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        # TorchScript and the TorchScript-based ONNX exporter are deprecated in current torch
        # (see the module docstring for why they are still the choice here).
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        # Benign ONNX notes: slices with a dynamic end are not constant-folded, and instance
        # norm (no running stats) computes per-image statistics in eval mode too.
        warnings.filterwarnings("ignore", message="Constant folding")
        warnings.filterwarnings("ignore", message=".*operator 'instance_norm' is set to train")
        if fmt == "onnx":
            axes = {2: "height", 3: "width"}
            torch.onnx.export(model, (sample,), buffer, dynamo=False, opset_version=17,
                              input_names=["image"], output_names=["stylized"],
                              dynamic_axes={"image": {0: "batch", **axes},
                                            "stylized": {0: "batch", **axes}})
        else:
            torch.jit.save(torch.jit.trace(model, sample), buffer)
    atomic_write_bytes(output, buffer.getvalue())


def export_file(model_path: str | Path, output: str | Path, fmt: str,
                strength: float | None = None, palette: float | None = None,
                detail: float | None = None) -> None:
    """`metastyle export`: a model file (adapted style or full generator) -> ONNX/TorchScript,
    at ``strength``, ``palette`` and ``detail`` (`Stylizer.generator`)."""
    export_generator(load_stylizer(model_path).generator(strength, palette, detail), output,
                     fmt)
