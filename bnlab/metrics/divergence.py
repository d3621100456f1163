"""Divergence probe and initial layer scales (Bjorck, Gomes, Selman, Weinberger 2018).

"Understanding Batch Normalization", NeurIPS 2018. Their claim: BN's benefit
comes mostly from the larger learning rates it allows. On a minibatch B with
gradient g at weights w, the relative loss after one step of size eta,

    r(eta) = L(w - eta g; B) / L(w; B),

over a log grid of eta (default 1e-5 .. 1) shows which steps blow up: r > 1e3
counts as divergence. Without BN, steps above ~1e-3 diverge on a deep ResNet;
with BN, 0.1 is fine. At initialization they also show, per layer, that
without BN activations and gradients grow by orders of magnitude with depth:
``layer_scales`` reports the standard deviation of every conv/linear output
and the norm of its weight gradient.

All evaluations use training mode (batch statistics) and leave the model,
buffers, .grad and RNG states as found.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from bnlab.metrics._state import loss_and_grad, preserved, trainable
from bnlab.metrics.registry import Measurement, Probe, register

PREFIX, INIT = "divergence/", "init/"
FIRST_DIVERGENT = f"{PREFIX}first_divergent_eta"  # record key of the first divergent step size


def ratio_key(eta: float) -> str:
    """Record key of the loss ratio at step size ``eta``: ``divergence/ratio@1e-05``."""
    return f"{PREFIX}ratio@{eta:.0e}"


def parse_ratio_key(k: str) -> float | None:
    """The step size of a ``ratio_key``; None for any other key."""
    head = f"{PREFIX}ratio@"
    if not k.startswith(head):
        return None
    try:
        return float(k[len(head):])
    except ValueError:
        return None


def init_key(quantity: str, layer: str) -> str:
    """Record key of a per-layer scale at initialization: ``init/act_std/<layer>``, ``init/grad_norm/<layer>``."""
    return f"{INIT}{quantity}/{layer}"


def parse_init_key(k: str) -> tuple[str, str] | None:
    """(quantity, layer) of an ``init_key``; None for any other key."""
    if not k.startswith(INIT):
        return None
    quantity, _, layer = k[len(INIT):].partition("/")
    return (quantity, layer) if quantity in ("act_std", "grad_norm") and layer else None


def log_grid(eta_min: float = 1e-5, eta_max: float = 1.0, points: int = 11) -> list[float]:
    return torch.logspace(torch.log10(torch.tensor(eta_min)), torch.log10(torch.tensor(eta_max)),
                          points, dtype=torch.float64).tolist()


def relative_loss(
    model: nn.Module,
    loss_fn,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    step_sizes: Sequence[float],
    threshold: float = 1e3,
    grad: list[torch.Tensor] | None = None,
    loss: torch.Tensor | None = None,
) -> dict:
    """r(eta) = L(w - eta g)/L(w) for each eta (one forward each), and the first eta with r > threshold."""
    with preserved(model):
        model.train()
        params = trainable(model)
        if grad is None or loss is None:
            loss, grad = loss_and_grad(model, loss_fn, inputs, targets, params)
        w0 = [p.detach().clone() for p in params]
        losses = []
        with torch.no_grad():
            for eta in step_sizes:
                for p, w, g in zip(params, w0, grad):
                    torch.add(w, g, alpha=-eta, out=p.data)
                losses.append(loss_fn(model(inputs), targets))
        ratios = (torch.stack(losses) / loss).tolist()
    bad = [eta for eta, r in zip(step_sizes, ratios) if not r <= threshold]  # NaN counts as divergent
    return {
        "step_sizes": [float(e) for e in step_sizes],
        "ratios": ratios,
        "first_divergent_eta": bad[0] if bad else None,
    }


def layer_scales(model: nn.Module, loss_fn, inputs: torch.Tensor, targets: torch.Tensor) -> dict:
    """Per conv/linear layer: std of its output and ||grad W|| at the current weights (one pass).

    A frozen weight (requires_grad False) reports its activation std only.
    """
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    stds, hooks = {}, []
    for name, m in layers:
        hooks.append(m.register_forward_hook(lambda _m, _i, out, name=name: stds.__setitem__(name, out.detach().std())))
    trained = [(n, m) for n, m in layers if m.weight.requires_grad]
    try:
        with preserved(model):
            model.train()
            if trained:
                _, grads = loss_and_grad(model, loss_fn, inputs, targets, [m.weight for _, m in trained])
            else:
                with torch.no_grad():
                    model(inputs)
                grads = []
            values = torch.stack([*(stds[n] for n, _ in layers),
                                  *(torch.linalg.vector_norm(g) for g in grads)]).tolist()
    finally:
        for h in hooks:
            h.remove()
    k = len(layers)
    out = {name: {"act_std": values[i]} for i, (name, _) in enumerate(layers)}
    for j, (name, _) in enumerate(trained):
        out[name]["grad_norm"] = values[k + j]
    return out


def initial_scales(model: nn.Module, loss_fn, x, y) -> dict:
    """Bjorck et al.: per-layer activation std and gradient norm at initialization, as record keys."""
    out = {}
    for layer, v in layer_scales(model, loss_fn, x, y).items():
        out[init_key("act_std", layer)] = v["act_std"]
        if "grad_norm" in v:
            out[init_key("grad_norm", layer)] = v["grad_norm"]
    return out


def _at_w(p: Probe) -> dict:
    c = p.block
    grid = log_grid(float(c["eta_min"]), float(c["eta_max"]), int(c["points"]))
    res = relative_loss(p.model, p.loss_fn, p.x, p.y, grid, float(c["threshold"]), grad=p.grads, loss=p.loss)
    out = {ratio_key(eta): r for eta, r in zip(grid, res["ratios"])}
    out[FIRST_DIVERGENT] = res["first_divergent_eta"]
    if "init_scales" in p.due:
        out.update(initial_scales(p.model, p.loss_fn, p.x, p.y))
    return out


def _extra_due(block, step: int, due: bool) -> set:
    return {"init_scales"} if step == 0 and due else set()  # the per-layer scales at initialization


MEASUREMENT = register(Measurement(
    name="divergence", prefix=PREFIX, also=(INIT,), split="probe", at_w=_at_w, extra_due=_extra_due,
    title="Step-size divergence (Bjorck et al. 2018)",
    paper="Bjorck, Gomes, Selman, Weinberger, Understanding Batch Normalization, NeurIPS 2018",
))
