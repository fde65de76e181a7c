"""The adaptation loop: its updates are torch.optim.Adam's, on the chosen subset only."""

import copy

import pytest
import torch

from metastyle.adaptation import (FixedInputs, adapt, cycle_batches, evaluate_terms, frozen_copy,
                                  start_task)
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


def _anchored_task(random_loss, photos=4):
    from dataclasses import replace

    from metastyle.losses import PerceptualLoss

    anchored = PerceptualLoss(random_loss.encoder, replace(random_loss.config, anchor=True))
    torch.manual_seed(0)
    style = torch.rand(1, 3, 32, 32)
    base = start_task(StyleNet(StyleNetConfig(width=8), random_loss.encoder), style)
    return anchored, base, torch.rand(photos, 3, 24, 24), anchored.style_targets(style)


def test_an_anchored_objective_holds_the_output_to_the_unadapted_models(random_loss):
    """With ``anchor`` the content term compares with the start model's own output: zero
    before any step, above zero once the steps moved the output."""
    anchored, base, photos, targets = _anchored_task(random_loss, photos=2)
    start = frozen_copy(base)
    inputs = FixedInputs(anchored, start)
    assert evaluate_terms(start, anchored, targets, photos, inputs=inputs)["content"] == 0
    result = adapt(base, anchored, targets, cycle_batches(photos, 2), 3, 0.05, subset="affines",
                   inputs=inputs)
    assert evaluate_terms(result.model, anchored, targets, photos, inputs=inputs)["content"] > 0
    assert not any(n.startswith("code.") for n in result.names)
    with pytest.raises(ValueError, match="anchored"):  # the photos are not its reference
        evaluate_terms(start, anchored, targets, photos)


def test_kept_features_and_references_give_the_steps_of_a_plain_loop(random_loss):
    """Adaptation from the trunk's kept features and the anchor's kept reference makes the
    updates of a loop that runs the model and the anchor on the photos at every step."""
    anchored, base, photos, targets = _anchored_task(random_loss)
    inputs = FixedInputs(anchored, frozen_copy(base))
    result = adapt(base, anchored, targets, cycle_batches(photos, 2), 4, 0.01, subset="affines",
                   inputs=inputs)

    reference, anchor = copy.deepcopy(base).train(), frozen_copy(base)
    names = adapt_parameter_names(reference, "affines")
    adam = torch.optim.Adam([reference.get_parameter(n) for n in names], lr=0.01)
    for step in range(4):
        content = photos[2 * (step % 2):2 * (step % 2) + 2]
        with torch.no_grad():
            wanted = anchored.content_targets(anchor(content))
        loss = anchored(reference(content), wanted, targets)["total"]
        adam.zero_grad()
        loss.backward()
        adam.step()
    for name, value in result.model.state_dict().items():
        torch.testing.assert_close(value, reference.state_dict()[name], rtol=0, atol=1e-4)
    assert any(not torch.equal(result.model.get_parameter(n), base.get_parameter(n))
               for n in names)


def test_batches_a_report_and_the_steps_share_are_encoded_once(random_loss):
    anchored, base, photos, targets = _anchored_task(random_loss)
    start = frozen_copy(base)
    calls = []
    encoded = start.encoded
    start.encoded = lambda x: calls.append(len(x)) or encoded(x)
    inputs = FixedInputs(anchored, start)
    batches = list(photos.split(2))
    evaluate_terms(start, anchored, targets, batches, inputs=inputs)
    result = adapt(base, anchored, targets, lambda step: batches[step % 2], 6, 0.01,
                   subset="affines", inputs=inputs)
    evaluate_terms(result.model, anchored, targets, batches, inputs=inputs)
    assert calls == [2, 2]  # two batches of two, each encoded once
