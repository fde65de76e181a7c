"""Tests for metastyle.export: exported files run at sizes the trace never saw, like PyTorch."""

import numpy as np
import pytest
import torch

from metastyle.encoders import load_encoder
from metastyle.errors import UserError
from metastyle.export import export_file, export_generator
from metastyle.generator import Generator, GeneratorConfig
from metastyle.stylenet import StyleNet, StyleNetConfig
from metastyle.stylizer import load_stylizer

# The trace input is 64x64. 44x60 checks that sizes are dynamic at all; 45x61 and 33x17 are not
# multiples of 4, so they also need the internal padding the 64x64 trace did not (by 0) use.
UNSEEN = [(44, 60), (45, 61), (33, 17)]


@pytest.fixture
def tiny():
    torch.manual_seed(0)
    return Generator(GeneratorConfig(width=4, res_blocks=1)).eval()


def _reference(model, image):
    with torch.no_grad():
        return model(image).numpy()


def test_onnx_runs_at_unseen_sizes_like_pytorch(tiny, tmp_path):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    path = tmp_path / "tiny.onnx"
    export_generator(tiny, path, "onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image"]
    for height, width in UNSEEN:
        image = torch.rand(1, 3, height, width)
        (out,) = session.run(None, {"image": image.numpy()})
        assert out.shape == (1, 3, height, width)
        assert np.abs(out - _reference(tiny, image)).max() < 1e-4


def test_onnx_of_an_encoder_decoder_with_the_photos_detail_runs_like_pytorch(stylenet_base,
                                                                            tmp_path):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    path = tmp_path / "detail.onnx"
    export_file(stylenet_base, path, "onnx", detail=0.5)
    stylizer = load_stylizer(stylenet_base)
    model, plain = stylizer.generator(detail=0.5), stylizer.generator(detail=0.0)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for height, width in UNSEEN:
        image = torch.rand(1, 3, height, width)
        (out,) = session.run(None, {"image": image.numpy()})
        assert np.abs(out - _reference(model, image)).max() < 1e-4
        assert np.abs(out - _reference(plain, image)).max() > 0.01  # the detail is in the file


def test_onnx_of_a_student_model_runs_at_unseen_sizes_and_batches_like_pytorch(tmp_path):
    """The file holds the student's lifts (a traced graph keeps them, stylenet.StyleNet.stylize);
    PyTorch folds them into the decoder: the two agree."""
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = StyleNet(StyleNetConfig(width=8, student_width=0.25), load_encoder("random"))
    model.set_style(torch.rand(1, 3, 32, 24))
    path = tmp_path / "student.onnx"
    export_generator(model, path, "onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch, (height, width) in zip((1, 2, 1), UNSEEN):
        image = torch.rand(batch, 3, height, width)
        (out,) = session.run(None, {"image": image.numpy()})
        assert np.abs(out - _reference(model, image)).max() < 1e-4


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_torchscript_runs_at_unseen_sizes_and_batches_like_pytorch(tiny, tmp_path):
    path = tmp_path / "tiny.pt"
    export_generator(tiny, path, "torchscript")
    loaded = torch.jit.load(str(path))
    for height, width in UNSEEN:
        image = torch.rand(2, 3, height, width)
        with torch.no_grad():
            out = loaded(image).numpy()
        assert np.abs(out - _reference(tiny, image)).max() < 1e-4


def test_export_file_uses_the_model_file_and_strength(base_model, tmp_path):
    path = tmp_path / "base.pt"
    export_file(base_model, path, "torchscript", strength=1.0)
    assert path.stat().st_size > 0 and not list(tmp_path.glob(".base.pt*"))
    with pytest.raises(UserError, match="choose one of onnx, torchscript"):
        export_file(base_model, tmp_path / "x.tflite", "tflite")
    assert not (tmp_path / "x.tflite").exists()
