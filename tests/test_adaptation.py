"""The adaptation loop: its updates are torch.optim.Adam's, on the chosen subset only."""

import copy

import torch

from metastyle.adaptation import adapt, cycle_batches, start_task
from metastyle.generator import adapt_parameter_names
from metastyle.stylenet import StyleNet, StyleNetConfig


def test_adapt_makes_torch_adams_updates_on_the_subset_and_leaves_the_rest(random_loss):
    # The encoder-decoder: every adapted tensor has a real gradient (the Johnson network's
    # last residual bias has none, the next instance norm removes it, so Adam amplifies noise)
    torch.manual_seed(0)
    style = torch.rand(1, 3, 32, 32)
    base = start_task(StyleNet(StyleNetConfig(width=8), random_loss.encoder), style)
    photos = torch.rand(4, 3, 24, 24)
    targets = random_loss.style_targets(style)
    batches = cycle_batches(photos, 2)
    result = adapt(base, random_loss, targets, batches, 3, 0.01, subset="norm")

    reference = copy.deepcopy(base).train()
    names = adapt_parameter_names(reference, "norm")
    adam = torch.optim.Adam([reference.get_parameter(n) for n in names], lr=0.01)
    for step in range(3):
        content = batches(step)
        loss = random_loss(reference(content), content, targets)["total"]
        adam.zero_grad()
        loss.backward()
        adam.step()

    assert result.names == names
    got, want = result.model.state_dict(), reference.state_dict()
    for name in got:
        # float32 rounding of the same update (torch folds the bias corrections differently) is
        # amplified where a gradient is tiny; 1e-4 is 1% of one step at this rate
        torch.testing.assert_close(got[name], want[name], rtol=0, atol=1e-4)
        assert torch.equal(got[name], base.state_dict()[name]) == (name not in names)


def test_an_anchored_objective_holds_the_output_to_the_unadapted_models(random_loss):
    """With ``anchor`` the content term compares with the start model's own output: zero
    before any step, above zero once the steps moved the output; the photo's is not zero."""
    from dataclasses import replace

    from metastyle.adaptation import evaluate_terms, frozen_copy
    from metastyle.losses import PerceptualLoss

    anchored = PerceptualLoss(random_loss.encoder, replace(random_loss.config, anchor=True))
    torch.manual_seed(0)
    style = torch.rand(1, 3, 32, 32)
    base = start_task(StyleNet(StyleNetConfig(width=8), random_loss.encoder), style)
    photos = torch.rand(2, 3, 24, 24)
    targets = anchored.style_targets(style)
    start = frozen_copy(base)
    assert evaluate_terms(start, anchored, targets, photos, anchor=start)["content"] == 0
    assert evaluate_terms(start, anchored, targets, photos)["content"] > 0
    result = adapt(base, anchored, targets, cycle_batches(photos, 2), 3, 0.05, subset="affines")
    assert evaluate_terms(result.model, anchored, targets, photos, anchor=start)["content"] > 0
    assert not any(n.startswith("code.") for n in result.names)
