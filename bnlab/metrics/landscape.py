"""Loss-landscape smoothness along the gradient (Santurkar et al. 2018, Sec. 3.1, Fig. 4).

Santurkar, Tsipras, Ilyas, Madry, "How Does Batch Normalization Help
Optimization?", NeurIPS 2018. At a probe step t of an arm, with its batch B_t,
weights w_t and gradient g_t = grad L(w_t; B_t), move along the gradient by
each step size eta of a grid (default: 8 points spanning [0.5 lr, 4 lr]):

    w(eta) = w_t - eta * g_t

and evaluate, on the SAME batch B_t with BN in training mode (batch statistics):

- loss landscape variation: the band [min_eta L(w(eta)), max_eta L(w(eta))];
- gradient predictiveness: the band over eta of ||grad L(w(eta)) - g_t||_2;
- effective beta-smoothness: max_eta ||grad L(w(eta)) - g_t||_2 / ||eta g_t||_2
  ("effective": gradient change measured along the gradient direction only).

Scale-free form of the band (docs/science.md sec. 9), beside the absolute one:

    loss_band     = max_eta L(w(eta)) - min_eta L(w(eta))
    loss_band_rel = loss_band / L(w_t)

The absolute band shrinks with the loss itself once an arm fits its data (a
memorized subset gives a tiny band at any curvature), so comparisons between
arms use ``loss_band_rel``.

Cost: one forward+backward per grid point (the loss comes from the same
forward pass as the gradient), plus one for g_t unless the caller passes the
gradient it already has. The model, its buffers (BN running statistics), its
.grad fields, requires_grad flags, train/eval flags and the RNG states are left
exactly as found (``_state.preserved``).

Closed form, used by the tests: for linear least squares L(w) = ||Xw - y||^2/(2n),
H = X^T X / n, the gradient change is -eta H g, so grad_pred = eta ||H g||,
beta_eff = ||H g|| / ||g|| for every eta, and
L(w - eta g) = L(w) - eta ||g||^2 + eta^2 g^T H g / 2.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from bnlab.metrics._state import flat_norm, loss_and_grad, preserved, trainable
from bnlab.metrics.registry import Measurement, Probe, register

PREFIX = "landscape/"
GRID_CURVES = ("loss", "grad_pred")  # per-step-size curves in the records, one key per grid point


def key(summary: str) -> str:
    """Record key of a summary of ``probe`` (``loss_band_rel``, ``beta_eff``...)."""
    return f"{PREFIX}{summary}"


def grid_key(curve: str, factor: float) -> str:
    """Record key of ``curve`` ("loss" or "grad_pred") at step size ``factor`` x lr: ``landscape/loss@0.5lr``."""
    return f"{PREFIX}{curve}@{factor:g}lr"


def parse_grid_key(k: str) -> tuple[str, float] | None:
    """(curve, factor) of a ``grid_key``; None for any other key."""
    if not (k.startswith(PREFIX) and k.endswith("lr") and "@" in k):
        return None
    curve, _, factor = k[len(PREFIX):-2].partition("@")
    try:
        return (curve, float(factor)) if curve in GRID_CURVES else None
    except ValueError:
        return None


def step_grid(lr: float, lo: float = 0.5, hi: float = 4.0, points: int = 8) -> list[float]:
    """``points`` step sizes evenly spaced over [lo * lr, hi * lr] (0.5 lr, 1 lr, ..., 4 lr by default)."""
    if points == 1:
        return [lo * lr]
    return [lr * (lo + (hi - lo) * i / (points - 1)) for i in range(points)]


def probe(
    model: nn.Module,
    loss_fn,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    step_sizes: Sequence[float],
    grad: list[torch.Tensor] | None = None,
    loss: torch.Tensor | float | None = None,
) -> dict:
    """Santurkar et al.'s landscape probe at the model's current weights on one batch.

    ``grad``/``loss``: the gradient (one tensor per trainable parameter, in
    ``model.parameters()`` order) and loss at the current weights on this batch,
    if the caller already computed them; otherwise they are computed here.

    Returns floats: ``loss`` (at w), ``loss_min``, ``loss_max``, ``grad_pred_min``,
    ``grad_pred_max``, ``beta_eff``, ``grad_norm`` (||g||), the per-eta lists
    ``step_sizes``, ``losses``, ``grad_preds``, ``betas``, and the band
    ``loss_band`` = loss_max - loss_min and ``loss_band_rel`` = loss_band / loss
    (NaN when the loss at w is 0).
    """
    if not len(step_sizes):
        raise ValueError("probe needs at least one step size")
    if (grad is None) != (loss is None):
        raise ValueError("pass both grad and loss (computed on this batch at these weights), or neither")
    with preserved(model):
        model.train()  # batch statistics, as in the paper
        params = trainable(model)
        if grad is None:
            loss, grad = loss_and_grad(model, loss_fn, inputs, targets, params)
        g = [t.detach() for t in grad]
        g_norm = flat_norm(g)
        w0 = [p.detach().clone() for p in params]
        losses, grad_preds, betas = [], [], []
        for eta in step_sizes:
            with torch.no_grad():
                for p, w, gi in zip(params, w0, g):
                    torch.add(w, gi, alpha=-eta, out=p.data)
            loss_eta, grad_eta = loss_and_grad(model, loss_fn, inputs, targets, params)
            change = flat_norm([ge - gi for ge, gi in zip(grad_eta, g)])
            losses.append(loss_eta)
            grad_preds.append(change)
            betas.append(change / (eta * g_norm))
        # one host sync for everything
        values = torch.stack([torch.as_tensor(loss, dtype=g_norm.dtype, device=g_norm.device), g_norm,
                              *losses, *grad_preds, *betas]).tolist()
    k = len(step_sizes)
    loss0, gnorm = values[0], values[1]
    losses_f, preds_f, betas_f = values[2 : 2 + k], values[2 + k : 2 + 2 * k], values[2 + 2 * k :]
    return {
        "loss": loss0,
        "grad_norm": gnorm,
        "loss_min": min(losses_f),
        "loss_max": max(losses_f),
        "grad_pred_min": min(preds_f),
        "grad_pred_max": max(preds_f),
        "beta_eff": max(betas_f),
        "step_sizes": [float(e) for e in step_sizes],
        "losses": losses_f,
        "grad_preds": preds_f,
        "betas": betas_f,
        "loss_band": max(losses_f) - min(losses_f),
        "loss_band_rel": (max(losses_f) - min(losses_f)) / loss0 if loss0 > 0 else float("nan"),
    }


def _at_w(p: Probe) -> dict:
    """The probe on the step's batch, as record keys: its summaries and both curves over the grid."""
    c = p.block
    grid = step_grid(p.lr, c["lo"], c["hi"], int(c["points"]))
    res = probe(p.model, p.loss_fn, p.x, p.y, grid, grad=p.grads, loss=p.loss)
    out = {key(k): v for k, v in res.items() if not isinstance(v, list)}
    for eta, lo, gp in zip(grid, res["losses"], res["grad_preds"]):
        out[grid_key("loss", eta / p.lr)] = lo
        out[grid_key("grad_pred", eta / p.lr)] = gp
    return out


MEASUREMENT = register(Measurement(
    name="landscape", prefix=PREFIX, split="probe", at_w=_at_w,
    title="Loss landscape (Santurkar 2018)",
    paper="Santurkar, Tsipras, Ilyas, Madry, How Does Batch Normalization Help Optimization?, NeurIPS 2018",
))
