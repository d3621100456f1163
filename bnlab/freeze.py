"""Which parameters an arm trains: Frankle, Schwab & Morcos 2021.

"Training BatchNorm and Only BatchNorm": with every other weight frozen at its
random initialization, training only the normalization layers' scale gamma and
shift beta reaches far above chance (82% on CIFAR-10 for deep ResNets), and
about a third of the gammas end near zero. Their control trains the same
number of randomly chosen other parameters, to show it is not merely the
parameter count.

- ``train_only_norm(model)``: freeze everything but the affine parameters of
  norm layers (``norms.AFFINE_TYPES``); returns how many scalars train.
- ``train_random_subset(model, count, seed)``: freeze everything, then let
  ``count`` scalars chosen uniformly (seeded generator) among the conv and
  linear weights train, through a gradient mask on those tensors. The mask acts
  on every gradient of those tensors (training and probes alike); with weight
  decay the masked entries would still decay, so the trainer refuses
  weight_decay > 0 for such arms.
"""

from __future__ import annotations

import torch
from torch import nn

from bnlab import norms


def norm_parameters(model: nn.Module) -> list[nn.Parameter]:
    return [p for m in model.modules() if isinstance(m, norms.AFFINE_TYPES) and m.affine
            for p in (m.weight, m.bias) if p is not None]


def train_only_norm(model: nn.Module) -> int:
    keep = {id(p) for p in norm_parameters(model)}
    for p in model.parameters():
        p.requires_grad_(id(p) in keep)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def train_random_subset(model: nn.Module, count: int, seed: int) -> int:
    weights = [m.weight for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    total = sum(w.numel() for w in weights)
    if not 0 < count <= total:
        raise ValueError(f"cannot pick {count} of {total} conv/linear weights")
    for p in model.parameters():
        p.requires_grad_(False)
    chosen = torch.zeros(total, dtype=torch.bool)
    chosen[torch.randperm(total, generator=torch.Generator().manual_seed(int(seed)))[:count]] = True
    offset = 0
    for w in weights:
        mask = chosen[offset : offset + w.numel()].view_as(w)
        offset += w.numel()
        if mask.any():
            w.requires_grad_(True)
            mask = mask.to(w.device, w.dtype)
            w.register_hook(lambda g, mask=mask: g * mask)
    return count
