"""Weight-initialization schemes, applied identically to every arm of a pair.

All draws come from one ``torch.Generator`` seeded with the run's seed and
walk the conv and linear layers in module order. Since every arm has the same
conv/linear layers in the same order, every arm starts from bitwise identical
weights. Biases start at zero and every norm layer with a learned affine
(``norms.AFFINE_TYPES``: BatchNorm, GroupNorm/LayerNorm, scratch/ghost BN,
Batch Renorm) at gamma=1, beta=0, so the unnormalized arm's conv bias starts
where BN's beta does.

Schemes (``init.scheme``):
- ``default``: PyTorch's default for Conv/Linear weights, kaiming_uniform(a=sqrt(5)).
- ``kaiming_normal`` / ``kaiming_uniform``: He et al. 2015 (``mode``, ``nonlinearity``).
- ``xavier_normal`` / ``xavier_uniform``: Glorot & Bengio 2010 (``gain``), as in Santurkar et al.
- ``orthogonal``: Saxe et al. 2014 (``gain``).
- ``normal``: N(0, ``std``^2).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from bnlab import norms
from bnlab.errors import BnlabError

SCHEMES = (
    "default",
    "kaiming_normal",
    "kaiming_uniform",
    "xavier_normal",
    "xavier_uniform",
    "orthogonal",
    "normal",
)


def initialize(model: nn.Module, cfg, seed: int) -> nn.Module:
    """Initialize ``model`` in place with scheme ``cfg.scheme``; returns the model."""
    scheme = cfg.scheme
    if scheme not in SCHEMES:
        raise BnlabError(f"init={scheme} is not a known scheme; choose from {', '.join(SCHEMES)}")
    g = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                _init_weight(m.weight, scheme, cfg, g)
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, norms.AFFINE_TYPES) and m.affine:
                m.weight.fill_(1.0)
                m.bias.zero_()
    return model


def _init_weight(w: torch.Tensor, scheme: str, cfg, g: torch.Generator) -> None:
    if scheme == "default":
        nn.init.kaiming_uniform_(w, a=math.sqrt(5), generator=g)
    elif scheme == "kaiming_normal":
        nn.init.kaiming_normal_(w, mode=cfg.mode, nonlinearity=cfg.nonlinearity, generator=g)
    elif scheme == "kaiming_uniform":
        nn.init.kaiming_uniform_(w, mode=cfg.mode, nonlinearity=cfg.nonlinearity, generator=g)
    elif scheme == "xavier_normal":
        nn.init.xavier_normal_(w, gain=float(cfg.gain), generator=g)
    elif scheme == "xavier_uniform":
        nn.init.xavier_uniform_(w, gain=float(cfg.gain), generator=g)
    elif scheme == "orthogonal":
        nn.init.orthogonal_(w, gain=float(cfg.gain), generator=g)
    elif scheme == "normal":
        if float(cfg.std) <= 0:
            raise BnlabError(f"init.std={cfg.std} must be > 0; pass e.g. init.std=0.01")
        nn.init.normal_(w, 0.0, float(cfg.std), generator=g)
