"""Gradient and weight norms, global and per layer.

- Global gradient norm ||g||_2 = sqrt(sum_i ||g_i||_2^2) over all trainable
  parameters of one arm (the quantity gradient clipping thresholds; Pascanu et
  al. 2013). Logged every step.
- Per-layer ||grad L(w; B) w.r.t. W_l||_2 and ||W_l||_2 for every parameter
  tensor. Bjorck et al. 2018 use per-layer gradient norms to show gradients
  explode with depth without BN; van Laarhoven 2017 relates ||W|| of a
  BN-followed layer to its effective learning rate lr / ||W||^2.

All functions return device tensors and never synchronize with the host, so
the trainer can call them every step and read them at its logging cadence.
"""

from __future__ import annotations

import torch
from torch import nn

from bnlab.metrics import gammas
from bnlab.metrics.registry import Measurement, Probe, register

GRAD, WEIGHT = "grad_norm/", "weight_norm/"


def grad_key(param: str) -> str:
    """Record key of parameter ``param``'s gradient norm."""
    return f"{GRAD}{param}"


def parse_grad_key(key: str) -> str | None:
    """The parameter name of a ``grad_key``; None for any other key."""
    return key[len(GRAD):] if key.startswith(GRAD) else None


def weight_key(param: str) -> str:
    """Record key of parameter ``param``'s weight norm."""
    return f"{WEIGHT}{param}"


def parse_weight_key(key: str) -> str | None:
    """The parameter name of a ``weight_key``; None for any other key."""
    return key[len(WEIGHT):] if key.startswith(WEIGHT) else None


def global_grad_norm(model: nn.Module) -> torch.Tensor:
    """||g||_2 over every parameter that has a gradient (0-d tensor, on device)."""
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads:
        return torch.zeros((), device=next(model.parameters()).device)
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))


def layer_norms(model: nn.Module) -> dict[str, torch.Tensor]:
    """``grad_norm/<param>`` and ``weight_norm/<param>`` for every trainable parameter."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    weights = torch._foreach_norm([p.detach() for _, p in named])
    out = {weight_key(n): w for (n, _), w in zip(named, weights)}
    with_grad = [(n, p.grad) for n, p in named if p.grad is not None]
    if with_grad:
        grads = torch._foreach_norm([g for _, g in with_grad])
        out.update({grad_key(n): g for (n, _), g in zip(with_grad, grads)})
    return out


def _at_w(p: Probe) -> dict:
    """Per-layer norms and the small-gamma fraction of the step's gradient (device tensors)."""
    out = layer_norms(p.model)
    small = gammas.small_gamma_fraction(p.model)
    if small is not None:
        out[gammas.KEY] = small
    return out


MEASUREMENT = register(Measurement(
    name="layer_norms", prefix=GRAD, also=(WEIGHT, gammas.KEY), split="train",
    title="Per-layer gradient and weight norms",
    paper="Bjorck et al. 2018 (gradients by depth); van Laarhoven 2017 (effective learning rate)",
    at_w=_at_w,
))
