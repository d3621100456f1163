"""The norm kinds beyond PyTorch's BN: scratch BN (hand-derived backward), ghost BN, GroupNorm,
LayerNorm, Batch Renorm, and every kind in every network with identical initial weights."""

from functools import cache
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn

from bnlab import init, models, norms
from bnlab.errors import BnlabError

REPO = Path(__file__).resolve().parents[1]
CFG = OmegaConf.load(REPO / "configs/norm/default.yaml")  # the shipped defaults
EPS, MOMENTUM = float(CFG.bn.eps), float(CFG.bn.momentum)
KAIMING = OmegaConf.create({"scheme": "kaiming_normal", "mode": "fan_in", "nonlinearity": "relu"})
TOL = {"atol": 1e-5, "rtol": 1e-5}
SHAPES = [(8, 5), (6, 4, 5, 5)]  # after a linear layer, after a conv


def batch(shape, seed=0, dtype=torch.float32):
    """Input with a channel-dependent mean and scale, as real pre-activations have."""
    g = torch.Generator().manual_seed(seed)
    c = shape[1]
    view = (1, c, *([1] * (len(shape) - 2)))
    scale = torch.linspace(0.5, 3.0, c).view(view)
    shift = torch.linspace(-2.0, 2.0, c).view(view)
    return (torch.randn(shape, generator=g) * scale + shift).to(dtype)


def upstream(shape, seed):
    """A random upstream gradient dL/dy (unit scale, like a loss's)."""
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def torch_bn(shape):
    return nn.BatchNorm2d(shape[1], eps=EPS, momentum=MOMENTUM) if len(shape) == 4 else nn.BatchNorm1d(
        shape[1], eps=EPS, momentum=MOMENTUM)


def same_affine(*layers, seed=1):
    """Give every layer the same random gamma and beta (not 1 and 0, so the affine is exercised)."""
    g = torch.Generator().manual_seed(seed)
    c = layers[0].weight.numel()
    gamma, beta = torch.rand(c, generator=g) + 0.5, torch.randn(c, generator=g)
    with torch.no_grad():
        for layer in layers:
            layer.weight.copy_(gamma)
            layer.bias.copy_(beta)


def forward_backward(layer, x, dy):
    """Output and gradients w.r.t. input, gamma and beta for upstream gradient ``dy``."""
    x = x.clone().requires_grad_(True)
    layer.zero_grad()
    y = layer(x)
    y.backward(dy)
    return y.detach(), x.grad, layer.weight.grad.clone(), layer.bias.grad.clone()


def assert_same_pass(a, b, tol=TOL):
    for name, u, v in zip(("output", "dx", "dgamma", "dbeta"), a, b):
        torch.testing.assert_close(u, v, **tol, msg=lambda m, n=name: f"{n}: {m}")


def assert_same_running(layer, ref, tol=1e-6):
    torch.testing.assert_close(layer.running_mean, ref.running_mean, atol=tol, rtol=tol)
    torch.testing.assert_close(layer.running_var, ref.running_var, atol=tol, rtol=tol)
    assert layer.num_batches_tracked.dtype == torch.long
    assert torch.equal(layer.num_batches_tracked, ref.num_batches_tracked)


# --------------------------------------------------------------------------- scratch_bn


@pytest.mark.parametrize("shape", SHAPES)
def test_scratch_bn_matches_pytorch_forward_and_gradients(shape):
    scratch, ref = norms.ScratchBatchNorm(shape[1], EPS, MOMENTUM), torch_bn(shape)
    same_affine(scratch, ref)
    x, dy = batch(shape, seed=0), upstream(shape, seed=1)  # a random upstream gradient, not sum()
    assert_same_pass(forward_backward(scratch, x, dy), forward_backward(ref, x, dy))


@pytest.mark.parametrize("shape", [(5, 3), (3, 2, 3, 3)])
def test_hand_derived_backward_passes_gradcheck(shape):
    x = batch(shape, seed=2, dtype=torch.float64).requires_grad_(True)
    g = torch.Generator().manual_seed(3)
    gamma = (torch.rand(shape[1], generator=g, dtype=torch.float64) + 0.5).requires_grad_(True)
    beta = torch.randn(shape[1], generator=g, dtype=torch.float64).requires_grad_(True)

    def fn(x, gamma, beta):
        return norms.BatchNormFunction.apply(x, gamma, beta, EPS)

    assert torch.autograd.gradcheck(fn, (x, gamma, beta))
    # curvature probes differentiate the backward again (Hessian-vector products)
    assert torch.autograd.gradgradcheck(fn, (x, gamma, beta))


