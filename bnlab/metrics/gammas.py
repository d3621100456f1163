"""Near-zero BN scales: Frankle, Schwab & Morcos 2021.

Training only BatchNorm's gamma and beta, about a third of the gammas end near
zero: the network switches channels off. The measure is

    frac = #{ |gamma_c| < threshold } / #{gamma_c}   over every norm layer's scale,

threshold 0.01 by default. Returns a device tensor (no host sync), or None when
the model has no norm scales.
"""

from __future__ import annotations

import torch
from torch import nn

from bnlab import norms

KEY = "gamma_frac_below_0.01"  # its record key (train rows, with metrics.layer_norms), threshold 0.01


def small_gamma_fraction(model: nn.Module, threshold: float = 0.01) -> torch.Tensor | None:
    gammas = [m.weight.detach().flatten() for m in model.modules()
              if isinstance(m, norms.AFFINE_TYPES) and m.affine and m.weight is not None]
    if not gammas:
        return None
    g = torch.cat(gammas)
    return (g.abs() < threshold).float().mean()
