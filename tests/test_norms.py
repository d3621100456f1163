"""Norm kinds: noisy BN's noise follows Santurkar et al.'s distribution and is shared across arms."""

import torch
from omegaconf import OmegaConf

from bnlab import models, norms

CFG = OmegaConf.create({"bn": {"eps": 1e-5, "momentum": 0.1},
                        "noise": {"mean_range": 0.5, "std_low": 1.0, "std_high": 1.25,
                                  "elem_mean_halfwidth": 0.1, "elem_std": 0.1}})


def noise(seed=0):
    m = norms.ActivationNoise(CFG.noise)
    m.seed = seed
    return m


def test_noise_follows_the_papers_distribution():
    layer = noise()
    zeros, ones = torch.zeros(64, 8, 16, 16), torch.ones(64, 8, 16, 16)
    for _ in range(20):  # each call is one training step: new mu_t, sigma_t
        m = layer(zeros)  # a = 0 -> a' = m ~ U(mu_t - 0.1, mu_t + 0.1)
        assert m.max() - m.min() <= 0.2 + 1e-6
        mu_t = (m.max() + m.min()) / 2
        assert -0.5 - 1e-2 <= mu_t <= 0.5 + 1e-2
    layer2 = noise()
    layer2(zeros)  # same first draws as layer's first call: skip them to stay in step
    for _ in range(10):
        out = layer2(ones)  # a = 1 -> a' = s + m, s ~ N(sigma_t, 0.1^2)
        s_plus_m = out - out.mean()
        assert 0.08 < s_plus_m.std() < 0.13  # sqrt(0.1^2 + 0.2^2/12) = 0.106
        assert 0.5 - 0.05 < out.mean() < 1.75 + 0.05  # sigma_t + mu_t in [0.5, 1.75]


def test_noise_is_off_in_eval_mode_and_reproducible():
    x = torch.randn(4, 3, 8, 8)
    a, b = noise(seed=3), noise(seed=3)
    assert torch.equal(a(x), b(x)) and not torch.equal(a(x), x)
    a.eval()
    assert torch.equal(a(x), x)


def test_noisy_arms_get_identical_noise():
    spec = OmegaConf.create({"arch": "simple_cnn", "width": 0.25})
    with_bn, without = models.build(spec, "noisy_bn", CFG, 10), models.build(spec, "noisy_none", CFG, 10)
    for m in (with_bn, without):
        norms.seed_noise(m, seed=5)
    layers = [[m for m in net.modules() if isinstance(m, norms.ActivationNoise)] for net in (with_bn, without)]
    assert len(layers[0]) == len(layers[1]) == 3
    x = torch.randn(2, 8, 4, 4)
    for a, b in zip(*layers):
        assert a.seed == b.seed and torch.equal(a(x), b(x))
    assert len({m.seed for m in layers[0]}) == 3  # but every layer draws its own noise
    # noisy_bn is BN then noise; noisy_none keeps the conv bias (no shift from a norm)
    assert isinstance(with_bn.features.norm1[0], torch.nn.BatchNorm2d)
    assert with_bn.features.conv1.bias is None and without.features.conv1.bias is not None