def test_input_gradient_has_no_component_along_shift_or_scale():
    """docs/science.md sec. 1 scale invariance: per channel, sum(dx) = 0 and sum(dx * x_hat) = 0.

    The second identity is exact for eps = 0 (with eps it holds up to eps / (var + eps)).
    """
    shape = (6, 4, 5, 5)
    x = batch(shape, seed=4, dtype=torch.float64).requires_grad_(True)
    gamma, beta = torch.full((4,), 1.7, dtype=torch.float64), torch.zeros(4, dtype=torch.float64)
    y, mean, var = norms.BatchNormFunction.apply(x, gamma, beta, 0.0)
    y.backward(upstream(shape, seed=5).double())
    dims = [0, 2, 3]
    x_hat = (x.detach() - mean.view(1, -1, 1, 1)) / torch.sqrt(var.view(1, -1, 1, 1))
    scale = x.grad.abs().sum(dims)
    assert torch.all(x.grad.sum(dims).abs() < 1e-10 * scale)
    assert torch.all((x.grad * x_hat).sum(dims).abs() < 1e-10 * scale)
    # the returned statistics are the batch mean and the biased variance
    torch.testing.assert_close(mean, x.detach().mean(dims))
    torch.testing.assert_close(var, x.detach().var(dims, correction=0))


@pytest.mark.parametrize("shape", SHAPES)
def test_scratch_bn_running_statistics_and_eval_match_pytorch(shape):
    scratch, ref = norms.ScratchBatchNorm(shape[1], EPS, MOMENTUM), torch_bn(shape)
    same_affine(scratch, ref)
    assert scratch.running_mean.eq(0).all() and scratch.running_var.eq(1).all()
    assert scratch.num_batches_tracked.item() == 0
    for step in range(5):
        x = batch(shape, seed=10 + step) * (1 + step)  # different batches, drifting statistics
        torch.testing.assert_close(scratch(x), ref(x), **TOL)
    assert scratch.num_batches_tracked.item() == 5
    assert_same_running(scratch, ref)
    scratch.eval(), ref.eval()
    x = batch(shape, seed=99)
    before = scratch.running_mean.clone()
    torch.testing.assert_close(scratch(x), ref(x), **TOL)  # normalizes with the running statistics
    assert torch.equal(scratch.running_mean, before) and scratch.num_batches_tracked.item() == 5


def test_scratch_bn_is_a_drop_in_for_pytorch_bn_in_a_network():
    spec = OmegaConf.create({"arch": "simple_cnn", "width": 0.25})
    ref = init.initialize(models.build(spec, "bn", CFG, 10), KAIMING, seed=0)
    scratch = models.build(spec, "scratch_bn", CFG, 10)
    scratch.load_state_dict(ref.state_dict(), strict=True)  # same parameter and buffer names
    x, y = batch((8, 3, 32, 32), seed=6), torch.arange(8) % 10
    losses = []
    for net in (ref, scratch):
        loss = F.cross_entropy(net(x), y)
        loss.backward()
        losses.append(loss.detach())
    torch.testing.assert_close(losses[0], losses[1], atol=1e-5, rtol=1e-5)
    ref_p = dict(ref.named_parameters())
    for n, p in scratch.named_parameters():
        torch.testing.assert_close(p.grad, ref_p[n].grad, atol=1e-4, rtol=1e-4, msg=lambda m, n=n: f"{n}: {m}")


# --------------------------------------------------------------------------- ghost_bn


@pytest.mark.parametrize("ghost", [16, 64])
def test_ghost_bn_with_one_ghost_batch_is_bn(ghost):
    shape = (16, 4, 5, 5)
    layer, ref = norms.GhostBatchNorm(4, ghost, EPS, MOMENTUM), torch_bn(shape)
    same_affine(layer, ref)
    for step in range(3):
        x, dy = batch(shape, seed=20 + step) * (1 + step), upstream(shape, seed=30 + step)
        assert_same_pass(forward_backward(layer, x, dy), forward_backward(ref, x, dy))
    assert_same_running(layer, ref)
    layer.eval(), ref.eval()
    torch.testing.assert_close(layer(batch(shape, seed=7)), ref(batch(shape, seed=7)), **TOL)


