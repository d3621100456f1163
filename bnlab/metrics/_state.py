"""Leave-no-trace support for probes.

A probe evaluates the loss and gradient at points other than the current
weights, in training mode (so BN uses batch statistics and updates its running
statistics as a side effect). ``preserved(model)`` snapshots everything such a
probe can disturb and puts it back bitwise on exit, so the training trajectory
is exactly what it would have been without the probe:

- parameter values, ``requires_grad`` flags and ``.grad`` fields;
- buffers (BN running mean/var, ``num_batches_tracked``);
- every module's ``training`` flag;
- the global CPU RNG, every CUDA device's RNG, and any ``torch.Generator``
  a module holds as ``.generator`` (noisy BN draws its noise from one).

Inside the block, a module with a ``replay`` flag (noisy BN's noise layer)
redraws the noise of the step's own training forward in every evaluation, so
all the points a probe compares share one noise draw (bnlab/norms.py).
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn


def trainable(model: nn.Module) -> list[torch.nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


@contextmanager
def preserved(model: nn.Module):
    params = list(model.parameters())
    saved_params = [p.detach().clone() for p in params]
    saved_flags = [p.requires_grad for p in params]
    saved_grads = [p.grad for p in params]  # the tensors themselves; probes never write .grad
    buffers = list(model.buffers())
    saved_buffers = [b.detach().clone() for b in buffers]
    modes = [(m, m.training) for m in model.modules()]
    gens = [m.generator for m in model.modules() if isinstance(getattr(m, "generator", None), torch.Generator)]
    saved_gens = [g.get_state() for g in gens]
    cpu_rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    replays = [(m, m.replay) for m in model.modules() if hasattr(m, "replay")]
    for m, _ in replays:
        m.replay = True
    try:
        yield
    finally:
        for m, flag in replays:
            m.replay = flag
        with torch.no_grad():
            for p, v, flag, g in zip(params, saved_params, saved_flags, saved_grads):
                p.copy_(v)
                p.requires_grad_(flag)
                p.grad = g
            for b, v in zip(buffers, saved_buffers):
                b.copy_(v)
        for m, mode in modes:
            m.training = mode
        for g, s in zip(gens, saved_gens):
            g.set_state(s)
        torch.set_rng_state(cpu_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)


def loss_and_grad(model, loss_fn, inputs, targets, params) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """L(w; B) and dL/dw for ``params`` from ONE forward and backward pass (no .grad writes)."""
    with torch.enable_grad():
        loss = loss_fn(model(inputs), targets)
        grads = torch.autograd.grad(loss, params)
    return loss.detach(), [g.detach() for g in grads]


def flat_norm(tensors: list[torch.Tensor]) -> torch.Tensor:
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(t) for t in tensors]))
