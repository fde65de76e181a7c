"""MAML / Meta-SGD gradients checked against finite differences of the whole adapt-then-score map."""

import pytest
import torch

from metastyle.corpus import Episode
from metastyle.generator import Generator, GeneratorConfig, adapt_parameter_names
from metastyle.meta import InnerLoop, MetaLearner, clip_by_norm, inner_loop, meta_loss


@pytest.fixture(autouse=True)
def float64():
    """Finite differences need double precision; restored so other test files are unaffected."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def _linear_losses():
    gen = torch.Generator().manual_seed(0)
    xs, ys = torch.randn(5, 3, generator=gen), torch.randn(5, 2, generator=gen)
    xq, yq = torch.randn(4, 3, generator=gen), torch.randn(4, 2, generator=gen)

    def loss_on(x, y):
        return lambda p: ((x @ p["w"] + p["b"] - y) ** 2).mean()

    return loss_on(xs, ys), loss_on(xq, yq)


def _query_after(params, rates, steps, first_order=False):
    support, query = _linear_losses()
    fast, _ = inner_loop(params, ["w"], support, rates, InnerLoop(steps, first_order=first_order))
    return query(fast)


def _finite_difference(f, tensor, eps=1e-6):
    grad = torch.zeros_like(tensor)
    for i in range(tensor.numel()):
        plus, minus = tensor.clone(), tensor.clone()
        plus.view(-1)[i] += eps
        minus.view(-1)[i] -= eps
        grad.view(-1)[i] = (f(plus) - f(minus)) / (2 * eps)
    return grad


def test_second_order_meta_gradient_matches_finite_differences():
    gen = torch.Generator().manual_seed(1)
    w, b = torch.randn(3, 2, generator=gen), torch.randn(2, generator=gen)
    rates = {"w": torch.tensor(0.3)}
    for steps in (1, 3):
        w_var, b_var = w.clone().requires_grad_(), b.clone().requires_grad_()
        _query_after({"w": w_var, "b": b_var}, rates, steps).backward()
        fd_w = _finite_difference(lambda t: _query_after({"w": t, "b": b}, rates, steps), w)
        fd_b = _finite_difference(lambda t: _query_after({"w": w, "b": t}, rates, steps), b)
        torch.testing.assert_close(w_var.grad, fd_w, rtol=1e-6, atol=1e-8)
        torch.testing.assert_close(b_var.grad, fd_b, rtol=1e-6, atol=1e-8)


def test_meta_sgd_rate_gradient_matches_finite_differences_in_both_orders():
    """First-order still trains the rates: d/d rate of (theta - rate * g) is -g, with g held fixed."""
    gen = torch.Generator().manual_seed(2)
    params = {"w": torch.randn(3, 2, generator=gen), "b": torch.zeros(2)}
    rate = torch.tensor(0.2, requires_grad=True)
    _query_after(params, {"w": rate}, 1).backward()
    fd = _finite_difference(lambda r: _query_after(params, {"w": r}, 1), torch.tensor(0.2))
    torch.testing.assert_close(rate.grad, fd, rtol=1e-6, atol=1e-9)
    rate_fo = torch.tensor(0.2, requires_grad=True)
    _query_after(params, {"w": rate_fo}, 1, first_order=True).backward()
    torch.testing.assert_close(rate_fo.grad, fd, rtol=1e-6, atol=1e-9)  # K=1: exact either way


def test_first_order_gradient_is_the_query_gradient_at_the_adapted_weights():
    gen = torch.Generator().manual_seed(3)
    w = torch.randn(3, 2, generator=gen)
    b = torch.randn(2, generator=gen)
    rates = {"w": torch.tensor(0.3)}
    w_fo = w.clone().requires_grad_()
    _query_after({"w": w_fo, "b": b}, rates, 2, first_order=True).backward()
    support, query = _linear_losses()
    fast, _ = inner_loop({"w": w, "b": b}, ["w"], support, rates, InnerLoop(2))
    w_adapted = fast["w"].detach().requires_grad_()
    query({"w": w_adapted, "b": b}).backward()
    torch.testing.assert_close(w_fo.grad, w_adapted.grad)
    w_so = w.clone().requires_grad_()
    _query_after({"w": w_so, "b": b}, rates, 2).backward()
    assert (w_so.grad - w_fo.grad).abs().max() > 1e-4  # the second-order term is real


def test_inner_loop_lowers_support_loss_and_leaves_other_parameters_alone():
    support, _ = _linear_losses()
    params = {"w": torch.zeros(3, 2), "b": torch.ones(2)}
    fast, losses = inner_loop(params, ["w"], support, {"w": torch.tensor(0.2)}, InnerLoop(5))
    assert losses == sorted(losses, reverse=True) and losses[-1] < losses[0]
    assert fast["b"] is params["b"]


def test_clip_by_norm_bounds_the_global_norm():
    grads = [torch.full((4,), 3.0), torch.full((2,), 4.0)]
    clipped = clip_by_norm(grads, 1.0)
    norm = torch.sqrt(sum(g.pow(2).sum() for g in clipped))
    assert abs(norm.item() - 1.0) < 1e-9
    assert clip_by_norm(grads, 0.0) is grads


@pytest.mark.parametrize("inner_optimizer", ["sgd", "adam"])
def test_meta_loss_reaches_init_and_rates_on_the_generator(random_loss, inner_optimizer):
    torch.set_default_dtype(torch.float32)
    torch.manual_seed(0)
    model = Generator(GeneratorConfig(width=4, res_blocks=1))
    learner = MetaLearner(model, adapt_parameter_names(model, "norm"), 0.01, meta_sgd=True)
    gen = torch.Generator().manual_seed(0)
    ep = Episode("s", torch.rand(1, 3, 32, 32, generator=gen),
                 torch.rand(2, 3, 16, 16, generator=gen), torch.rand(2, 3, 16, 16, generator=gen))
    loss, stats = meta_loss(learner, random_loss, [ep],
                            InnerLoop(2, inner_optimizer, grad_clip=10.0))
    loss.backward()
    assert stats["query_after"] > 0
    assert model.encoder[0].conv.weight.grad.abs().sum() > 0  # a non-adapted parameter
    assert all(p.grad is not None and p.grad.abs() > 0 for p in learner.log_rates.values())


def test_anchor_mixes_the_adapted_and_the_unadapted_query_loss(random_loss):
    """anchor=a gives (after + a * before) / (1 + a): checked against the plain meta-loss and the
    joint (no inner loop) loss computed separately, values and init gradients."""
    torch.set_default_dtype(torch.float32)
    torch.manual_seed(0)
    model = Generator(GeneratorConfig(width=4, res_blocks=1))
    learner = MetaLearner(model, adapt_parameter_names(model, "norm"), 0.05, meta_sgd=False)
    gen = torch.Generator().manual_seed(1)
    eps = [Episode(str(i), torch.rand(1, 3, 32, 32, generator=gen), torch.rand(2, 3, 16, 16,
                   generator=gen), torch.rand(2, 3, 16, 16, generator=gen)) for i in range(2)]

    def loss_and_grad(inner_steps, anchor):
        model.zero_grad()
        loss, stats = meta_loss(learner, random_loss, eps, InnerLoop(inner_steps, "adam"), anchor)
        loss.backward()
        return loss.item(), stats, torch.cat([p.grad.flatten() for p in model.parameters()])

    after, _, g_after = loss_and_grad(2, 0.0)
    before, _, g_before = loss_and_grad(0, 0.0)
    mixed, stats, g_mixed = loss_and_grad(2, 3.0)
    assert stats["query_before"] == pytest.approx(before, rel=1e-5)
    assert mixed == pytest.approx((after + 3 * before) / 4, rel=1e-5)
    torch.testing.assert_close(g_mixed, (g_after + 3 * g_before) / 4, rtol=1e-4, atol=1e-7)


def test_adam_inner_loop_makes_exactly_the_updates_of_torch_adam():
    """The meta-trained init is trained for the updates `metastyle adapt` (torch.optim.Adam) makes."""
    support, _ = _linear_losses()
    gen = torch.Generator().manual_seed(4)
    w0, b = torch.randn(3, 2, generator=gen), torch.randn(2, generator=gen)
    fast, losses = inner_loop({"w": w0, "b": b}, ["w"], support, {"w": torch.tensor(0.05)},
                              InnerLoop(4, "adam"))
    w = w0.clone().requires_grad_()
    adam = torch.optim.Adam([w], lr=0.05)
    reference = []
    for _ in range(4):
        loss = support({"w": w, "b": b})
        adam.zero_grad()
        loss.backward()
        adam.step()
        reference.append(loss.item())
    torch.testing.assert_close(fast["w"].detach(), w.detach(), rtol=1e-12, atol=1e-12)
    assert losses == pytest.approx(reference, rel=1e-12)


def test_second_order_gradient_through_adam_steps_matches_finite_differences():
    gen = torch.Generator().manual_seed(5)
    w, b = torch.randn(3, 2, generator=gen), torch.randn(2, generator=gen)
    rates = {"w": torch.tensor(0.02)}

    def query_after(weights):
        support, query = _linear_losses()
        fast, _ = inner_loop({"w": weights, "b": b}, ["w"], support, rates,
                             InnerLoop(3, "adam", first_order=False))
        return query(fast)

    w_var = w.clone().requires_grad_()
    query_after(w_var).backward()
    torch.testing.assert_close(w_var.grad, _finite_difference(query_after, w), rtol=1e-5,
                               atol=1e-8)


def test_unknown_inner_optimizer_is_refused():
    with pytest.raises(ValueError, match="inner optimizer"):
        InnerLoop(1, "lion")


def test_inner_loop_settings_come_from_the_meta_table():
    from metastyle.config import MetaConfig

    config = MetaConfig(inner_steps=3, inner_optimizer="sgd", first_order=False,
                        inner_grad_clip=2.0)
    assert InnerLoop.of(config) == InnerLoop(3, "sgd", first_order=False, grad_clip=2.0)
