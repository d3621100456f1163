"""Hessian curvature and loss surfaces, checked against explicitly computed references.

Small float64 networks are small enough to form the full Hessian with
``torch.autograd.functional.hessian``; every iterative estimate is compared to
the eigenvalues, trace or products of that matrix.
"""

import copy

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn
from torch.func import functional_call

from bnlab import init, models
from bnlab.metrics import curvature, surface

DT = torch.float64
CE = nn.functional.cross_entropy
NORM_CFG = OmegaConf.create({"bn": {"eps": 1e-5, "momentum": 0.1}})
KAIMING = OmegaConf.create({"scheme": "kaiming_normal", "mode": "fan_in", "nonlinearity": "relu"})


def explicit_hessian(model, inputs, targets, train):
    """d^2 L / dw^2 over the flattened trainable parameters, on a copy in train or eval mode."""
    model = copy.deepcopy(model).train(train)  # a train-mode forward would move BN's running statistics
    names, params = zip(*[(n, p) for n, p in model.named_parameters() if p.requires_grad])

    def loss(flat):
        chunks = torch.split(flat, [p.numel() for p in params])
        weights = {n: c.view_as(p) for n, c, p in zip(names, chunks, params)}
        return CE(functional_call(model, weights, (inputs,)), targets)

    return torch.autograd.functional.hessian(loss, torch.cat([p.detach().reshape(-1) for p in params]))


def flat(tensors):
    return torch.cat([t.reshape(-1) for t in tensors])


def random_like_params(model, seed):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(p.shape, generator=g, dtype=p.dtype) for p in model.parameters()]


@pytest.fixture(scope="module")
def mlp():
    """A 124-parameter tanh MLP on a batch of 32, with its exact Hessian and spectrum."""
    g = torch.Generator().manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 12), nn.Tanh(), nn.Linear(12, 4)).to(DT)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=DT) * 0.7)
    x = torch.randn(32, 5, generator=g, dtype=DT)
    y = torch.randint(0, 4, (32,), generator=g)
    hess = explicit_hessian(net, x, y, train=True)
    return net, x, y, hess, torch.linalg.eigvalsh(hess)


def small_cnn(norm):
    """Conv -> BN (or nothing) -> ReLU -> Linear on 2x4x4 inputs; BN running stats moved off (0, 1)."""
    g = torch.Generator().manual_seed(1)
    layers = [nn.Conv2d(2, 2, 3, padding=1, bias=norm == "none")]
    layers += [nn.BatchNorm2d(2)] if norm == "bn" else []
    layers += [nn.ReLU(), nn.Flatten(), nn.Linear(32, 3)]
    net = nn.Sequential(*layers).to(DT)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=DT) * 0.5)
        for _ in range(3):  # train-mode forwards on shifted, scaled data
            net(2 * torch.randn(16, 2, 4, 4, generator=g, dtype=DT) + 1)
    x = torch.randn(16, 2, 4, 4, generator=g, dtype=DT)
    y = torch.randint(0, 3, (16,), generator=g)
    return net.eval(), x, y


def rel(a, b):
    return abs(a - b) / abs(b)


# ---------------------------------------------------------- vs explicit H ----


def test_hvp_equals_explicit_hessian_product(mlp):
    net, x, y, hess, _ = mlp
    vec = random_like_params(net, seed=2)
    hv = curvature.hvp(net, CE, x, y, vec)
    assert [h.shape for h in hv] == [p.shape for p in net.parameters()]
    torch.testing.assert_close(flat(hv), hess @ flat(vec), rtol=0, atol=1e-10)


def test_lanczos_finds_the_three_largest_eigenvalues(mlp):
    net, x, y, hess, eig = mlp
    values, info = curvature.top_eigenvalues(net, CE, x, y, k=3, tol=1e-10, return_info=True)
    expected = eig.flip(0)[:3].tolist()
    assert all(rel(v, e) < 1e-4 for v, e in zip(values, expected, strict=True))
    assert info["converged"] and info["bn_mode"] == "batch"
    # at the default tolerance it stops well before exhausting the 124-dim space
    (top,), info = curvature.top_eigenvalues(net, CE, x, y, return_info=True)
    assert info["converged"] and info["hvps"] < hess.shape[0] / 4
    assert rel(top, expected[0]) < 1e-2


def test_power_iteration_finds_the_largest_magnitude_eigenvalues(mlp):
    net, x, y, _, eig = mlp
    by_magnitude = eig[eig.abs().argsort(descending=True)][:2].tolist()
    values, info = curvature.power_iteration(net, CE, x, y, k=2, tol=1e-10, return_info=True)
    assert info["converged"] and 0 < info["hvps"] <= 1000
    assert all(rel(v, e) < 1e-4 for v, e in zip(values, by_magnitude, strict=True))


