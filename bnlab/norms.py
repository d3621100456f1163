"""Normalization layers, chosen per arm by name.

Every arm of a pair builds the same network with a different ``norm``; the
network code asks this module for "the norm layer after this conv/linear" and
never branches on the kind itself, so adding a kind here adds an arm.

- ``bn``: Batch Normalization (Ioffe & Szegedy 2015), PyTorch's layer:
  y = gamma * (x - mu_B) / sqrt(var_B + eps) + beta with biased batch variance
  in training; running mean/var (momentum 0.1, unbiased variance) for eval.
- ``none``: identity, the unnormalized twin.
- ``noisy_bn``: BN followed by Santurkar et al.'s (2018, Sec. 2.1) distribution
  noise (``ActivationNoise``); ``noisy_none``: the same noise without BN.
"""

from __future__ import annotations

import torch
from torch import nn

from bnlab.errors import BnlabError

KINDS = ("bn", "none", "noisy_bn", "noisy_none")


def check(kind: str) -> None:
    if kind not in KINDS:
        raise BnlabError(f"arms: unknown norm '{kind}'; choose from {', '.join(KINDS)}")


def has_shift(kind: str) -> bool:
    """Whether the layer adds its own learned shift, which makes a preceding bias redundant."""
    return kind in ("bn", "noisy_bn")


class ActivationNoise(nn.Module):
    """Santurkar et al. 2018, Sec. 2.1: make the activation distribution unstable on purpose.

    Per layer and per training step: mu_t ~ U(-a, a), sigma_t ~ U(s_lo, s_hi);
    per activation element: m ~ U(mu_t - b, mu_t + b), s ~ N(sigma_t, c^2);
    then a <- s * a + m. Defaults a=0.5, [s_lo, s_hi]=[1, 1.25], b=0.1, c=0.1
    (SCIENCE.md sec. 2). Off in eval mode. Draws come from this layer's own
    ``generator``, seeded by ``seed_noise`` from the run seed and the layer's
    position, so two arms with noise get identical noise.
    """

    def __init__(self, cfg):
        super().__init__()
        self.mean_range = float(cfg.mean_range)
        self.std_low, self.std_high = float(cfg.std_low), float(cfg.std_high)
        self.elem_mean_halfwidth = float(cfg.elem_mean_halfwidth)
        self.elem_std = float(cfg.elem_std)
        self.generator: torch.Generator | None = None
        self.seed = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        if self.generator is None or self.generator.device != x.device:
            self.generator = torch.Generator(device=x.device).manual_seed(self.seed)
        g = self.generator
        u = torch.rand(2, generator=g, device=x.device, dtype=x.dtype)
        mu_t = (2 * u[0] - 1) * self.mean_range
        sigma_t = self.std_low + (self.std_high - self.std_low) * u[1]
        m = mu_t + (2 * torch.rand(x.shape, generator=g, device=x.device, dtype=x.dtype) - 1) * self.elem_mean_halfwidth
        s = sigma_t + self.elem_std * torch.randn(x.shape, generator=g, device=x.device, dtype=x.dtype)
        return s * x + m


def seed_noise(model: nn.Module, seed: int) -> None:
    """Give each noise layer its own generator, seeded by run seed and layer position."""
    for i, m in enumerate(x for x in model.modules() if isinstance(x, ActivationNoise)):
        m.seed = int(seed) * 1000 + i
        m.generator = None  # created on the input's device at the first forward


def make(kind: str, num_features: int, dim: int, cfg) -> nn.Module:
    """The norm layer for ``num_features`` channels; dim=2 after a conv, 1 after a linear."""
    check(kind)
    if kind in ("none", "noisy_none"):
        layer = nn.Identity()
    else:
        bn = nn.BatchNorm2d if dim == 2 else nn.BatchNorm1d
        layer = bn(num_features, eps=float(cfg.bn.eps), momentum=float(cfg.bn.momentum))
    if kind.startswith("noisy_"):
        return nn.Sequential(layer, ActivationNoise(cfg.noise))
    return layer
