"""Tests for metastyle.checkpoint: generator and delta files, refusing foreign files without
unpickling, optimizer state through safetensors + JSON, the base-weights hash."""

import copy
import json
import os
import pickle

import pytest
import torch
from safetensors.torch import save_file

from metastyle import checkpoint
from metastyle.checkpoint import (
    FORMAT_VERSION,
    flatten_optimizer,
    load_generator,
    read,
    save_delta,
    save_generator,
    unflatten_optimizer,
    weights_hash,
    write,
)
from metastyle.errors import UserError
from metastyle.generator import Generator, GeneratorConfig, adapt_parameter_names


@pytest.fixture
def model():
    torch.manual_seed(0)
    return Generator(GeneratorConfig(width=4, res_blocks=1)).eval()


def adapted_copy(model, seed=1):
    """A copy whose norm affines (only) have moved, as norm-only adaptation leaves it."""
    other = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in other.named_parameters():
            if ".norm." in name:
                p.add_(torch.randn(p.shape, generator=gen) * 0.1)
    return other


def same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# --- generator and delta files -----------------------------------------------------------


def test_generator_round_trip_gives_identical_outputs(model, tmp_path):
    path = tmp_path / "g.safetensors"
    save_generator(path, model, {"encoder": "random"})
    loaded, meta = load_generator(path)
    assert meta["kind"] == "generator" and meta["encoder"] == "random"
    assert meta["format_version"] == FORMAT_VERSION
    assert loaded.config == model.config and not loaded.training
    x = torch.rand(1, 3, 21, 19)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_delta_holds_only_norm_tensors_and_restores_adapted_model(model, tmp_path):
    base_path, delta_path = tmp_path / "base.safetensors", tmp_path / "style.safetensors"
    save_generator(base_path, model, {})
    adapted = adapted_copy(model)
    names = adapt_parameter_names(adapted, "norm")
    save_delta(delta_path, adapted, base_path, names, {"style_file": "s.png"})
    tensors, meta = read(delta_path)
    assert set(tensors) == set(names) and meta["kind"] == "delta"
    assert delta_path.stat().st_size < base_path.stat().st_size / 4
    loaded, _ = load_generator(delta_path)
    assert same_weights(loaded, adapted)
    assert not same_weights(loaded, model)


def test_delta_refuses_a_changed_base(model, tmp_path):
    base_path, delta_path = tmp_path / "base.safetensors", tmp_path / "style.safetensors"
    save_generator(base_path, model, {})
    adapted = adapted_copy(model)
    save_delta(delta_path, adapted, base_path, adapt_parameter_names(adapted, "norm"), {})
    changed = copy.deepcopy(model)
    with torch.no_grad():
        changed.encoder[0].conv.weight[0, 0, 0, 0] += 1.0  # a weight the delta does not cover
    save_generator(base_path, changed, {})
    with pytest.raises(UserError, match="hash mismatch"):
        load_generator(delta_path)


def test_delta_with_missing_base_is_user_error(model, tmp_path):
    base_path, delta_path = tmp_path / "base.safetensors", tmp_path / "style.safetensors"
    save_generator(base_path, model, {})
    save_delta(delta_path, model, base_path, adapt_parameter_names(model, "norm"), {})
    base_path.unlink()
    with pytest.raises(UserError, match="missing"):
        load_generator(delta_path)


# --- foreign files -----------------------------------------------------------------------


def foreign_files(tmp_path):
    random_bytes = tmp_path / "random.safetensors"
    random_bytes.write_bytes(os.urandom(4096))
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(3)}, str(plain))
    other_meta = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(3)}, str(other_meta), metadata={"format": "pt"})
    pickled = tmp_path / "model.pt"
    torch.save({"w": torch.zeros(3)}, pickled)
    return [random_bytes, empty, plain, other_meta, pickled]


def test_foreign_files_are_not_metastyle_models(tmp_path):
    for path in foreign_files(tmp_path):
        with pytest.raises(UserError, match="not a metastyle model") as info:
            read(path)
        assert str(path) in str(info.value) and "\n" not in str(info.value)
        with pytest.raises(UserError, match="not a metastyle model"):
            load_generator(path)


def test_missing_file_is_user_error(tmp_path):
    with pytest.raises(UserError, match="not found"):
        read(tmp_path / "nope.safetensors")