def test_hutchinson_trace_within_four_standard_errors(mlp):
    net, x, y, hess, _ = mlp
    est = curvature.hutchinson_trace(net, CE, x, y, num_samples=100)
    assert est["samples"] == 100 and est["stderr"] > 0
    assert abs(est["trace"] - float(torch.trace(hess))) <= 4 * est["stderr"]


def test_slq_density_integrates_to_one_and_covers_the_spectrum(mlp):
    net, x, y, hess, eig = mlp
    lo, hi = float(eig[0]), float(eig[-1])
    dens = curvature.spectral_density(net, CE, x, y, num_runs=2, lanczos_steps=hess.shape[0])
    grid, density = torch.tensor(dens["grid"]), torch.tensor(dens["density"])
    assert float(torch.trapezoid(density, grid)) == pytest.approx(1.0, abs=1e-3)
    assert grid[0] <= lo and grid[-1] >= hi
    for nodes, weights in zip(dens["nodes"], dens["weights"], strict=True):
        assert sum(weights) == pytest.approx(1.0, abs=1e-10)
        assert rel(min(nodes), lo) < 1e-3 and rel(max(nodes), hi) < 1e-3
    short = curvature.spectral_density(net, CE, x, y, num_runs=3, lanczos_steps=10)
    assert float(torch.trapezoid(torch.tensor(short["density"]), torch.tensor(short["grid"]))) == pytest.approx(
        1.0, abs=1e-3
    )


# ---------------------------------------------------------------- BN mode ----


@pytest.mark.parametrize("bn_mode", ["batch", "running"])
def test_hvp_uses_batch_or_running_statistics(bn_mode):
    net, x, y = small_cnn("bn")
    hess = explicit_hessian(net, x, y, train=bn_mode == "batch")
    vec = random_like_params(net, seed=3)
    torch.testing.assert_close(flat(curvature.hvp(net, CE, x, y, vec, bn_mode=bn_mode)), hess @ flat(vec))


def test_top_eigenvalue_depends_on_bn_mode_only_with_bn():
    top = {}
    for norm in ("bn", "none"):
        net, x, y = small_cnn(norm)
        top[norm] = {m: curvature.top_eigenvalues(net, CE, x, y, bn_mode=m)[0] for m in curvature.BN_MODES}
    assert rel(top["bn"]["batch"], top["bn"]["running"]) > 1e-2
    assert top["none"]["batch"] == pytest.approx(top["none"]["running"], rel=0, abs=1e-10)


def _public_calls():
    def batches(x, y):
        return [(x[:8], y[:8]), (x[8:], y[8:])]

    def one_d(net, x, y, mode):
        return surface.surface_1d(net, CE, batches(x, y), surface.random_direction(net, 0), [0.0, 1.0], mode)

    def two_d(net, x, y, mode):
        d = surface.random_direction(net, 0)
        return surface.surface_2d(net, CE, batches(x, y), d, d, [0.0, 1.0], [-1.0], mode)

    return {
        "hvp": lambda net, x, y, mode: curvature.hvp(net, CE, x, y, random_like_params(net, 0), mode),
        "top_eigenvalues": lambda net, x, y, mode: curvature.top_eigenvalues(net, CE, x, y, 2, mode, max_hvps=5),
        "power_iteration": lambda net, x, y, mode: curvature.power_iteration(net, CE, x, y, 1, mode, max_hvps=5),
        "hutchinson_trace": lambda net, x, y, mode: curvature.hutchinson_trace(net, CE, x, y, 3, mode),
        "spectral_density": lambda net, x, y, mode: curvature.spectral_density(net, CE, x, y, 1, 4, mode),
        "surface_1d": one_d,
        "surface_2d": two_d,
    }


PUBLIC_CALLS = _public_calls()


@pytest.mark.parametrize("bn_mode", ["batch", "running"])
@pytest.mark.parametrize("call", list(PUBLIC_CALLS))
def test_public_calls_leave_the_model_untouched(call, bn_mode):
    net, x, y = small_cnn("bn")
    net.train(bn_mode == "running")  # start in the other mode, so the call has a flag to restore
    for p in net.parameters():
        p.grad = torch.ones_like(p)
    state = {k: v.clone() for k, v in net.state_dict().items()}  # params and buffers incl. num_batches_tracked
    grads = [(p.grad, p.grad.clone()) for p in net.parameters()]
    flags = [m.training for m in net.modules()]
    rng = torch.get_rng_state()
    PUBLIC_CALLS[call](net, x, y, bn_mode)
    assert all(torch.equal(v, state[k]) for k, v in net.state_dict().items())
    assert all(p.grad is g and torch.equal(g, saved) for p, (g, saved) in zip(net.parameters(), grads))
    assert [m.training for m in net.modules()] == flags
    assert torch.equal(torch.get_rng_state(), rng)


