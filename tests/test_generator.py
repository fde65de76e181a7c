"""Tests for metastyle.generator: shapes, output range, sizes, adaptable subsets, fast weights."""

import pytest
import torch
from torch.func import functional_call

from metastyle.generator import (
    ADAPT_SUBSETS,
    Generator,
    GeneratorConfig,
    adapt_parameter_names,
    count_parameters,
)


@pytest.fixture
def tiny():
    torch.manual_seed(0)
    return Generator(GeneratorConfig(width=4, res_blocks=1)).eval()


@pytest.mark.parametrize("size", [(37, 53), (16, 16), (33, 18)])
def test_output_matches_input_size_and_is_in_unit_range(tiny, size):
    x = torch.rand(2, 3, *size)
    with torch.no_grad():
        y = tiny(x)
    assert y.shape == x.shape
    assert y.min() >= 0 and y.max() <= 1
    assert y.std() > 0


def test_johnson_size_matches_metastyle_counts():
    """Johnson's net (width 32, 5 residual blocks): 1,679,235 parameters, 3,200 in the norms."""
    model = Generator(GeneratorConfig(32, 5))
    assert count_parameters(model) == 1_679_235
    params = dict(model.named_parameters())
    assert sum(params[n].numel() for n in adapt_parameter_names(model, "norm")) == 3_200


def test_adapt_subsets_are_nested(tiny):
    norm, affines, decoder, every = (set(adapt_parameter_names(tiny, s)) for s in ADAPT_SUBSETS)
    assert affines == norm < decoder < every  # the Johnson network has no style code
    assert every == {n for n, _ in tiny.named_parameters()}
    assert all(n.rsplit(".", 2)[-2] == "norm" for n in norm)
    assert any(n.startswith("decoder.") and ".norm." not in n for n in decoder)
    assert not any(n.startswith(("encoder.", "residual.")) for n in decoder - norm)


def test_unknown_subset_is_value_error(tiny):
    with pytest.raises(ValueError, match="bogus"):
        adapt_parameter_names(tiny, "bogus")


def test_functional_call_with_own_weights_reproduces_forward(tiny):
    x = torch.rand(1, 3, 20, 24)
    params = dict(tiny.named_parameters())
    with torch.no_grad():
        assert torch.equal(functional_call(tiny, params, (x,)), tiny(x))


def test_functional_call_with_fast_weights_changes_output_not_model(tiny):
    x = torch.rand(1, 3, 20, 24)
    with torch.no_grad():
        before = tiny(x)
        fast = {n: p * 1.5 + 0.1 for n, p in tiny.named_parameters()
                if n in adapt_parameter_names(tiny, "norm")}
        adapted = functional_call(tiny, fast, (x,))
        assert not torch.allclose(adapted, before, atol=1e-4)
        assert torch.equal(tiny(x), before)  # the module's own parameters are untouched
