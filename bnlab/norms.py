"""Normalization layers, chosen per arm by name.

Every arm of a pair builds the same network with a different ``norm``; the
network code asks this module for "the norm layer after this conv/linear" and
never branches on the kind itself, so adding a kind here adds an arm.

- ``bn``: Batch Normalization (Ioffe & Szegedy 2015), PyTorch's layer:
  y = gamma * (x - mu_B) / sqrt(var_B + eps) + beta with biased batch variance
  in training; running mean/var (momentum 0.1, unbiased variance) for eval.
- ``none``: identity, the unnormalized twin.
"""

from __future__ import annotations

from torch import nn

from bnlab.errors import BnlabError

KINDS = ("bn", "none")


def check(kind: str) -> None:
    if kind not in KINDS:
        raise BnlabError(f"arms: unknown norm '{kind}'; choose from {', '.join(KINDS)}")


def has_shift(kind: str) -> bool:
    """Whether the layer adds its own learned shift, which makes a preceding bias redundant."""
    return kind != "none"


def make(kind: str, num_features: int, dim: int, cfg) -> nn.Module:
    """The norm layer for ``num_features`` channels; dim=2 after a conv, 1 after a linear."""
    check(kind)
    if kind == "none":
        return nn.Identity()
    bn = nn.BatchNorm2d if dim == 2 else nn.BatchNorm1d
    return bn(num_features, eps=float(cfg.bn.eps), momentum=float(cfg.bn.momentum))