@pytest.mark.parametrize("call", list(PUBLIC_CALLS))
def test_unknown_bn_mode_is_rejected(call):
    net, x, y = small_cnn("bn")
    with pytest.raises(ValueError, match="bn_mode"):
        PUBLIC_CALLS[call](net, x, y, "eval")


# ---------------------------------------------------------------- surfaces ----


def paired_arms():
    cfg = OmegaConf.create({"arch": "simple_cnn", "width": 0.25})
    return {norm: init.initialize(models.build(cfg, norm, NORM_CFG, 10), KAIMING, seed=0) for norm in ("bn", "none")}


def named(direction, model):
    return dict(zip([n for n, p in model.named_parameters() if p.requires_grad], direction, strict=True))


def test_filter_normalized_directions_match_filters_and_agree_across_arms():
    arms = paired_arms()
    raw, normalized = {}, {}
    for norm, model in arms.items():
        d = surface.random_direction(model, seed=5)
        raw[norm], normalized[norm] = named(d, model), named(surface.filter_normalize(d, model), model)
        params = dict(model.named_parameters())
        filtered = {f"{n}.weight" for n, m in model.named_modules() if isinstance(m, surface.FILTERED)}
        for name, d in normalized[norm].items():
            w = params[name]
            if name in filtered:
                dims = tuple(range(1, w.dim()))
                torch.testing.assert_close(
                    torch.linalg.vector_norm(d, dim=dims), torch.linalg.vector_norm(w, dim=dims), rtol=1e-6, atol=1e-6
                )
            else:  # conv biases, BN gamma/beta
                assert not d.any(), name
    shared = raw["bn"].keys() & raw["none"].keys()
    assert sum(n.endswith("weight") for n in shared) == 4  # 3 convs + classifier; plus the classifier bias
    for name in shared:
        assert torch.equal(raw["bn"][name], raw["none"][name])
        assert torch.equal(normalized["bn"][name], normalized["none"][name])


def test_included_bias_and_norm_components_keep_the_weight_draws():
    model = paired_arms()["bn"]
    plain = surface.random_direction(model, seed=5)
    full = surface.random_direction(model, seed=5, include_bias_and_norm=True)
    normalized = surface.filter_normalize(full, model)
    for (name, w), a, b, n in zip(model.named_parameters(), plain, full, normalized):
        if w.dim() > 1:
            assert torch.equal(a, b), name
        else:  # gamma (ones) and beta (zeros): whole-tensor norm of the weight
            assert b.any(), name
            assert float(torch.linalg.vector_norm(n)) == pytest.approx(float(w.detach().norm()), abs=1e-6)


@pytest.mark.parametrize("bn_mode", ["batch", "running"])
def test_surface_1d_and_2d_match_directly_computed_losses(bn_mode):
    net, x, y = small_cnn("bn")
    batches = [(x[:8], y[:8]), (x[8:], y[8:])]
    d1 = surface.filter_normalize(surface.random_direction(net, seed=1), net)
    d2 = surface.filter_normalize(surface.random_direction(net, seed=2), net)

    def reference(shift):
        ref = copy.deepcopy(net).train(bn_mode == "batch")
        with torch.no_grad():
            for p, d in zip(ref.parameters(), shift):
                p.add_(d)
            outs = [(ref(a), b) for a, b in batches]
        loss = sum(float(CE(o, b)) * len(b) for o, b in outs) / len(y)
        return loss, sum(int((o.argmax(1) == b).sum()) for o, b in outs) / len(y)

    one = surface.surface_1d(net, CE, batches, d1, [-0.5, 0.0, 0.5], bn_mode=bn_mode)
    assert (one["loss"][1], one["acc"][1]) == pytest.approx(reference([0 * d for d in d1]), abs=1e-12)
    assert (one["loss"][2], one["acc"][2]) == pytest.approx(reference([0.5 * d for d in d1]), abs=1e-12)
    two = surface.surface_2d(net, CE, batches, d1, d2, [-0.5, 0.0, 0.5], [0.0, 1.0], bn_mode=bn_mode)
    assert [len(row) for row in two["loss"]] == [3, 3] and [len(row) for row in two["acc"]] == [3, 3]
    assert two["loss"][0] == pytest.approx(one["loss"], abs=1e-12)  # beta = 0 is the 1-D slice along d1
    assert two["loss"][1][1] == pytest.approx(reference(d2)[0], abs=1e-12)
