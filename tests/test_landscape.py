"""Santurkar et al.'s landscape probe: closed form on least squares, and no side effects."""

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from bnlab import init, models
from bnlab.metrics import landscape


def least_squares(n=64, d=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=torch.float64) * torch.linspace(0.2, 3, d, dtype=torch.float64)
    y = torch.randn(n, 1, generator=g, dtype=torch.float64)
    model = nn.Linear(d, 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(torch.randn(1, d, generator=g, dtype=torch.float64))

    def loss_fn(out, t):  # L(w) = ||Xw - y||^2 / (2n)
        return ((out - t) ** 2).sum() / (2 * n)

    return model, loss_fn, X, y


def test_probe_matches_the_closed_form_for_least_squares():
    model, loss_fn, X, y = least_squares()
    n = X.shape[0]
    w = model.weight.detach().clone().view(-1)
    H = X.T @ X / n
    g = X.T @ (X @ w - y.view(-1)) / n
    L0 = ((X @ w - y.view(-1)) ** 2).sum() / (2 * n)
    etas = landscape.step_grid(0.1)
    assert etas == pytest.approx([0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4])
    out = landscape.probe(model, loss_fn, X, y, etas)
    Hg = H @ g
    expected_losses = [(L0 - e * g @ g + e**2 * g @ Hg / 2).item() for e in etas]
    expected_preds = [(e * Hg.norm()).item() for e in etas]
    beta = (Hg.norm() / g.norm()).item()
    rel = dict(rel=1e-6, abs=0)
    assert out["loss"] == pytest.approx(L0.item(), **rel)
    assert out["grad_norm"] == pytest.approx(g.norm().item(), **rel)
    assert out["losses"] == pytest.approx(expected_losses, **rel)
    assert out["grad_preds"] == pytest.approx(expected_preds, **rel)
    assert out["betas"] == pytest.approx([beta] * len(etas), **rel)
    assert out["beta_eff"] == pytest.approx(beta, **rel)
    assert out["loss_min"] == pytest.approx(min(expected_losses), **rel)
    assert out["loss_max"] == pytest.approx(max(expected_losses), **rel)
    assert out["grad_pred_min"] == pytest.approx(expected_preds[0], **rel)
    assert out["grad_pred_max"] == pytest.approx(expected_preds[-1], **rel)


def test_given_gradient_gives_the_same_answer():
    model, loss_fn, X, y = least_squares(seed=1)
    etas = landscape.step_grid(0.05)
    loss = loss_fn(model(X), y)
    grad = torch.autograd.grad(loss, list(model.parameters()))
    given = landscape.probe(model, loss_fn, X, y, etas, grad=grad, loss=loss.detach())
    computed = landscape.probe(model, loss_fn, X, y, etas)
    assert given.keys() == computed.keys()
    for key in given:
        assert given[key] == pytest.approx(computed[key], rel=1e-12), key
    with pytest.raises(ValueError, match="pass both grad and loss"):
        landscape.probe(model, loss_fn, X, y, etas, grad=grad)


def snapshot(model, opt):
    return (
        {k: v.clone() for k, v in model.state_dict().items()},
        [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        [p.requires_grad for p in model.parameters()],
        [m.training for m in model.modules()],
        torch.get_rng_state(),
        repr(opt.state_dict()),
    )


def assert_same(a, b):
    (sa, ga, ra, ta, rnga, oa), (sb, gb, rb, tb, rngb, ob) = a, b
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k  # bitwise, BN running stats and counters included
    assert all((x is None and y is None) or torch.equal(x, y) for x, y in zip(ga, gb))
    assert ra == rb and ta == tb and torch.equal(rnga, rngb) and oa == ob


@pytest.mark.parametrize("norm", ["bn", "none"])
def test_probe_leaves_model_optimizer_and_rng_untouched(norm):
    model = models.build(OmegaConf.create({"arch": "simple_cnn", "width": 0.25}), norm,
                         OmegaConf.create({"bn": {"eps": 1e-5, "momentum": 0.1}}), 10)
    init.initialize(model, OmegaConf.create({"scheme": "kaiming_normal", "mode": "fan_in",
                                             "nonlinearity": "relu"}), seed=0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, y = torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,))
    # give it real history: BN running stats moved, momentum buffers, .grad set, eval mode on
    for _ in range(2):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    list(model.parameters())[0].requires_grad_(False)
    model.eval()
    before = snapshot(model, opt)
    out = landscape.probe(model, nn.functional.cross_entropy, x, y, landscape.step_grid(0.1))
    assert_same(before, snapshot(model, opt))
    assert out["loss_max"] >= out["loss_min"] and out["beta_eff"] > 0
