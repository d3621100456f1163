"""Gradient clipping by global norm (Pascanu, Mikolov & Bengio 2013), the ``optim.grad_clip`` option.

If ||g||_2 > max_norm, g <- g * max_norm / ||g||_2 (all trainable parameters of
one arm together). Recurrent nets need it (exploding gradients through time);
off (null) by default, so the CNN experiments are unchanged.

Where it acts: in the training step after the backward pass, after the
per-step ``grad_norm`` (the norm BEFORE clipping, the quantity clipping
thresholds) and after every probe at w_t (they measure the true gradient
g = grad L(w; B), SCIENCE.md), immediately before ``opt.step()``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from bnlab.errors import BnlabError


def check(max_norm) -> None:
    """``optim.grad_clip`` must be null (off) or a finite number > 0 (one line and exit 2 otherwise)."""
    if max_norm is None:
        return
    if not (isinstance(max_norm, (int, float)) and not isinstance(max_norm, bool)
            and math.isfinite(max_norm) and max_norm > 0):
        raise BnlabError(f"optim.grad_clip={max_norm} must be a number > 0 (or null: off); "
                         f"pass e.g. optim.grad_clip=1.0")


def clip_gradients(model: nn.Module, max_norm: float | None) -> torch.Tensor | None:
    """Scale the gradients of ``model`` so their global norm is at most ``max_norm``; None: do nothing.

    Returns the norm before clipping as a device tensor (no host sync), or None when off.
    A non-finite gradient stays non-finite: the loss diverges and the arm is recorded as diverged.
    """
    if max_norm is None:
        return None
    grads = [p for p in model.parameters() if p.grad is not None]
    return torch.nn.utils.clip_grad_norm_(grads, float(max_norm), error_if_nonfinite=False, foreach=True)