class _Payload:
    """Unpickling this creates a directory: proof that code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def test_loading_a_malicious_pickle_never_runs_it(tmp_path):
    # The payload works: a real unpickle does create its marker.
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(_Payload(probe)))
    assert probe.is_dir()

    marker = tmp_path / "pwned"
    raw = tmp_path / "evil.safetensors"
    raw.write_bytes(pickle.dumps(_Payload(marker)))
    torch_file = tmp_path / "evil.pt"
    torch.save({"state": _Payload(marker)}, torch_file)
    for path in (raw, torch_file):
        with pytest.raises(UserError, match="not a metastyle model"):
            load_generator(path)
    assert not marker.exists()


def test_wrong_format_version_is_user_error(model, tmp_path):
    path = tmp_path / "future.safetensors"
    write(path, model.state_dict(), {"kind": "generator", "generator": model.config.to_dict(),
                                     "format_version": FORMAT_VERSION + 1})
    with pytest.raises(UserError, match="format version"):
        read(path)


def test_weights_that_do_not_fit_the_config_are_user_error(model, tmp_path):
    path = tmp_path / "mismatch.safetensors"
    write(path, model.state_dict(),
          {"kind": "generator", "generator": {"width": 8, "res_blocks": 1}})
    with pytest.raises(UserError, match="do not match"):
        load_generator(path)


# --- optimizer state ---------------------------------------------------------------------


def _adam_net(seed):
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 1))
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    return net, opt


def _step(net, opt, k):
    x = torch.linspace(-1, 1, 8 * 4).view(8, 4) * (k + 1)
    opt.zero_grad()
    net(x).pow(2).mean().backward()
    opt.step()


def test_optimizer_state_round_trips_through_a_file(tmp_path):
    net, opt = _adam_net(0)
    for k in range(2):
        _step(net, opt, k)
    tensors, info = flatten_optimizer(opt.state_dict())
    assert tensors and all(k.startswith("optim/") for k in tensors)
    path = tmp_path / "train.safetensors"
    write(path, {**tensors, **{f"model/{k}": v for k, v in net.state_dict().items()}},
          {"kind": "training", "optimizer": info})
    loaded_tensors, meta = read(path)  # JSON turned tuples into lists on the way
    resumed_net, resumed_opt = _adam_net(1)
    resumed_net.load_state_dict({k.removeprefix("model/"): v for k, v in loaded_tensors.items()
                                 if k.startswith("model/")})
    resumed_opt.load_state_dict(unflatten_optimizer(loaded_tensors, meta["optimizer"]))

    _step(net, opt, 2)
    _step(resumed_net, resumed_opt, 2)
    for a, b in zip(net.parameters(), resumed_net.parameters()):
        assert torch.equal(a, b)
    fresh_net, fresh_opt = _adam_net(1)  # without the moments, step 3 would differ
    fresh_net.load_state_dict({k.removeprefix("model/"): v for k, v in loaded_tensors.items()
                               if k.startswith("model/")})
    _step(fresh_net, fresh_opt, 2)
    assert not all(torch.equal(a, b) for a, b in zip(net.parameters(), fresh_net.parameters()))


def test_optimizer_non_tensor_state_survives_json():
    state = {"state": {0: {"momentum_buffer": torch.ones(2), "count": 3}, 2: {"flag": True}},
             "param_groups": [{"lr": 0.1, "params": [0, 1, 2]}]}
    tensors, info = flatten_optimizer(state)
    back = unflatten_optimizer(tensors, json.loads(json.dumps(info)))
    assert set(back["state"]) == {0, 2}
    assert torch.equal(back["state"][0]["momentum_buffer"], torch.ones(2))
    assert back["state"][0]["count"] == 3 and back["state"][2]["flag"] is True
    assert back["param_groups"] == state["param_groups"]


# --- weights hash ------------------------------------------------------------------------


def test_weights_hash_is_stable_and_sensitive(model):
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    first = weights_hash(weights)
    assert weights_hash(weights) == first
    assert weights_hash(dict(reversed(list(weights.items())))) == first  # order-independent
    name = next(iter(weights))
    weights[name].view(-1)[0] += 1e-3
    assert weights_hash(weights) != first
    renamed = {f"x.{k}": v for k, v in model.state_dict().items()}
    assert weights_hash(renamed) != weights_hash(model.state_dict())


@pytest.mark.parametrize("shipped", [checkpoint.SHIPPED_INIT, checkpoint.SHIPPED_JOHNSON])
def test_shipped_inits_are_loadable_generators(shipped):
    model, meta = load_generator(shipped)
    assert meta["kind"] in ("generator", "training")
    with torch.no_grad():
        y = model(torch.rand(1, 3, 16, 16))
    assert y.shape == (1, 3, 16, 16) and torch.isfinite(y).all()


def test_a_delta_names_a_shipped_base_by_file_name_and_the_old_name_means_the_johnson_init(
        tmp_path):
    """Deltas of a shipped base say ``shipped:<file>`` so any install finds it; deltas written
    before the encoder-decoder shipped say ``shipped`` and still load on the Johnson init."""
    model, _ = load_generator(checkpoint.SHIPPED_JOHNSON)
    names = [n for n, _ in model.named_parameters()][:1]
    out = tmp_path / "style.safetensors"
    checkpoint.save_delta(out, model, checkpoint.SHIPPED_JOHNSON, names, {})
    _, meta = checkpoint.read(out)
    assert meta["base_path"] == "shipped:meta_init.safetensors"
    assert checkpoint.delta_base_file(out, meta) == checkpoint.SHIPPED_JOHNSON
    assert checkpoint.delta_base_file(out, {"base_path": "shipped"}) == checkpoint.SHIPPED_JOHNSON
    assert checkpoint.delta_base_file(out, {"base_path": "shipped:stylenet.safetensors"}) == (
        checkpoint.SHIPPED_INIT)


def test_a_files_style_size_is_its_own_or_its_kinds_training_size():
    assert checkpoint.file_style_size({"config": {"data": {"style_size": 384}}}) == 384
    assert checkpoint.file_style_size({"generator": {"kind": "stylenet"}}) == 256
    assert checkpoint.file_style_size({"generator": {"width": 32}}) == 192  # a Johnson network
    _, shipped = checkpoint.read(checkpoint.SHIPPED_INIT)
    assert checkpoint.file_style_size(shipped) == shipped["config"]["data"]["style_size"]