@pytest.mark.parametrize("n", [16, 18])  # 18: the last ghost batch has 2 samples
def test_ghost_bn_normalizes_each_ghost_batch_on_its_own(n):
    ghost, c = 4, 3
    x = batch((n, c, 5, 5), seed=8)
    x = x + torch.arange(n).div(ghost, rounding_mode="floor").view(n, 1, 1, 1)  # chunks differ in mean
    layer = norms.GhostBatchNorm(c, ghost, EPS, MOMENTUM)  # gamma = 1, beta = 0: y is x_hat
    y = layer(x)
    chunks = list(zip(torch.split(x, ghost), torch.split(y, ghost)))
    assert len(chunks) == -(-n // ghost)
    for xc, yc in chunks:
        assert yc.mean((0, 2, 3)).abs().max() < 1e-5
        v = xc.var((0, 2, 3), correction=0)
        torch.testing.assert_close(yc.var((0, 2, 3), correction=0), v / (v + EPS), atol=1e-5, rtol=1e-5)
    full = F.batch_norm(x, None, None, training=True, eps=EPS)
    assert (y - full).abs().max() > 0.1  # not the same as BN over the whole batch
    # running statistics: one momentum step with the mean over ghost batches of
    # their means and of their unbiased variances
    means = torch.stack([xc.mean((0, 2, 3)) for xc, _ in chunks]).mean(0)
    variances = torch.stack([xc.var((0, 2, 3), correction=1) for xc, _ in chunks]).mean(0)
    torch.testing.assert_close(layer.running_mean, MOMENTUM * means, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(layer.running_var, (1 - MOMENTUM) + MOMENTUM * variances, atol=1e-6, rtol=1e-6)
    assert layer.num_batches_tracked.item() == 1
    # gamma and beta are shared by the ghost batches and get gradient from all of them
    y.backward(upstream(y.shape, seed=9))
    assert layer.weight.grad.abs().min() > 0


# --------------------------------------------------------------------------- group_norm / layer_norm


def test_group_count_is_the_largest_divisor_not_above_groups():
    for groups in (1, 3, 8, 32):
        for c in range(1, 97):
            g = norms.group_count(c, groups)
            assert c % g == 0 and 1 <= g <= groups, (c, groups, g)
            assert not any(c % d == 0 for d in range(g + 1, groups + 1)), (c, groups, g)
    assert norms.group_count(64, 32) == 32 and norms.group_count(8, 32) == 8  # 32 divides / C < 32
    assert norms.group_count(37, 32) == 1  # prime above 32: a single group (LayerNorm)


@pytest.mark.parametrize("c", [64, 24, 8])
@pytest.mark.parametrize("shape_tail", [(), (5, 5)])  # after a linear layer, after a conv
def test_group_norm_is_pytorch_group_norm(c, shape_tail):
    layer = norms.make("group_norm", c, 2 if shape_tail else 1, CFG)
    g = norms.group_count(c, CFG.group_norm.groups)
    assert isinstance(layer, nn.GroupNorm) and layer.num_groups == g and c % g == 0
    ref = nn.GroupNorm(g, c, eps=EPS)
    same_affine(layer, ref)
    x = batch((4, c, *shape_tail), seed=11)
    torch.testing.assert_close(layer(x), ref(x), **TOL)


@pytest.mark.parametrize("shape", SHAPES)
def test_layer_norm_normalizes_each_sample_with_a_per_channel_affine(shape):
    layer = norms.make("layer_norm", shape[1], len(shape) - 2, CFG)
    assert isinstance(layer, nn.GroupNorm) and layer.num_groups == 1
    same_affine(layer)
    x = batch(shape, seed=12)
    view = (1, -1, *([1] * (len(shape) - 2)))
    expected = F.layer_norm(x, x.shape[1:], eps=EPS) * layer.weight.view(view) + layer.bias.view(view)
    torch.testing.assert_close(layer(x), expected.detach(), **TOL)
    # per sample: the same in a batch as alone, and the same in eval mode
    torch.testing.assert_close(layer(x[:1]), layer(x)[:1], **TOL)
    layer.eval()
    torch.testing.assert_close(layer(x), expected.detach(), **TOL)


# --------------------------------------------------------------------------- batch_renorm


def test_batch_renorm_without_slack_is_bn():
    shape = (8, 3, 5, 5)
    layer, ref = norms.BatchRenorm(3, r_max=1.0, d_max=0.0, eps=EPS, momentum=MOMENTUM), torch_bn(shape)
    same_affine(layer, ref)
    with torch.no_grad():  # stale running statistics change nothing when r = 1, d = 0
        for m in (layer, ref):
            m.running_mean.fill_(7.0)
            m.running_var.fill_(40.0)
    for step in range(3):
        x, dy = batch(shape, seed=40 + step), upstream(shape, seed=50 + step)
        assert_same_pass(forward_backward(layer, x, dy), forward_backward(ref, x, dy))
    assert_same_running(layer, ref)
    layer.eval(), ref.eval()
    torch.testing.assert_close(layer(batch(shape, seed=13)), ref(batch(shape, seed=13)), **TOL)


def test_batch_renorm_inside_the_clip_trains_on_the_inference_output():
    """Ioffe 2017: with r, d unclipped, x_hat = (x - mu) / sigma (running statistics), as in eval,
    while the gradient is BN's times r (r and d are stop-gradient constants)."""
    layer = norms.make("batch_renorm", 3, 2, CFG)
    same_affine(layer)
    x, dy = batch((8, 3, 4, 4), seed=19), upstream((8, 3, 4, 4), seed=20)
    mu_b, var_b = x.mean((0, 2, 3)), x.var((0, 2, 3), correction=0)
    with torch.no_grad():  # running statistics off the batch's, but within r_max and d_max
        layer.running_mean.copy_(mu_b + 0.5 * var_b.sqrt())
        layer.running_var.copy_(2.0 * var_b)
    sigma = torch.sqrt(layer.running_var + EPS)
    r = torch.sqrt(var_b + EPS) / sigma
    d = (mu_b - layer.running_mean) / sigma
    assert torch.all((r > 1 / layer.r_max) & (r < layer.r_max) & (d.abs() < layer.d_max))
    layer.eval()
    inference = layer(x)
    layer.train()
    out, dx, _, _ = forward_backward(layer, x, dy)
    torch.testing.assert_close(out, inference, **TOL)
    ref = torch_bn(x.shape)
    same_affine(ref)
    _, dx_bn, _, _ = forward_backward(ref, x, dy)
    torch.testing.assert_close(dx, dx_bn * r.view(1, -1, 1, 1), **TOL)


def test_batch_renorm_clips_r_and_d_with_stale_running_statistics():
    r_max, d_max = float(CFG.batch_renorm.r_max), float(CFG.batch_renorm.d_max)
    layer = norms.make("batch_renorm", 2, 2, CFG)
    assert isinstance(layer, norms.BatchRenorm) and (layer.r_max, layer.d_max) == (r_max, d_max)
    same_affine(layer)
    x, dy = batch((8, 2, 4, 4), seed=14), upstream((8, 2, 4, 4), seed=15)
    mu_b, var_b = x.mean((0, 2, 3)), x.var((0, 2, 3), correction=0)
    sigma_b = torch.sqrt(var_b + EPS)
    # channel 0: running std far below the batch's, running mean far above;
    # channel 1: running std far above, running mean far below
    stale_mean, stale_var = torch.tensor([50.0, -1000.0]), torch.tensor([1e-2, 1e4])
    with torch.no_grad():
        layer.running_mean.copy_(stale_mean)
        layer.running_var.copy_(stale_var)
    sigma = torch.sqrt(stale_var + EPS)
    raw_r, raw_d = sigma_b / sigma, (mu_b - stale_mean) / sigma
    assert raw_r[0] > r_max and raw_r[1] < 1 / r_max and raw_d[0] < -d_max and raw_d[1] > d_max
    r, d = torch.tensor([r_max, 1 / r_max]), torch.tensor([-d_max, d_max])  # the clipped values

    out, dx, dgamma, dbeta = forward_backward(layer, x, dy)
    per_c = (1, -1, 1, 1)
    x_hat = (x - mu_b.view(per_c)) / sigma_b.view(per_c) * r.view(per_c) + d.view(per_c)
    expected = layer.weight.detach().view(per_c) * x_hat + layer.bias.detach().view(per_c)
    torch.testing.assert_close(out, expected, **TOL)
    torch.testing.assert_close(dgamma, (dy * x_hat).sum((0, 2, 3)), **TOL)
    torch.testing.assert_close(dbeta, dy.sum((0, 2, 3)), **TOL)
    # r and d are constants for backprop: dx is r times BN's input gradient
    ref = torch_bn(x.shape)
    same_affine(ref)
    _, dx_bn, _, _ = forward_backward(ref, x, dy)
    torch.testing.assert_close(dx, dx_bn * r.view(per_c), **TOL)
    # running statistics move toward the batch's as in BN (unbiased variance)
    m = x.numel() // 2
    torch.testing.assert_close(layer.running_mean, (1 - MOMENTUM) * stale_mean + MOMENTUM * mu_b, **TOL)
    torch.testing.assert_close(layer.running_var, (1 - MOMENTUM) * stale_var + MOMENTUM * var_b * m / (m - 1), **TOL)


# --------------------------------------------------------------------------- make / has_shift / config


def test_every_kind_is_known_and_bad_values_name_their_key():
    assert {"scratch_bn", "ghost_bn", "group_norm", "layer_norm", "batch_renorm"} <= set(norms.KINDS)
    assert not norms.has_shift("none") and not norms.has_shift("noisy_none")
    assert all(norms.has_shift(k) for k in norms.KINDS if k not in ("none", "noisy_none"))
    with pytest.raises(BnlabError, match="unknown norm 'bogus'; choose from bn, none"):
        norms.check("bogus")
    for key, value in (("ghost_bn.ghost_batch_size", 0), ("group_norm.groups", 0),
                       ("batch_renorm.r_max", 0.5), ("batch_renorm.d_max", -1.0)):
        bad = OmegaConf.merge(CFG, OmegaConf.from_dotlist([f"{key}={value}"]))
        with pytest.raises(BnlabError, match=f"norm.{key}="):
            norms.make(key.split(".")[0], 8, 2, bad)


@pytest.mark.parametrize("kind", norms.KINDS)
def test_every_kind_works_after_a_linear_layer(kind):
    layer = norms.make(kind, 6, 1, CFG)
    x = batch((8, 6), seed=16).requires_grad_(True)
    y = layer(x)
    assert y.shape == x.shape
    y.backward(upstream((8, 6), seed=17))
    assert torch.isfinite(x.grad).all()


EXPECTED_LAYER = {
    "bn": nn.BatchNorm2d, "noisy_bn": nn.BatchNorm2d, "scratch_bn": norms.ScratchBatchNorm,
    "ghost_bn": norms.GhostBatchNorm, "group_norm": nn.GroupNorm, "layer_norm": nn.GroupNorm,
    "batch_renorm": norms.BatchRenorm,
}


def build(arch, kind):
    cfg = OmegaConf.merge(CFG, {"ghost_bn": {"ghost_batch_size": 2}})  # two ghost batches in a batch of 4
    return models.build(OmegaConf.create({"arch": arch, "width": 0.25}), kind, cfg, 10)


def conv_linear_weights(net):
    return {n: m.weight.detach() for n, m in net.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}


@cache
def reference_weights(arch):
    return conv_linear_weights(init.initialize(build(arch, "none"), KAIMING, seed=3))


@pytest.mark.parametrize("arch", models.ARCHS)
@pytest.mark.parametrize("kind", norms.KINDS)
def test_every_kind_in_every_network(arch, kind):
    net = build(arch, kind)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    layers = [m for m in net.modules() if isinstance(m, norms.AFFINE_TYPES)]
    # one norm per conv, of the kind's class; the conv's bias only where the norm has no shift
    assert len(layers) == (len(convs) if kind in EXPECTED_LAYER else 0)
    assert all(type(m) is EXPECTED_LAYER[kind] for m in layers)
    assert all((c.bias is None) == norms.has_shift(kind) for c in convs)
    if kind == "layer_norm":
        assert all(m.num_groups == 1 for m in layers)
    if kind == "group_norm":
        assert all(m.num_groups == norms.group_count(m.num_channels, CFG.group_norm.groups) for m in layers)
    with torch.no_grad():  # move gamma/beta off 1/0 so that initialize has something to reset
        for m in layers:
            m.weight.uniform_(2.0, 3.0)
            m.bias.uniform_(1.0, 2.0)
    init.initialize(net, KAIMING, seed=3)
    for m in layers:
        assert torch.all(m.weight == 1) and torch.all(m.bias == 0), type(m).__name__
    ours, ref = conv_linear_weights(net), reference_weights(arch)
    assert ours.keys() == ref.keys()
    for n in ref:  # bitwise identical to the unnormalized arm's weights
        assert torch.equal(ours[n], ref[n]), n
    norms.seed_noise(net, seed=0)
    out = net(batch((4, 3, 32, 32), seed=18))
    assert out.shape == (4, 10) and torch.isfinite(out).all()
    F.cross_entropy(out, torch.arange(4)).backward()
    for n, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), n
