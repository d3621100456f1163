"""Networks with a norm switch, and identical initial weights across arms."""

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from bnlab import init, models

NORM_CFG = OmegaConf.create({"bn": {"eps": 1e-5, "momentum": 0.1}})
INITS = {
    "default": {},
    "kaiming_normal": {"mode": "fan_in", "nonlinearity": "relu"},
    "kaiming_uniform": {"mode": "fan_in", "nonlinearity": "relu"},
    "xavier_normal": {"gain": 1.0},
    "xavier_uniform": {"gain": 1.0},
    "orthogonal": {"gain": 1.0},
    "normal": {"std": 0.02},
}


def build(arch, norm, width=0.25):
    return models.build(OmegaConf.create({"arch": arch, "width": width}), norm, NORM_CFG, 10)


@pytest.mark.parametrize("arch", models.ARCHS)
@pytest.mark.parametrize("norm", ["bn", "none"])
def test_forward_shapes(arch, norm):
    m = build(arch, norm)
    assert m(torch.randn(4, 3, 32, 32)).shape == (4, 10)
    n_bn = sum(isinstance(x, nn.BatchNorm2d) for x in m.modules())
    convs = [x for x in m.modules() if isinstance(x, nn.Conv2d)]
    assert n_bn == (len(convs) if norm == "bn" else 0)  # one BN per conv
    # a conv followed by BN has no (redundant) bias; the unnormalized twin keeps one
    assert all((c.bias is None) == (norm == "bn") for c in convs)


def test_depths_and_widths():
    def count(arch):
        return sum(isinstance(x, nn.Conv2d) for x in build(arch, "bn").modules())

    assert count("vgg11") == 8 and count("vgg16") == 13
    assert count("resnet20") == 19 and count("resnet56") == 55  # + 1 linear = 6n+2 layers
    full = build("vgg11", "bn", width=1.0)
    assert full.classifier.in_features == 512
    assert build("vgg11", "bn", width=0.25).classifier.in_features == 128


def test_bn_sits_between_conv_and_relu():
    seq = list(build("vgg11", "bn").features.children())
    for i, mod in enumerate(seq):
        if isinstance(mod, nn.BatchNorm2d):
            assert isinstance(seq[i - 1], nn.Conv2d) and isinstance(seq[i + 1], nn.ReLU)


@pytest.mark.parametrize("scheme", list(INITS))
@pytest.mark.parametrize("arch", ["vgg11", "resnet20", "simple_cnn"])
def test_arms_start_from_identical_weights(arch, scheme):
    cfg = OmegaConf.create({"scheme": scheme, **INITS[scheme]})
    bn = init.initialize(build(arch, "bn"), cfg, seed=7)
    plain = init.initialize(build(arch, "none"), cfg, seed=7)
    bn_p, plain_p = dict(bn.named_parameters()), dict(plain.named_parameters())
    shared = [n for n in bn_p if n in plain_p]
    # every conv/linear weight exists in both arms under the same name, bitwise equal
    n_weights = sum(isinstance(m, (nn.Conv2d, nn.Linear)) for m in bn.modules())
    assert len([n for n in shared if n.endswith("weight")]) == n_weights
    for n in shared:
        assert torch.equal(bn_p[n], plain_p[n]), n
    # BN adds gamma=1, beta=0; the plain arm's extra conv biases start at zero like beta
    for n, p in bn_p.items():
        if n not in plain_p:
            assert torch.all(p == (1.0 if n.endswith("weight") else 0.0)), n
    for n, p in plain_p.items():
        if n not in bn_p:
            assert n.endswith("bias") and torch.all(p == 0), n
    # a different seed gives different weights
    other = init.initialize(build(arch, "bn"), cfg, seed=8)
    assert not torch.equal(next(other.parameters()), next(bn.parameters()))


def test_init_schemes_have_their_scale():
    fan_in, fan_out = 128 * 9, 256 * 9
    cfgs = {
        "kaiming_normal": (INITS["kaiming_normal"], (2 / fan_in) ** 0.5),
        "xavier_normal": (INITS["xavier_normal"], (2 / (fan_in + fan_out)) ** 0.5),
        "normal": (INITS["normal"], 0.02),
    }
    for scheme, (extra, std) in cfgs.items():
        conv = nn.Conv2d(128, 256, 3)
        init.initialize(conv, OmegaConf.create({"scheme": scheme, **extra}), seed=0)
        assert conv.weight.std().item() == pytest.approx(std, rel=0.02), scheme
