"""Filter-normalized loss landscapes (Li, Xu, Taylor, Studer & Goldstein 2018).

"Visualizing the Loss Landscape of Neural Nets" plots L(w + a d1 + b d2)
around the weights w along random Gaussian directions d1, d2. A raw Gaussian
direction is meaningless for a scale-invariant network (a conv followed by BN
computes the same function for w and 2w), so each direction is
filter-normalized: for every filter j of every layer (slice j along the
output-channel dimension 0 of a conv or linear weight)

    d_j <- d_j / ||d_j|| * ||w_j||,

so a step of a = 1 moves every filter by its own size. Biases and BN
parameters get zero direction components by default, as in Li et al.
(docs/science.md sec. 6).

Both arms of a pair have the same conv/linear weights in the same module
order but different extra parameters (the BN arm's gamma/beta, the plain arm's
conv biases), so directions are drawn for the conv/linear weights first, in
``model.modules()`` order: one seed gives both arms the same direction on every
shared weight.

``bn_mode`` is "running" by default (eval mode, as Li et al. and PyHessian
plot) or "batch" (train mode, BN running statistics restored afterwards).
"""

from __future__ import annotations

import torch
from torch import nn

from bnlab.metrics._state import trainable
from bnlab.metrics.curvature import bn_probe

# layers whose weights have filters and get random direction components
FILTERED = (nn.Conv2d, nn.Linear)


def _draw(p: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    return torch.randn(p.shape, generator=g, dtype=p.dtype).to(p.device)


def random_direction(model: nn.Module, seed: int, include_bias_and_norm: bool = False) -> list[torch.Tensor]:
    """A Gaussian direction shaped like the trainable parameters (not yet normalized).

    Conv/linear weights are drawn first, in module order, from
    ``torch.Generator().manual_seed(seed)``; every other trainable parameter
    (biases, norm gamma/beta) is zero unless ``include_bias_and_norm``, in
    which case it is drawn afterwards in ``model.parameters()`` order.
    """
    g = torch.Generator().manual_seed(int(seed))
    params = trainable(model)
    weights = [m.weight for m in model.modules() if isinstance(m, FILTERED) and m.weight.requires_grad]
    drawn = {id(w): _draw(w, g) for w in weights}
    if include_bias_and_norm:
        drawn.update({id(p): _draw(p, g) for p in params if id(p) not in drawn})
    return [drawn[id(p)] if id(p) in drawn else torch.zeros_like(p) for p in params]


def _normalized(d: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Per filter d_j / ||d_j|| * ||w_j|| for ndim > 1; whole-tensor scaling for 1-D (zero stays zero)."""
    w = w.detach()
    if w.dim() <= 1:
        d_norm = torch.linalg.vector_norm(d)
        return d * (torch.linalg.vector_norm(w) / d_norm) if d_norm > 0 else torch.zeros_like(d)
    dims = tuple(range(1, w.dim()))
    w_norm = torch.linalg.vector_norm(w, dim=dims, keepdim=True)
    d_norm = torch.linalg.vector_norm(d, dim=dims, keepdim=True)
    return d * (w_norm / d_norm.clamp_min(torch.finfo(d.dtype).tiny))


def filter_normalize(direction: list[torch.Tensor], model: nn.Module) -> list[torch.Tensor]:
    """A new direction with every filter scaled to the norm of the matching weight filter."""
    return [_normalized(d, w) for d, w in zip(direction, trainable(model), strict=True)]


def _evaluate(model: nn.Module, loss_fn, batches: list) -> tuple[float, float | None]:
    """Sample-weighted mean loss over the batches; accuracy (argmax) when outputs are 2-D logits of class
    labels (a regression's targets are vectors: no accuracy)."""
    loss, hits, count, logits = 0.0, 0, 0, True
    for inputs, targets in batches:
        out = model(inputs)
        loss += float(loss_fn(out, targets)) * len(targets)
        logits = logits and out.dim() == 2 and targets.dim() == 1
        if logits:
            hits += int((out.argmax(1) == targets).sum())
        count += len(targets)
    return loss / count, (hits / count if logits else None)


def _scan(model, loss_fn, batches, directions, points, bn_mode) -> tuple[list[float], list[float | None]]:
    """Loss and accuracy at w + sum_k c_k d_k for each coefficient tuple c in ``points``."""
    batches = list(batches)
    if not batches:
        raise ValueError("the loss surface needs at least one (inputs, targets) batch")
    losses, accs = [], []
    with bn_probe(model, bn_mode), torch.no_grad():
        params = trainable(model)
        origin = [p.detach().clone() for p in params]
        for coeffs in points:
            for p, w, *ds in zip(params, origin, *directions, strict=True):
                p.copy_(w)
                for c, d in zip(coeffs, ds):
                    p.add_(d, alpha=c)
            loss, acc = _evaluate(model, loss_fn, batches)
            losses.append(loss)
            accs.append(acc)
    return losses, accs


def surface_1d(model, loss_fn, batches, direction, alphas, bn_mode="running") -> dict:
    """L(w + a d) for each a in ``alphas``, averaged over a finite iterable of (inputs, targets).

    Returns {"alphas", "loss", "acc", "bn_mode"}; the model is left as it was.
    """
    alphas = [float(a) for a in alphas]
    loss, acc = _scan(model, loss_fn, batches, [direction], [(a,) for a in alphas], bn_mode)
    return {"alphas": alphas, "loss": loss, "acc": acc, "bn_mode": bn_mode}


def surface_2d(model, loss_fn, batches, d1, d2, alphas, betas, bn_mode="running") -> dict:
    """L(w + a d1 + b d2) on the grid; "loss" and "acc" are [len(betas)][len(alphas)] lists."""
    alphas, betas = [float(a) for a in alphas], [float(b) for b in betas]
    points = [(a, b) for b in betas for a in alphas]
    loss, acc = _scan(model, loss_fn, batches, [d1, d2], points, bn_mode)
    rows = range(0, len(points), len(alphas))
    return {
        "alphas": alphas,
        "betas": betas,
        "loss": [loss[i : i + len(alphas)] for i in rows],
        "acc": [acc[i : i + len(alphas)] for i in rows],
        "bn_mode": bn_mode,
    }
