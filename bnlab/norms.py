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
- ``scratch_bn``: the same BN written out by hand (``ScratchBatchNorm``), with a
  hand-derived backward pass (``BatchNormFunction``): the teaching reference.
- ``ghost_bn``: Ghost BN (Hoffer, Hubara & Soudry 2017): BN applied to
  consecutive sub-batches of ``norm.ghost_bn.ghost_batch_size`` (``GhostBatchNorm``).
- ``group_norm``: Group Normalization (Wu & He 2018), ``norm.group_norm.groups``.
- ``layer_norm``: Layer Normalization (Ba, Kiros & Hinton 2016) in its CNN form,
  per sample over (C, H, W) with a per-channel affine.
- ``batch_renorm``: Batch Renormalization (Ioffe 2017), ``norm.batch_renorm.r_max``
  and ``.d_max`` (``BatchRenorm``).

Every kind except ``none``/``noisy_none`` has a learned per-channel shift (beta),
so the conv before it has no bias (``has_shift``). The batch-statistics layers
written in bnlab/batch_norms.py (``ScratchBatchNorm``, ``GhostBatchNorm``, ``BatchRenorm``) keep
PyTorch's parameter and buffer names (``weight``, ``bias``, ``running_mean``,
``running_var``, ``num_batches_tracked``) so probes, checkpoints and
``init.initialize`` treat them like ``nn.BatchNorm2d``. They accept (N, C) and
(N, C, *) inputs, so ``make``'s ``dim`` only matters for ``bn``.
"""

from __future__ import annotations

import torch
from torch import nn

# the batch-statistics layers written in bnlab live in bnlab/batch_norms.py; norms.<Layer> names stay
from bnlab.batch_norms import BatchNormFunction, BatchRenorm, GhostBatchNorm, ScratchBatchNorm, _BatchStatNorm  # noqa: F401
from bnlab.errors import BnlabError

KINDS = (
    "bn",
    "none",
    "noisy_bn",
    "noisy_none",
    "scratch_bn",
    "ghost_bn",
    "group_norm",
    "layer_norm",
    "batch_renorm",
)
_SHIFTED = ("bn", "noisy_bn", "scratch_bn", "ghost_bn", "group_norm", "layer_norm", "batch_renorm")


def check(kind: str) -> None:
    if kind not in KINDS:
        raise BnlabError(f"arms: unknown norm '{kind}'; choose from {', '.join(KINDS)}")


def has_shift(kind: str) -> bool:
    """Whether the layer adds its own learned shift, which makes a preceding bias redundant."""
    return kind in _SHIFTED


# --------------------------------------------------------------------------- group_norm / layer_norm


def group_count(num_channels: int, groups: int) -> int:
    """The number of GroupNorm groups for ``num_channels``: the largest divisor of C that is <= ``groups``.

    Wu & He use 32 groups; narrow networks (``model.width`` < 1) can have fewer
    channels than that, or counts 32 does not divide, and ``nn.GroupNorm``
    needs C % groups == 0. E.g. C=48, groups=32 -> 24; C=8, groups=32 -> 8
    (one channel per group: Instance Norm, Wu & He's G = C extreme).
    """
    c, g = int(num_channels), int(groups)
    return max(d for d in range(1, min(c, g) + 1) if c % d == 0)


def group_norm(num_channels: int, groups: int, eps: float = 1e-5) -> nn.GroupNorm:
    """Group Normalization (Wu & He 2018, "Group Normalization", Sec. 3.1), PyTorch's layer.

    Per sample n, the C channels are split into G groups of C/G consecutive
    channels; each group is normalized over its channels and positions:
        S = {(c, h, w): c in group g},  mu = mean_S(x), var = mean_S((x - mu)^2)  (biased)
        y[n, c] = gamma[c] * (x[n, c] - mu) / sqrt(var + eps) + beta[c]
    No batch statistics (train and eval compute the same thing), so it does
    not depend on the batch size (docs/science.md sec. 7). G = ``group_count(C,
    groups)``: ``groups`` (32, the paper's default) when it divides C, else
    the largest divisor of C below it. Works after a linear layer too: on
    (N, C) each group is normalized over its C/G features.
    """
    return nn.GroupNorm(group_count(num_channels, groups), num_channels, eps=eps)


def layer_norm(num_channels: int, eps: float = 1e-5) -> nn.GroupNorm:
    """Layer Normalization (Ba, Kiros & Hinton 2016, Sec. 3) for CNN features: ``nn.GroupNorm(1, C)``.

    Per sample n, over all of its units (C, H, W):
        mu_n = mean_{c,h,w}(x[n]), var_n = mean_{c,h,w}((x[n] - mu_n)^2)  (biased)
        y[n, c, h, w] = gamma[c] * (x[n, c, h, w] - mu_n) / sqrt(var_n + eps) + beta[c]
    This is GroupNorm with one group, the standard CNN form (Wu & He 2018,
    Fig. 2): gain and bias are per channel, like BN's. ``nn.LayerNorm((C, H,
    W))`` computes the same statistics but its elementwise affine learns one
    gamma, beta per (c, h, w), which ties the parameters to the spatial size
    and gives the arm C*H*W times more of them. After a linear layer, (N, C),
    it is Ba et al.'s original per-sample normalization over the features.
    """
    return nn.GroupNorm(1, num_channels, eps=eps)


# Norm layers with a learned gamma (``weight``) and beta (``bias``): init.initialize
# sets them to 1 and 0 in every arm.
AFFINE_TYPES = (nn.modules.batchnorm._NormBase, nn.GroupNorm, ScratchBatchNorm, GhostBatchNorm, BatchRenorm)
# layers that normalize with batch statistics in train mode and running statistics in eval mode
BATCH_STAT_TYPES = (nn.modules.batchnorm._BatchNorm, _BatchStatNorm)


# --------------------------------------------------------------------------- noise (noisy_bn / noisy_none)


class ActivationNoise(nn.Module):
    """Santurkar et al. 2018, Sec. 2.1: make the activation distribution unstable on purpose.

    Per layer and per training step: mu_t ~ U(-a, a), sigma_t ~ U(s_lo, s_hi);
    per activation element: m ~ U(mu_t - b, mu_t + b), s ~ N(sigma_t, c^2);
    then a <- s * a + m. Defaults a=0.5, [s_lo, s_hi]=[1, 1.25], b=0.1, c=0.1
    (docs/science.md sec. 2). Off in eval mode. Draws come from this layer's own
    ``generator``, seeded by ``seed_noise`` from the run seed and the layer's
    position, so two arms with noise get identical noise.

    Probes (``metrics._state.preserved`` sets ``replay``) evaluate the loss at
    several points of one step: each of their forward passes redraws the noise
    of the step's own training forward (the generator state it started from,
    ``last_state``), so every evaluation inside a probe sees ONE noise draw and
    L(w - eta g) / L(w) -> 1 as eta -> 0. Fresh noise per evaluation made the
    divergence ratio at eta = 1e-5 read 1.13 and broke Lanczos' fixed operator.
    """

    def __init__(self, cfg):
        super().__init__()
        self.mean_range = float(cfg.mean_range)
        self.std_low, self.std_high = float(cfg.std_low), float(cfg.std_high)
        self.elem_mean_halfwidth = float(cfg.elem_mean_halfwidth)
        self.elem_std = float(cfg.elem_std)
        self.generator: torch.Generator | None = None
        self.seed = 0
        self.last_state: torch.Tensor | None = None  # generator state before the last training draw
        self.replay = False  # inside a probe: redraw the last training forward's noise

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        if self.generator is None or self.generator.device != x.device:
            self.generator = torch.Generator(device=x.device).manual_seed(self.seed)
        g = self.generator
        if self.replay and self.last_state is not None:
            g.set_state(self.last_state)
        else:
            self.last_state = g.get_state()
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


# --------------------------------------------------------------------------- make


def _require(ok: bool, key: str, value, rule: str, example) -> None:
    if not ok:
        raise BnlabError(f"norm.{key}={value} must be {rule}; pass e.g. norm.{key}={example}")


def make(kind: str, num_features: int, dim: int, cfg) -> nn.Module:
    """The norm layer for ``num_features`` channels; dim=2 after a conv, 1 after a linear.

    ``cfg`` is the ``norm`` config node: ``bn.eps`` and ``bn.momentum`` are shared
    by every kind; ``ghost_bn``, ``group_norm`` and ``batch_renorm`` read their
    own sub-keys (configs/norm/default.yaml), ``noisy_*`` reads ``noise``.
    """
    check(kind)
    layer = _base_layer(kind.removeprefix("noisy_"), num_features, dim, cfg)
    if kind.startswith("noisy_"):
        return nn.Sequential(layer, ActivationNoise(cfg.noise))
    return layer


def _base_layer(kind: str, num_features: int, dim: int, cfg) -> nn.Module:
    if kind == "none":
        return nn.Identity()
    eps = float(cfg.bn.eps)
    if kind == "bn":
        bn = nn.BatchNorm2d if dim == 2 else nn.BatchNorm1d
        return bn(num_features, eps=eps, momentum=float(cfg.bn.momentum))
    if kind == "scratch_bn":
        return ScratchBatchNorm(num_features, eps=eps, momentum=float(cfg.bn.momentum))
    if kind == "ghost_bn":
        size = cfg.ghost_bn.ghost_batch_size
        _require(isinstance(size, int) and not isinstance(size, bool) and size > 0,
                 "ghost_bn.ghost_batch_size", size, "an integer > 0", 32)
        return GhostBatchNorm(num_features, size, eps=eps, momentum=float(cfg.bn.momentum))
    if kind == "group_norm":
        groups = cfg.group_norm.groups
        _require(isinstance(groups, int) and not isinstance(groups, bool) and groups > 0,
                 "group_norm.groups", groups, "an integer > 0", 32)
        return group_norm(num_features, groups, eps=eps)
    if kind == "layer_norm":
        return layer_norm(num_features, eps=eps)
    if kind == "batch_renorm":
        r_max, d_max = float(cfg.batch_renorm.r_max), float(cfg.batch_renorm.d_max)
        _require(r_max >= 1, "batch_renorm.r_max", r_max, ">= 1", 3.0)
        _require(d_max >= 0, "batch_renorm.d_max", d_max, ">= 0", 5.0)
        return BatchRenorm(num_features, r_max=r_max, d_max=d_max, eps=eps, momentum=float(cfg.bn.momentum))
    raise AssertionError(f"norm kind {kind!r} is in KINDS but make() does not build it")
